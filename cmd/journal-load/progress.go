package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/journalsvc/journal/internal/tick"
)

// progress prints a status line to stderr: every second on one line (\r)
// when stderr is a terminal, else a line every 5 seconds.
type progress struct {
	w        io.Writer
	rec      *recorder
	duration time.Duration
	tty      bool
	stop     chan struct{}
	done     sync.WaitGroup

	mu    sync.Mutex
	notes []string // printed by Begin
	extra string   // scenario-specific text
	last  int      // requests at the previous line
	lastT time.Time
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(w io.Writer, rec *recorder, cfg config, notes []string) *progress {
	p := &progress{w: w, rec: rec, duration: cfg.Duration, tty: isTerminal(w), stop: make(chan struct{}), lastT: rec.Start(), notes: notes}
	every := 5 * time.Second
	if p.tty {
		every = time.Second
	}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick.Every(p.stop, every, func() bool { p.print(time.Now()); return true })
	}()
	return p
}

// Begin marks the end of a scenario's set-up: the recorder's clock starts
// at t (see [recorder.Begin]) and the notes given to newProgress are
// printed, one line each. A set-up that fails never gets here, so that its
// error is the only line the run prints.
func (p *progress) Begin(t time.Time) {
	p.rec.Begin(t)
	p.mu.Lock()
	notes := p.notes
	p.notes = nil
	p.mu.Unlock()
	for _, n := range notes {
		fmt.Fprintln(p.w, "journal-load:", n)
	}
}

// Set sets the scenario-specific part of the line ("admitted 48").
func (p *progress) Set(format string, a ...any) {
	p.mu.Lock()
	p.extra = fmt.Sprintf(format, a...)
	p.mu.Unlock()
}

func (p *progress) print(now time.Time) {
	s := p.rec.snapshot(true)
	p.mu.Lock()
	rate := float64(s.Requests-p.last) / now.Sub(p.lastT).Seconds()
	p.last, p.lastT = s.Requests, now
	extra := p.extra
	p.mu.Unlock()
	start := p.rec.Start()
	el := now.Sub(start).Truncate(time.Second)
	rem := (p.duration - now.Sub(start)).Truncate(time.Second)
	if rem < 0 {
		rem = 0
	}
	line := fmt.Sprintf("%6s  reqs %d  %.0f/s  failed %d  p50 %.1fms  p99 %.1fms  left %s",
		el, s.Requests, rate, s.Failed, s.Window.P50, s.Window.P99, rem)
	if extra != "" {
		line += "  " + extra
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%-110s", line)
	} else {
		fmt.Fprintln(p.w, strings.TrimSpace(line))
	}
}

// Stop ends the progress output (and the terminal line).
func (p *progress) Stop() {
	close(p.stop)
	p.done.Wait()
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
