package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is the process control that [Redis] and [Postgres] share: a
// private server on a loopback port that stays the same across restarts,
// which a test may pause, resume, kill and restart. Its methods are safe for
// concurrent use; the ones that take a tb must be called from the test
// goroutine.
type server struct {
	name  string // the program, for messages: "redis-server", "postgres"
	log   string // the file the server's output is appended to
	ready string // what the server does once ready, for messages: "answer PING"
	port  int    // fixed once the first start succeeds

	// command returns the command that runs the server on port.
	command func() *exec.Cmd
	// serving reports whether the server that answers on port is p (and not
	// one that won the race for the port).
	serving func(p *proc) bool
	// signal sends sig to p and every process it serves with.
	signal func(p *proc, sig syscall.Signal) error
	// kill ends p and every process it serves with, and waits (bounded) until
	// they are gone.
	kill func(p *proc) error

	mu sync.Mutex
	p  *proc // nil before the first start
}

// Port returns the server's TCP port.
func (s *server) Port() int { return s.port }

// Pause stops the server with SIGSTOP: it keeps its connections open but
// answers nothing, like a hung server, until Resume.
func (s *server) Pause(tb testing.TB) {
	tb.Helper()
	if err := s.send(syscall.SIGSTOP); err != nil {
		tb.Fatalf("testenv: Pause: %v", err)
	}
}

// Resume continues a server stopped by Pause with SIGCONT. Resuming a running
// server does nothing.
func (s *server) Resume(tb testing.TB) {
	tb.Helper()
	if err := s.send(syscall.SIGCONT); err != nil {
		tb.Fatalf("testenv: Resume: %v", err)
	}
}

// send sends sig to the running server.
func (s *server) send(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || s.p.exited() {
		return fmt.Errorf("%s on port %d is not running", s.name, s.port)
	}
	return s.signal(s.p, sig)
}

// Kill ends the server with SIGKILL, like a crash, and waits until its
// processes are gone: its port refuses connections afterwards. Killing a
// stopped server does nothing.
func (s *server) Kill(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatalf("testenv: Kill: %v", err)
	}
}

// Restart starts the server again on the same port and directory, killing it
// first if it still runs (paused or not), and returns once it is ready. It
// works after Kill.
func (s *server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatalf("testenv: Restart: %v", err)
	}
	// The port was ours a moment ago; another process may grab it in
	// between, rarely: retry briefly, then report it.
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = s.start(); !errors.Is(err, errPortInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("testenv: Restart: %v", err)
	}
}

// errPortInUse reports that a server could not bind its port.
var errPortInUse = errors.New("testenv: port already in use")

// startFree starts the server on a free port, retrying with another when it
// loses the race for one. pick, if not nil, is called after each choice of a
// port to choose the other ports the server needs; it returns false to try
// again.
func (s *server) startFree(pick func() (bool, error)) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			return err
		}
		if pick != nil {
			ok, perr := pick()
			if perr != nil {
				return perr
			}
			if !ok {
				continue
			}
		}
		if err = s.start(); !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// start starts the server on port unless it runs, and waits until it is
// ready.
func (s *server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil && !s.p.exited() {
		return fmt.Errorf("testenv: %s on port %d already runs", s.name, s.port)
	}
	logStart := fileSize(s.log)
	p, err := startProc(s.command(), s.log)
	if err != nil {
		return err
	}
	s.p = p
	deadline := time.Now().Add(StartTimeout)
	for {
		if p.exited() {
			_ = s.kill(p) // helper processes, if any got that far
			if strings.Contains(readFrom(s.log, logStart), "Address already in use") {
				return fmt.Errorf("%w: %s could not bind 127.0.0.1:%d", errPortInUse, s.name, s.port)
			}
			return fmt.Errorf("%s on 127.0.0.1:%d exited at start (%v): %s", s.name, s.port, p.err, logTail(s.log))
		}
		if s.serving(p) {
			return nil
		}
		if time.Now().After(deadline) {
			_ = s.kill(p)
			return fmt.Errorf("%s on 127.0.0.1:%d did not %s within %v: %s", s.name, s.port, s.ready, StartTimeout, logTail(s.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server if it runs and waits for it.
func (s *server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil
	}
	return s.kill(s.p)
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
