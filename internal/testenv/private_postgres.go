package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// initdbTimeout bounds initdb, which writes a whole cluster and is slower
// than a server start on a loaded machine.
const initdbTimeout = 60 * time.Second

// Postgres is a private PostgreSQL server started by [StartPostgres]. It
// listens on 127.0.0.1 on a port that stays the same across
// [Postgres.Restart], with trust authentication for the role postgres, and
// is stopped at the end of the test that started it. [Postgres.Pause] stops
// the postmaster and all its processes; [Postgres.Kill] is a crash of all of
// them. Committed data survives [Postgres.Restart] (after a Kill, through
// crash recovery), except what fsync=off loses if the machine itself
// crashes. Its methods are safe for concurrent use; the ones that take a tb
// must be called from the test goroutine.
type Postgres struct {
	server
	binDir string
	dir    string // owned by the server's OS user; holds data/, the socket and logs
	data   string
	cred   *syscall.Credential // nil: run as the current user
}

// StartPostgres creates a PostgreSQL cluster with initdb in a new temporary
// directory and starts its server on a free loopback port with fsync off,
// its Unix socket in that directory and trust authentication. When the test
// runs as root, initdb and the server run as the OS user postgres (initdb
// refuses root) and the directory is owned by that user. It returns once the
// server accepts connections (a few seconds: meant for fault tests; other
// tests use [PostgresURL]) and kills the server and removes the directory at
// tb.Cleanup. It fails the test with an actionable message if PostgreSQL is
// not installed or the server does not start within [StartTimeout].
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	binDir := postgresBinDir()
	if binDir == "" {
		tb.Fatalf("testenv: StartPostgres: initdb and postgres not found on PATH nor in /usr/lib/postgresql/*/bin: " +
			"install PostgreSQL (Debian/Ubuntu: apt-get install postgresql)")
	}
	// Not tb.TempDir: the server's user must be able to reach the directory
	// (tb.TempDir's parents are private to us), and a Unix socket path must
	// stay under about 100 bytes.
	dir, err := os.MkdirTemp("", "testenv-pg-")
	if err != nil {
		tb.Fatalf("testenv: StartPostgres: %v", err)
	}
	tb.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("testenv: remove %s: %v", dir, err)
		}
	})
	pg := &Postgres{
		binDir: binDir,
		dir:    dir,
		data:   filepath.Join(dir, "data"),
	}
	pg.server = server{
		name:    "postgres",
		log:     filepath.Join(dir, "postgres.log"),
		ready:   "accept connections",
		command: pg.postmaster,
		serving: pg.serving,
		signal:  signalFamily,
		kill:    killFamily,
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("testenv: StartPostgres runs as root, and initdb refuses root, but there is no OS user postgres to run it as (%v): "+
				"install PostgreSQL from the distribution (Debian/Ubuntu: apt-get install postgresql creates the user), or run the tests as another user", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatalf("testenv: StartPostgres: %v", err)
		}
	}
	if err := pg.initdb(); err != nil {
		tb.Fatalf("testenv: StartPostgres: %v", err)
	}
	tb.Cleanup(func() {
		if err := pg.stop(); err != nil {
			tb.Errorf("testenv: stop postgres on port %d: %v", pg.port, err)
		}
	})
	if err := pg.startFree(nil); err != nil {
		tb.Fatalf("testenv: StartPostgres: %v", err)
	}
	return pg
}

// URL returns "postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable".
func (pg *Postgres) URL() string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(pg.port) + "/postgres?sslmode=disable"
}

// command returns a command running the PostgreSQL program name as the
// server's OS user, in pg.dir. It switches user with SysProcAttr.Credential
// rather than `runuser -u postgres --`: the effect for initdb is the same, and
// the postmaster stays our direct child, so Pdeathsig, Wait and the signals
// of Kill and Pause reach it without a runuser process in between.
func (pg *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pg.binDir, name), args...)
	cmd.Dir = pg.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	return cmd
}

// initdb creates the cluster in pg.data.
func (pg *Postgres) initdb() error {
	logPath := filepath.Join(pg.dir, "initdb.log")
	cmd := pg.command("initdb", "-D", pg.data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	p, err := startProc(cmd, logPath)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(initdbTimeout):
		_ = p.kill()
		return fmt.Errorf("initdb did not finish within %v: %s", initdbTimeout, logTail(logPath))
	}
	if p.err != nil {
		return fmt.Errorf("initdb failed (%v): %s", p.err, logTail(logPath))
	}
	return nil
}

// postmaster returns the command that runs the postmaster on pg.port.
func (pg *Postgres) postmaster() *exec.Cmd {
	cmd := pg.command("postgres", "-D", pg.data, "-p", strconv.Itoa(pg.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+pg.dir,
		// fsync and full-page writes off: a killed server (the fault tests'
		// crash) loses nothing the OS already has. synchronous_commit stays
		// on: off, a commit waits in shared memory for the WAL writer, which a
		// pause stops, and a kill soon after the pause loses the commit.
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "logging_collector=off",
	)
	// Its own process group, out of the way of a terminal's Ctrl-C.
	cmd.SysProcAttr.Setpgid = true
	return cmd
}

// serving reports whether the server accepting connections on pg.port is
// ours: its data directory is pg.data.
func (pg *Postgres) serving(*proc) bool {
	dataDir, err := pgShow(context.Background(), pg.URL(), "data_directory")
	return err == nil && dataDir == pg.data
}

// signalFamily sends sig to the postmaster p and to its children. The
// backends are not in the postmaster's process group (each calls setsid), so
// they are found by parent PID. For SIGSTOP the postmaster is stopped first,
// so that it cannot fork a child that escapes; for SIGCONT it is continued
// last.
func signalFamily(p *proc, sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	pid := p.cmd.Process.Pid
	if sig == syscall.SIGSTOP {
		if err := p.signal(sig); err != nil {
			return err
		}
	}
	for _, c := range childPIDs(pid) {
		if err := syscall.Kill(c, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("testenv: send %v to pid %d: %w", sig, c, err)
		}
	}
	if sig != syscall.SIGSTOP {
		return p.signal(sig)
	}
	return nil
}

// killFamily kills the postmaster p and its children and waits (bounded)
// until they are all gone, so a restarted server finds no old backend
// attached to its shared memory.
func killFamily(p *proc) error {
	if p.exited() {
		return nil
	}
	// Stopped, the postmaster forks nothing while its children are listed.
	_ = p.signal(syscall.SIGSTOP)
	children := childPIDs(p.cmd.Process.Pid)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	if err := p.kill(); err != nil {
		return err
	}
	deadline := time.Now().Add(stopTimeout)
	for _, c := range children {
		for processRunning(c) {
			if time.Now().After(deadline) {
				return fmt.Errorf("testenv: postgres process %d still runs %v after SIGKILL", c, stopTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// pgShow returns the value of the setting name of the PostgreSQL server at
// connURL, with a short timeout.
func pgShow(ctx context.Context, connURL, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var v string
	err = conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v)
	return v, err
}
