package journal_test

// TestREADME runs the shell examples of README.md, in order, against a
// service it starts the way the README does (go run ./cmd/journal: the
// embedded defaults and a SQLite file in the working directory), so that a
// command that stops working, or whose output no longer looks as shown,
// fails CI. The README's conventions, which its readers never need to
// know:
//
//   - A ```console block shows commands after "$ " and, under each, its
//     output. A command continues on the next line while a line ends with
//     a backslash. The test runs each command and compares what it printed
//     (standard output and error together) with the lines shown under it.
//   - A ```sh (or bash, shell) block is run as it stands and must succeed;
//     its output is not compared.
//   - Every command runs in one bash session, in README order, so a
//     variable set in one block (TOKEN=...) is there in the next. The
//     commands run in a fresh temporary directory, with no JOURNAL_*
//     variable set, and "go run ./cmd/NAME" runs a binary built once from
//     ./cmd/NAME (printing "exit status N" when it fails, as go run does).
//   - The service listens on a free port, not 8080: the test rewrites
//     "localhost:8080" and "127.0.0.1:8080" in the commands to that port
//     and back in their output.
//   - A command must exit 0, unless the output shown for it ends with
//     go run's "exit status N" line.
//   - Before comparing, values that differ on every run are replaced in
//     both the shown and the real output (see normalisers): UUIDs, RFC 3339
//     times, the Date, X-Request-Id and X-Instance headers, request_id,
//     token and next_cursor values. Anything else that varies is written
//     "..." in the README: a line that is just "..." stands for any number
//     of lines (none included), and "..." inside a line for any text.
//   - An HTML comment on the line before a block,
//     <!-- readme-test: skip (why) -->, keeps the block from running; the
//     reason is required (a cluster, PostgreSQL, a foreground service).
//     Blocks in other languages (yaml, text) are never run.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// readmePort is the port of the service in the README's commands.
const readmePort = "8080"

// commandTimeout bounds one command of the README.
const commandTimeout = 90 * time.Second

// readmeBlock is one fenced code block of the README.
type readmeBlock struct {
	Line  int      // of the opening fence, from 1
	Lang  string   // the fence's info string: console, sh, yaml, ...
	Lines []string // the block's lines, without the fence's indentation
	Skip  string   // the reason of a skip directive, "" when none
}

// runs reports whether the test runs the block.
func (b readmeBlock) runs() bool {
	switch b.Lang {
	case "console", "sh", "bash", "shell":
		return b.Skip == ""
	}
	return false
}

var (
	fenceRe     = regexp.MustCompile("^(\\s*)(```+)\\s*([A-Za-z0-9_-]*)\\s*$")
	directiveRe = regexp.MustCompile(`^\s*<!--\s*readme-test:\s*(.*?)\s*-->\s*$`)
	skipRe      = regexp.MustCompile(`^skip \((.+)\)$`)
)

// parseReadme returns the fenced blocks of md with their directives. A
// directive that is not "skip (reason)", or is not on the line before a
// block, is an error.
func parseReadme(md string) ([]readmeBlock, error) {
	lines := strings.Split(md, "\n")
	var blocks []readmeBlock
	pending, pendingLine := "", 0
	for i := 0; i < len(lines); i++ {
		if m := directiveRe.FindStringSubmatch(lines[i]); m != nil {
			sm := skipRe.FindStringSubmatch(m[1])
			if sm == nil || strings.TrimSpace(sm[1]) == "" {
				return nil, fmt.Errorf("README.md:%d: directive %q: want \"skip (reason)\"", i+1, m[1])
			}
			if i+1 >= len(lines) || !fenceRe.MatchString(lines[i+1]) {
				return nil, fmt.Errorf("README.md:%d: the directive is not on the line before a code block", i+1)
			}
			pending, pendingLine = sm[1], i+1
			continue
		}
		m := fenceRe.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		b := readmeBlock{Line: i + 1, Lang: m[3]}
		if pendingLine == i {
			b.Skip = pending
		}
		indent, fence := m[1], m[2]
		for i++; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) == fence {
				break
			}
			b.Lines = append(b.Lines, strings.TrimPrefix(lines[i], indent))
		}
		if i == len(lines) {
			return nil, fmt.Errorf("README.md:%d: code block never closed", b.Line)
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

// readmeStep is one command of a block and the output the README shows for
// it.
type readmeStep struct {
	Line    int    // README line of the command
	Command string // with its continuation lines
	Want    []string
	Compare bool // a console block: compare the output
}

// steps splits a block into commands: a console block into its "$ "
// commands and their outputs, any other block into one command.
func (b readmeBlock) steps() ([]readmeStep, error) {
	if b.Lang != "console" {
		return []readmeStep{{Line: b.Line + 1, Command: strings.Join(b.Lines, "\n")}}, nil
	}
	var out []readmeStep
	for i := 0; i < len(b.Lines); i++ {
		line := b.Lines[i]
		if !strings.HasPrefix(line, "$ ") {
			if len(out) == 0 {
				return nil, fmt.Errorf("README.md:%d: console block does not start with a \"$ \" command", b.Line+1+i)
			}
			out[len(out)-1].Want = append(out[len(out)-1].Want, line)
			continue
		}
		s := readmeStep{Line: b.Line + 1 + i, Command: strings.TrimPrefix(line, "$ "), Compare: true}
		for strings.HasSuffix(line, `\`) && i+1 < len(b.Lines) {
			i++
			line = b.Lines[i]
			s.Command += "\n" + line
		}
		out = append(out, s)
	}
	return out, nil
}

// normalisers replace the values that differ on every run, in the shown
// and the real output alike.
var normalisers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<uuid>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`(?i)^(date|x-request-id|x-instance): .*$`), "$1: <$1>"},
	{regexp.MustCompile(`"(request_id|token|next_cursor)":"[^"]*"`), `"$1":"<$1>"`},
}

// normalise returns line without a trailing carriage return or spaces and
// with the values of normalisers replaced.
func normalise(line string) string {
	line = strings.TrimRight(line, "\r \t")
	for _, n := range normalisers {
		line = n.re.ReplaceAllString(line, n.repl)
	}
	return line
}

// outputMatches reports whether the real output lines got look as the
// README shows them in want: line by line after [normalise], where a want
// line "..." stands for any number of lines and "..." inside a line for
// any text. Trailing empty lines do not count.
func outputMatches(want, got []string) bool {
	trim := func(ls []string) []string {
		out := make([]string, len(ls))
		for i, l := range ls {
			out[i] = normalise(l)
		}
		for len(out) > 0 && out[len(out)-1] == "" {
			out = out[:len(out)-1]
		}
		return out
	}
	want, got = trim(want), trim(got)
	pats := make([]*regexp.Regexp, len(want))
	for i, w := range want {
		if w != "..." {
			parts := strings.Split(w, "...")
			for j := range parts {
				parts[j] = regexp.QuoteMeta(parts[j])
			}
			pats[i] = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		}
	}
	// match[i][j]: want[i:] matches got[j:].
	memo := map[[2]int]bool{}
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if i == len(want) {
			return j == len(got)
		}
		k := [2]int{i, j}
		if v, ok := memo[k]; ok {
			return v
		}
		var ok bool
		if pats[i] == nil {
			ok = match(i+1, j) || (j < len(got) && match(i, j+1))
		} else {
			ok = j < len(got) && pats[i].MatchString(got[j]) && match(i+1, j+1)
		}
		memo[k] = ok
		return ok
	}
	return match(0, 0)
}

var exitStatusRe = regexp.MustCompile(`^exit status \d+$`)

// showsFailure reports whether the README shows a command's output ending
// with go run's line for a program that failed.
func showsFailure(want []string) bool {
	for i := len(want) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(want[i]); l != "" {
			return exitStatusRe.MatchString(l)
		}
	}
	return false
}

// shell is one bash session that runs commands one at a time.
type shell struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   chan []byte // what bash writes, output and errors together; closed when it exits
	mark  string
}

// goShim makes "go run ./cmd/NAME" run the binary built from ./cmd/NAME,
// with go run's exit status and last line when it fails.
const goShim = `go() {
	local bin rc
	case "$1 $2" in
	"run ./cmd/"*)
		bin="$README_TEST_BIN/${2#./cmd/}"
		shift 2
		"$bin" "$@"
		rc=$?
		if [ "$rc" -ne 0 ]; then echo "exit status $rc" >&2; return 1; fi
		;;
	*) command go "$@" ;;
	esac
}
`

func startShell(tb testing.TB, dir string, env []string) *shell {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	var mark [8]byte
	_, _ = rand.Read(mark[:])
	sh := &shell{out: make(chan []byte, 64), mark: "readme-test-" + hex.EncodeToString(mark[:])}
	sh.cmd = exec.Command("bash", "--noprofile", "--norc")
	sh.cmd.Dir, sh.cmd.Env = dir, env
	sh.cmd.Stdout, sh.cmd.Stderr = w, w
	sh.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if sh.stdin, err = sh.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := sh.cmd.Start(); err != nil {
		tb.Fatalf("bash: %v", err)
	}
	w.Close()
	go func() {
		defer close(sh.out)
		defer r.Close()
		for {
			buf := make([]byte, 32<<10)
			n, err := r.Read(buf)
			if n > 0 {
				sh.out <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	tb.Cleanup(func() {
		sh.stdin.Close()
		_ = syscall.Kill(-sh.cmd.Process.Pid, syscall.SIGKILL)
		_ = sh.cmd.Wait()
	})
	if out, code, err := sh.exec(goShim, false, 10*time.Second); err != nil || code != 0 {
		tb.Fatalf("defining the go shim: exit %d, %v: %s", code, err, out)
	}
	return sh
}

// exec runs command in the session and returns what it printed and its
// exit status. With strict, the first command that fails ends the session
// (set -e), as a failing line of a script does.
func (sh *shell) exec(command string, strict bool, timeout time.Duration) (string, int, error) {
	setE, unsetE := "", ""
	if strict {
		setE, unsetE = "set -e\n", "set +e\n"
	}
	script := fmt.Sprintf("%s{ %s\n} </dev/null 2>&1\n__rc=$?\n%sprintf '\\n%s %%d\\n' \"$__rc\"\n", setE, command, unsetE, sh.mark)
	if _, err := io.WriteString(sh.stdin, script); err != nil {
		return "", -1, fmt.Errorf("bash is gone: %v", err)
	}
	end := regexp.MustCompile(`\n` + sh.mark + ` (\d+)\n`)
	var buf bytes.Buffer
	deadline := time.After(timeout)
	for {
		if m := end.FindSubmatchIndex(buf.Bytes()); m != nil {
			code, err := strconv.Atoi(string(buf.Bytes()[m[2]:m[3]]))
			return buf.String()[:m[0]], code, err
		}
		select {
		case b, ok := <-sh.out:
			if !ok {
				return buf.String(), -1, errors.New("bash exited")
			}
			buf.Write(b)
		case <-deadline:
			return buf.String(), -1, fmt.Errorf("no end after %v", timeout)
		}
	}
}

// buildCommands builds each ./cmd/NAME the README runs with go run into
// dir.
func buildCommands(tb testing.TB, dir string, blocks []readmeBlock) {
	tb.Helper()
	goRun := regexp.MustCompile(`go run \./cmd/([A-Za-z0-9_-]+)`)
	names := map[string]bool{"journal": true}
	for _, b := range blocks {
		if b.runs() {
			for _, m := range goRun.FindAllStringSubmatch(strings.Join(b.Lines, "\n"), -1) {
				names[m[1]] = true
			}
		}
	}
	for name := range names {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
		}
	}
}

// cleanEnv is the environment without JOURNAL_* variables, so that the
// README's commands see the embedded defaults.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JOURNAL_") {
			env = append(env, kv)
		}
	}
	return env
}

// startService starts bin in dir with the embedded defaults except the
// address, a free loopback port, waits until /readyz answers 200 and
// returns the port.
func startService(tb testing.TB, bin, dir string) string {
	tb.Helper()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "JOURNAL_ADDR=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var logs bytes.Buffer
	logsDone := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		defer close(logsDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" {
				select {
				case addr <- l.Addr:
				default:
				}
			}
		}
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		<-logsDone
		if tb.Failed() {
			tb.Logf("service log:\n%s", logs.String())
		}
	})
	var a string
	select {
	case a = <-addr:
	case <-time.After(30 * time.Second):
		tb.Fatal("the service did not log \"listening\" within 30 s")
	}
	_, port, _ := strings.Cut(a, "127.0.0.1:")
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://127.0.0.1:" + port + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return port
			}
		}
		if time.Since(start) > 30*time.Second {
			tb.Fatalf("the service on port %s is not ready after 30 s (%v)", port, err)
		}
	}
}

func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the service and the README's commands; skipped with -short")
	}
	for _, tool := range []string{"bash", "curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's commands need %s: %v", tool, err)
		}
	}
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseReadme(string(md))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	buildCommands(t, bin, blocks)
	port := startService(t, filepath.Join(bin, "journal"), t.TempDir())

	toTest := strings.NewReplacer("localhost:"+readmePort, "localhost:"+port, "127.0.0.1:"+readmePort, "127.0.0.1:"+port)
	toREADME := strings.NewReplacer("localhost:"+port, "localhost:"+readmePort, "127.0.0.1:"+port, "127.0.0.1:"+readmePort)
	sh := startShell(t, t.TempDir(), append(cleanEnv(), "README_TEST_BIN="+bin))
	ran := 0
	for _, b := range blocks {
		if !b.runs() {
			continue
		}
		steps, err := b.steps()
		if err != nil {
			t.Fatal(err)
		}
		ok := t.Run(fmt.Sprintf("README.md:%d", b.Line), func(t *testing.T) {
			for _, s := range steps {
				out, code, err := sh.exec(toTest.Replace(s.Command), !s.Compare, commandTimeout)
				out = toREADME.Replace(out)
				if err != nil {
					t.Fatalf("README.md:%d: %v\n$ %s\n%s", s.Line, err, s.Command, out)
				}
				if code != 0 && !(s.Compare && showsFailure(s.Want)) {
					t.Fatalf("README.md:%d: exit status %d\n$ %s\n%s", s.Line, code, s.Command, out)
				}
				got := strings.Split(out, "\n")
				if s.Compare && !outputMatches(s.Want, got) {
					t.Fatalf("README.md:%d: the output differs from the README's\n$ %s\n--- README shows:\n%s\n--- got:\n%s",
						s.Line, s.Command, strings.Join(s.Want, "\n"), out)
				}
			}
		})
		if !ok {
			break // later blocks depend on the state this one left
		}
		ran++
	}
	if ran == 0 && !t.Failed() {
		t.Error("no block of the README ran")
	}
}

func TestReadmeParse(t *testing.T) {
	md := strings.Join([]string{
		"text",
		"<!-- readme-test: skip (needs a cluster) -->",
		"```sh",
		"deploy/cluster.sh up",
		"```",
		"  ```yaml",
		"  a: 1",
		"  ```",
		"```console",
		"$ echo a \\",
		"  b",
		"a b",
		"",
		"$ true",
		"```",
	}, "\n")
	blocks, err := parseReadme(md)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 3 || blocks[0].Skip != "needs a cluster" || blocks[0].runs() || blocks[1].runs() || !blocks[2].runs() {
		t.Fatalf("blocks = %+v, want a skipped sh block, a yaml block and a console block that runs", blocks)
	}
	steps, err := blocks[2].steps()
	if err != nil {
		t.Fatal(err)
	}
	want := []readmeStep{
		{Line: 10, Command: "echo a \\\n  b", Want: []string{"a b", ""}, Compare: true},
		{Line: 14, Command: "true", Compare: true},
	}
	if diff := cmp.Diff(want, steps); diff != "" {
		t.Errorf("steps mismatch (-want +got):\n%s", diff)
	}
	for _, bad := range []string{
		"<!-- readme-test: skip -->\n```sh\nx\n```",
		"<!-- readme-test: skip () -->\n```sh\nx\n```",
		"<!-- readme-test: run -->\n```sh\nx\n```",
		"<!-- readme-test: skip (why) -->\n\n```sh\nx\n```",
		"```sh\nx\n",
	} {
		if _, err := parseReadme(bad); err == nil {
			t.Errorf("parseReadme(%q) succeeded, want an error", bad)
		}
	}
}

func TestReadmeOutputMatches(t *testing.T) {
	tests := []struct {
		want, got string
		ok        bool
	}{
		{"a\nb", "a\nb\n", true},
		{"a\nb", "a\nc", false},
		{"a", "a\nb", false},
		{"a\n...\nd", "a\nb\nc\nd", true},
		{"a\n...\nd", "a\nd", true},
		{"a\n...", "a", true},
		{"r=...;t=1", "r=97;t=1", true},
		{"r=...;t=1", "r=97;t=2", false},
		{`{"id":"01a23e55-8ae0-7b0b-89b8-153d2a62c93e","created_at":"2026-12-03T23:55:23.232523Z"}`,
			`{"id":"01a23e56-0000-7b0b-89b8-153d2a62c93f","created_at":"2027-01-01T00:00:00.000001Z"}`, true},
		{"X-Request-Id: zls3ojLBvjwCGdYgsNa9uQ\r", "X-Request-Id: other", true},
		{"Date: Thu, 03 Dec 2026 23:55:23 GMT", "Date: Fri, 04 Dec 2026 00:00:00 GMT", true},
		{`"next_cursor":"MS4x"}`, `"next_cursor":"MS4y"}`, true},
		{`"next_cursor":"MS4x"}`, `"next_cursor":null}`, false},
		{"Etag: \"v1\"", "Etag: \"v2\"", false},
	}
	for _, tt := range tests {
		if got := outputMatches(strings.Split(tt.want, "\n"), strings.Split(tt.got, "\n")); got != tt.ok {
			t.Errorf("outputMatches(%q, %q) = %v, want %v", tt.want, tt.got, got, tt.ok)
		}
	}
	if !showsFailure([]string{"journal: invalid", "exit status 2", ""}) || showsFailure([]string{"exit status 2", "more"}) {
		t.Error("showsFailure does not look at the last line shown")
	}
}
