package deploy_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/journalsvc/journal/internal/testenv"
)

// chaosSummary is the part of journal-load's -json output of the chaos
// scenario that the test reads.
type chaosSummary struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
	Chaos    *struct {
		Acked  map[string]int `json:"acked"`
		Faults []struct {
			Kind string `json:"kind"`
		} `json:"faults"`
		Limits []struct {
			Policy   string `json:"policy"`
			Admitted int    `json:"admitted"`
			Denied   int    `json:"denied"`
		} `json:"limits"`
		Checked int `json:"final_checked"`
	} `json:"chaos"`
}

// chaosAction is a fault controller request, run on the test goroutine
// (the testenv servers' methods must be called there).
type chaosAction struct {
	name  string
	inst  int
	reply chan error
}

// TestChaos runs `journal-load -scenario chaos` against three instances
// behind nginx on a private Redis and PostgreSQL, and is its fault
// controller: it pauses Redis, restarts it empty, restarts PostgreSQL and
// kills instances when journal-load asks. The run must find nothing lost,
// resurrected or stale, every limit within its bound, no 5xx the design
// does not state, and every instance ready within 5 s of each fault.
//
// JOURNAL_CHAOS_DURATION (default 32s) and JOURNAL_CHAOS_SEED (default 1)
// set the run; docs/reliability.md records a long one.
func TestChaos(t *testing.T) {
	nginx := needCluster(t)
	duration := 32 * time.Second
	if v := os.Getenv("JOURNAL_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 20*time.Second {
			t.Fatalf("JOURNAL_CHAOS_DURATION=%q: want a duration of at least 20s", v)
		}
		duration = d
	}
	seed := "1"
	if v := os.Getenv("JOURNAL_CHAOS_SEED"); v != "" {
		seed = v
	}
	rds := testenv.StartRedis(t)
	pg := testenv.StartPostgres(t)
	c := newCluster(t, nginx,
		"JOURNAL_DATABASE_URL="+pg.URL(),
		"JOURNAL_REDIS_URL="+rds.URL(),
		// Each worker of the load is its own address and user, at about
		// 3 requests a second; each flood sends 10 a second, over these.
		"JOURNAL_RATE_LIMIT_IP=300/1m",
		"JOURNAL_RATE_LIMIT_USER=300/1m",
		"JOURNAL_RATE_LIMIT_SIGNUP=20/1m",
		"JOURNAL_RATE_LIMIT_LOGIN_ACCOUNT=30/1h",
		"JOURNAL_SHUTDOWN_DRAIN=200ms",
		"JOURNAL_LOG_LEVEL=warn",
	)
	loadBin := c.up(t)

	// The controller: journal-load posts an action, the test goroutine
	// does it and answers.
	actions := make(chan chaosAction)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		a := chaosAction{name: strings.TrimPrefix(r.URL.Path, "/"), inst: -1, reply: make(chan error, 1)}
		if v := r.URL.Query().Get("i"); v != "" {
			a.inst, _ = strconv.Atoi(v)
		}
		select {
		case actions <- a:
		case <-r.Context().Done():
			return
		}
		if err := <-a.reply; err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), duration+4*time.Minute)
	defer cancel()
	lr := startLoad(t, ctx, loadBin, "-scenario", "chaos", "-target", c.lb, "-instances", strings.Join(c.inst, ","),
		"-faults", "http://"+ln.Addr().String(), "-seed", seed, "-duration", duration.String(),
		"-rate", "40", "-concurrency", "16")
	var loadErr error
	for running := true; running; {
		select {
		case a := <-actions:
			a.reply <- c.fault(t, rds, pg, a)
		case loadErr = <-lr.done:
			running = false
		}
	}
	t.Logf("journal-load -scenario chaos (%v):\n%s", loadErr, lr.out.String())
	var s chaosSummary
	lr.summary(t, &s)
	if !s.OK || s.Chaos == nil {
		t.Fatalf("chaos run failed: %s\n%s", strings.Join(s.Problems, "; "), c.logs())
	}
	kinds := map[string]bool{}
	for _, f := range s.Chaos.Faults {
		kinds[f.Kind] = true
	}
	if len(kinds) != 4 {
		t.Errorf("faults of %d kinds ran (%v), want all 4: redis-pause, redis-restart-empty, postgres-restart, instance-kill", len(kinds), kinds)
	}
	if a := s.Chaos.Acked; a["create"] < 50 || a["update"] < 10 || a["delete"] < 5 {
		t.Errorf("acknowledged writes %v: too few for the run to say anything", a)
	}
	for _, l := range s.Chaos.Limits {
		if l.Denied == 0 {
			t.Errorf("the %s flood was never denied: it did not reach the limit it checks", l.Policy)
		}
	}
}

// fault does what the chaos controller was asked.
func (c *cluster) fault(t *testing.T, rds *testenv.Redis, pg *testenv.Postgres, a chaosAction) error {
	switch a.name {
	case "redis-pause":
		rds.Pause(t)
	case "redis-resume":
		rds.Resume(t)
	case "redis-kill":
		rds.Kill(t)
	case "redis-start":
		rds.Restart(t)
	case "postgres-kill":
		pg.Kill(t)
	case "postgres-start":
		pg.Restart(t)
	case "instance-kill":
		return c.killInstance(a.inst)
	case "instance-start":
		if out, err := c.sh(t, 90*time.Second, "start", strconv.Itoa(a.inst)); err != nil {
			return fmt.Errorf("cluster.sh start %d: %v: %s", a.inst, err, out)
		}
	default:
		return fmt.Errorf("unknown action %q", a.name)
	}
	return nil
}

// killInstance sends SIGKILL to instance i, waits until it is gone and its
// port refuses connections, and removes its pid file, so that a pid the
// system hands out again is never taken for the instance.
func (c *cluster) killInstance(i int) error {
	pidfile := filepath.Join(c.runDir, "cluster", "instance-"+strconv.Itoa(i)+".pid")
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("instance %d pid file: %v", i, err)
	}
	if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); !strings.Contains(string(cmd), "journal") {
		return fmt.Errorf("instance %d: pid %d of its pid file runs %q, not the service", i, pid, cmd)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill instance %d (pid %d): %v", i, pid, err)
	}
	addr := strings.TrimPrefix(c.inst[i], "http://")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		gone := err != nil || strings.Contains(string(st), ") Z ")
		if gone {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return os.Remove(pidfile)
			}
			conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("instance %d (pid %d, %s) still runs or answers on %s 10 s after SIGKILL", i, pid, st, addr)
		}
	}
}
