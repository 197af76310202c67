package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultRedisAddr is the shared Redis server used when
// JOURNAL_TEST_REDIS_ADDR is unset.
const DefaultRedisAddr = "127.0.0.1:6379"

// RedisAddr returns the host:port of the shared Redis server for tests:
// $JOURNAL_TEST_REDIS_ADDR, or [DefaultRedisAddr] when it is unset. It checks
// that the server answers PING within a second and otherwise fails the test
// with the command that starts one.
//
// The server is shared by every test and every package: use a random key
// prefix per test and never FLUSHALL or FLUSHDB it. A test that needs to
// break its server uses [StartRedis] instead.
func RedisAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("JOURNAL_TEST_REDIS_ADDR")
	if addr == "" {
		addr = DefaultRedisAddr
	}
	if err := ping(addr, time.Second); err != nil {
		tb.Fatalf("testenv: the shared Redis at %s does not answer PING (%v): start one with `redis-server --daemonize yes` "+
			"(Debian/Ubuntu: apt-get install redis-server), or point JOURNAL_TEST_REDIS_ADDR at a running server", addr, err)
	}
	return addr
}

// Redis is a private redis-server started by [StartRedis] (or one node of a
// [Cluster]). It listens on 127.0.0.1 on a port that stays the same across
// [Redis.Restart], keeps no data on disk (no RDB, no AOF) and is stopped at the
// end of the test that started it. Its methods are safe for concurrent use;
// the ones that take a tb must be called from the test goroutine.
type Redis struct {
	bin  string
	dir  string
	log  string
	args []string
	port int // fixed once StartRedis returns
	bus  int // cluster bus port (--cluster-port), 0 outside a cluster

	mu     sync.Mutex
	p      *proc // nil before the first start
	paused bool
}

// StartRedis starts a private redis-server on a free loopback port with
// `--save "" --appendonly no`, its working directory in a tb.TempDir, and the
// extra args appended to its command line (for example "--maxmemory",
// "1mb"). It returns once the server answers PING and stops it (SIGKILL,
// then waits for it) at tb.Cleanup. It fails the test if redis-server is not
// installed or does not become ready within [StartTimeout].
func StartRedis(tb testing.TB, args ...string) *Redis {
	tb.Helper()
	r := newRedis(tb, args)
	if err := r.startFree(false); err != nil {
		tb.Fatalf("testenv: StartRedis: %v", err)
	}
	return r
}

// startFree starts r on free ports (and a free cluster bus port if
// clusterBus), retrying with other ports when it loses a race for one.
func (r *Redis) startFree(clusterBus bool) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if r.port, err = freePort(); err != nil {
			return err
		}
		if clusterBus {
			// Not the default port+10000, which may be taken or above 65535.
			if r.bus, err = freePort(); err != nil {
				return err
			}
			if r.bus == r.port {
				continue
			}
		}
		if err = r.start(); !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// newRedis prepares a Redis (binary, directory, cleanup) without starting it.
func newRedis(tb testing.TB, args []string) *Redis {
	tb.Helper()
	r := &Redis{
		bin:  lookRedisBinary(tb, "redis-server"),
		dir:  tb.TempDir(),
		args: append([]string(nil), args...),
	}
	r.log = filepath.Join(r.dir, "redis.log")
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(func() {
		if err := r.stop(); err != nil {
			tb.Errorf("testenv: stop redis-server on port %d: %v", r.port, err)
		}
	})
	return r
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL returns the server's address as "redis://127.0.0.1:PORT".
func (r *Redis) URL() string { return "redis://" + r.Addr() }

// Port returns the server's TCP port.
func (r *Redis) Port() int { return r.port }

// Dir returns the server's working directory (its log is redis.log there).
func (r *Redis) Dir() string { return r.dir }

// Pause stops the server process with SIGSTOP: it keeps its connections open
// but answers nothing, like a hung server, until [Redis.Resume].
func (r *Redis) Pause(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil || r.p.exited() {
		tb.Fatalf("testenv: Pause: redis-server on port %d is not running", r.port)
	}
	if err := r.p.signal(syscall.SIGSTOP); err != nil {
		tb.Fatalf("testenv: Pause: %v", err)
	}
	r.paused = true
}

// Resume continues a server stopped by [Redis.Pause] with SIGCONT. Resuming a
// running server does nothing.
func (r *Redis) Resume(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil || r.p.exited() {
		tb.Fatalf("testenv: Resume: redis-server on port %d is not running", r.port)
	}
	if err := r.p.signal(syscall.SIGCONT); err != nil {
		tb.Fatalf("testenv: Resume: %v", err)
	}
	r.paused = false
}

// Kill ends the server with SIGKILL, like a crash, and waits until the
// process is gone: its port refuses connections afterwards. Killing a
// stopped server does nothing. Its data is lost (nothing is persisted).
func (r *Redis) Kill(tb testing.TB) {
	tb.Helper()
	if err := r.stop(); err != nil {
		tb.Fatalf("testenv: Kill: %v", err)
	}
}

// Restart starts the server again on the same port and directory, killing it
// first if it still runs (paused or not), and returns once it answers PING.
// It works after [Redis.Kill]. The new server starts empty (a cluster node
// keeps its cluster configuration, nodes.conf, and rejoins).
func (r *Redis) Restart(tb testing.TB) {
	tb.Helper()
	if err := r.stop(); err != nil {
		tb.Fatalf("testenv: Restart: %v", err)
	}
	if err := restartOnSamePort(r.start); err != nil {
		tb.Fatalf("testenv: Restart: %v", err)
	}
}

// errPortInUse reports that a server could not bind its port.
var errPortInUse = errors.New("testenv: port already in use")

// start starts redis-server on r.port and waits until it answers PING.
func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil && !r.p.exited() {
		return fmt.Errorf("testenv: redis-server on port %d already runs", r.port)
	}
	argv := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--daemonize", "no",
		"--logfile", "",
	}
	if r.bus != 0 {
		argv = append(argv, "--cluster-port", strconv.Itoa(r.bus))
	}
	argv = append(argv, r.args...)
	cmd := exec.Command(r.bin, argv...)
	cmd.Dir = r.dir
	logStart := fileSize(r.log)
	p, err := startProc(cmd, r.log)
	if err != nil {
		return err
	}
	r.p, r.paused = p, false
	deadline := time.Now().Add(StartTimeout)
	for {
		if p.exited() {
			if strings.Contains(readFrom(r.log, logStart), "Address already in use") {
				return fmt.Errorf("%w: redis-server could not bind %s", errPortInUse, r.Addr())
			}
			return fmt.Errorf("redis-server on %s exited at start (%v): %s", r.Addr(), p.err, logTail(r.log))
		}
		// The server answering must be ours, not one that won the race for
		// the port.
		if info, err := redisString(r.Addr(), 500*time.Millisecond, "INFO", "server"); err == nil {
			if strings.Contains(info, "\nprocess_id:"+strconv.Itoa(p.cmd.Process.Pid)+"\r") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = p.kill()
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %s", r.Addr(), StartTimeout, logTail(r.log))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop kills the server if it runs and waits for it.
func (r *Redis) stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil {
		return nil
	}
	err := r.p.kill()
	r.paused = false
	return err
}

// fileSize returns the size of the file at path, 0 if it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the content of the file at path from offset on.
func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// restartOnSamePort starts a server again on the port it had. The port was
// ours a moment ago; another process may grab it in between, rarely: retry
// briefly, then report it.
func restartOnSamePort(start func() error) error {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = start(); !errors.Is(err, errPortInUse) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
