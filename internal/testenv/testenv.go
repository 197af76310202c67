// Package testenv gives tests real servers to talk to: the shared Redis and
// PostgreSQL servers of the development machine ([RedisAddr], [PostgresURL])
// and private, disposable ones ([StartRedis], [StartPostgres], [RedisCluster])
// that a fault test may pause, kill and restart without disturbing anyone else.
//
// Every helper takes a [testing.TB], calls tb.Helper, and fails the test with
// tb.Fatalf and an actionable message (what to install or start) when a binary
// or server is missing; nothing is skipped silently. Private servers listen on
// a free loopback port, keep their files in a temporary directory, and are
// stopped (killed and waited for) by tb.Cleanup. On Linux they also receive
// SIGKILL if the test binary dies, so a crashed test does not leak servers
// (only, then, their temporary directories).
//
// Helpers and methods that take a tb must be called from the test's own
// goroutine (they may call tb.Fatalf). The returned types are safe for
// concurrent use otherwise. Every wait is bounded (see [StartTimeout]).
//
// The package imports no other package of the project, so every package may
// use it in its tests.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long a helper waits for a server to become ready
// (answer PING, accept a connection, report a healthy cluster) before it fails
// the test with the tail of the server's log.
const StartTimeout = 15 * time.Second

// stopTimeout bounds how long a killed process may take to be reaped.
const stopTimeout = 10 * time.Second

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// caller starts a server on it and retries with another port if the server
// loses the race for it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: find a free loopback port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("testenv: find a free loopback port: %w", err)
	}
	return port, nil
}

// lookRedisBinary finds a Redis executable (redis-server, redis-cli) on PATH.
func lookRedisBinary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("testenv: %s not found on PATH (%v): install it (Debian/Ubuntu: apt-get install redis-server redis-tools)", name, err)
	}
	return p
}

// postgresBinDir returns the directory that holds initdb and postgres: the
// directory of initdb found on PATH (symbolic links resolved), else the newest
// /usr/lib/postgresql/*/bin that holds both. It returns "" if there is none.
func postgresBinDir() string {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real)
		}
		if has(filepath.Dir(p)) {
			return filepath.Dir(p)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first: sort numerically on the version component.
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dirs[i])), 64)
		vj, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dirs[j])), 64)
		return vi > vj
	})
	for _, d := range dirs {
		if has(d) {
			return d
		}
	}
	return ""
}

// logTail returns the last lines of the file at path, for error messages.
func logTail(path string) string {
	const max = 4096
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(log is empty)"
	}
	return "\n--- log tail (" + path + ") ---\n" + s + "\n---"
}

// proc is a started server process and the channel closed when it has been
// reaped.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// startProc starts cmd with its output appended to logPath and returns once
// the process runs. The child gets SIGKILL if the test binary dies (Linux).
func startProc(cmd *exec.Cmd, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testenv: open log: %w", err)
	}
	defer f.Close() // the child holds its own descriptor
	cmd.Stdout = f
	cmd.Stderr = f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	setPdeathsig(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testenv: start %s: %w", cmd.Path, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process unless it has already been reaped.
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testenv: send %v to pid %d: %w", sig, p.cmd.Process.Pid, err)
	}
	return nil
}

// kill sends SIGCONT and SIGKILL and waits (bounded) until the process is
// reaped.
func (p *proc) kill() error {
	_ = p.signal(syscall.SIGCONT) // a stopped process dies on SIGKILL too; be robust anyway
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("testenv: pid %d not reaped %v after SIGKILL", p.cmd.Process.Pid, stopTimeout)
	}
}
