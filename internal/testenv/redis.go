package testenv

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Redis is a private redis-server started by [StartRedis] (or one node of a
// [Cluster]). It listens on 127.0.0.1 on a port that stays the same across
// [Redis.Restart], keeps no data on disk (no RDB, no AOF), and is stopped at
// the end of the test that started it. [Redis.Pause] makes it hang,
// [Redis.Kill] makes it crash and lose its data; after [Redis.Restart] it is
// empty (a cluster node keeps its cluster configuration, nodes.conf, and
// rejoins). Its methods are safe for concurrent use; the ones that take a tb
// must be called from the test goroutine.
type Redis struct {
	server
	bin  string
	dir  string
	args []string
	bus  int // cluster bus port (--cluster-port), 0 outside a cluster
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
	if err := r.startFree(nil); err != nil {
		tb.Fatalf("testenv: StartRedis: %v", err)
	}
	return r
}

// newRedis prepares a Redis (binary, directory, cleanup) without starting it.
func newRedis(tb testing.TB, args []string) *Redis {
	tb.Helper()
	r := &Redis{
		bin:  lookRedisBinary(tb, "redis-server"),
		dir:  tb.TempDir(),
		args: append([]string(nil), args...),
	}
	r.server = server{
		name:    "redis-server",
		log:     filepath.Join(r.dir, "redis.log"),
		ready:   "answer PING",
		command: r.command,
		serving: r.serving,
		signal:  (*proc).signal,
		kill:    (*proc).kill,
	}
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

// command returns the command that runs redis-server on r.port.
func (r *Redis) command() *exec.Cmd {
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
	return cmd
}

// serving reports whether the redis-server answering on r.port is p.
func (r *Redis) serving(p *proc) bool {
	info, err := redisString(r.Addr(), 500*time.Millisecond, "INFO", "server")
	return err == nil && strings.Contains(info, "\nprocess_id:"+strconv.Itoa(p.cmd.Process.Pid)+"\r")
}
