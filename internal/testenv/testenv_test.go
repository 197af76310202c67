package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestRedisAddr(t *testing.T) {
	t.Parallel()
	addr := RedisAddr(t)
	if err := ping(addr, time.Second); err != nil {
		t.Fatalf("PING %s: %v", addr, err)
	}
}

func TestRedisAddrEnv(t *testing.T) {
	r := StartRedis(t)
	t.Setenv("JOURNAL_TEST_REDIS_ADDR", r.Addr())
	if got, want := RedisAddr(t), r.Addr(); got != want {
		t.Errorf("RedisAddr() = %q, want %q", got, want)
	}
}

func TestStartRedisLifecycle(t *testing.T) {
	t.Parallel()
	r := StartRedis(t, "--maxmemory", "10mb")
	if got, want := r.URL(), "redis://127.0.0.1:"+strconv.Itoa(r.Port()); got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if err := ping(r.Addr(), time.Second); err != nil {
		t.Fatalf("PING after start: %v", err)
	}
	// Extra args reach the server.
	if v, err := redisDo(r.Addr(), time.Second, "CONFIG", "GET", "maxmemory"); err != nil {
		t.Fatalf("CONFIG GET maxmemory: %v", err)
	} else if got, ok := v.([]any); !ok || len(got) != 2 || got[1] != "10485760" {
		t.Errorf("CONFIG GET maxmemory = %v, want [maxmemory 10485760]", v)
	}
	// Persistence is off.
	if v, err := redisDo(r.Addr(), time.Second, "CONFIG", "GET", "save"); err != nil {
		t.Fatalf("CONFIG GET save: %v", err)
	} else if got, ok := v.([]any); !ok || len(got) != 2 || got[1] != "" {
		t.Errorf("CONFIG GET save = %v, want [save \"\"]", v)
	}
	if _, err := redisString(r.Addr(), time.Second, "SET", "k", "v"); err != nil {
		t.Fatalf("SET: %v", err)
	}

	// Paused: the connection is accepted by the kernel but nothing answers.
	r.Pause(t)
	start := time.Now()
	if err := ping(r.Addr(), 200*time.Millisecond); err == nil {
		t.Fatal("PING of a paused server succeeded")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("PING of a paused server: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("PING of a paused server took %v", d)
	}
	r.Resume(t)
	if got, err := redisString(r.Addr(), time.Second, "GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET k after Resume = %q, %v; want v", got, err)
	}

	// Killed: the port refuses connections.
	r.Kill(t)
	if err := ping(r.Addr(), time.Second); err == nil {
		t.Fatal("PING of a killed server succeeded")
	}
	r.Kill(t) // killing a stopped server does nothing

	// Restarted on the same port, empty.
	port := r.Port()
	r.Restart(t)
	if got := r.Port(); got != port {
		t.Errorf("Port() after Restart = %d, want %d", got, port)
	}
	if err := ping(r.Addr(), time.Second); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if got, err := redisDo(r.Addr(), time.Second, "GET", "k"); err != nil || got != nil {
		t.Errorf("GET k after Restart = %v, %v; want nil (no persistence)", got, err)
	}

	// Restart of a paused server kills it first.
	r.Pause(t)
	r.Restart(t)
	if err := ping(r.Addr(), time.Second); err != nil {
		t.Fatalf("PING after Restart of a paused server: %v", err)
	}
	// Left paused on purpose: cleanup must still stop it.
	r.Pause(t)
}

func TestStartRedisBadArgs(t *testing.T) {
	t.Parallel()
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		StartRedis(ft, "--no-such-option", "1")
	}()
	if !strings.Contains(ft.msg, "exited at start") || !strings.Contains(ft.msg, "no-such-option") {
		t.Errorf("StartRedis with a bad option failed with %q, want the exit and the log tail", ft.msg)
	}
}

// fatalRecorder records the first Fatalf and stops the helper with a panic
// instead of failing the enclosing test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestPostgresURL(t *testing.T) {
	t.Parallel()
	u1, u2 := PostgresURL(t), PostgresURL(t)
	if u1 == u2 {
		t.Fatalf("two calls gave the same database %s", u1)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u1)
	if err != nil {
		t.Fatalf("connect %s: %v", u1, err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("new database has %d tables, want 0", n)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, s text)"); err != nil {
		t.Fatalf("CREATE TABLE: %v", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (1, 'é')"); err != nil {
		t.Fatalf("INSERT: %v", err)
	}
	var s string
	if err := conn.QueryRow(ctx, "SELECT s FROM t WHERE id = 1").Scan(&s); err != nil || s != "é" {
		t.Errorf("SELECT = %q, %v; want é", s, err)
	}
	// The other database does not see the table.
	conn2, err := pgx.Connect(ctx, u2)
	if err != nil {
		t.Fatalf("connect %s: %v", u2, err)
	}
	defer conn2.Close(ctx)
	if err := conn2.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil || n != 0 {
		t.Errorf("second database sees %d tables named t (%v), want 0", n, err)
	}
}

func TestPostgresURLDropped(t *testing.T) {
	t.Parallel()
	outer := t
	var dbURL string
	t.Run("create", func(t *testing.T) {
		dbURL = PostgresURL(t)
		// Left open until after the subtest's cleanup on purpose: the drop
		// must force it closed.
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		outer.Cleanup(func() { conn.Close(context.Background()) })
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, dbURL); err == nil {
		conn.Close(ctx)
		t.Fatalf("database %s still exists after its test ended", dbURL)
	} else if !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("connect to dropped database: %v, want \"does not exist\"", err)
	}
}

func TestStartPostgresLifecycle(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	pg := StartPostgres(t)
	t.Logf("StartPostgres: %v", time.Since(t0))
	if got, want := pg.URL(), "postgres://postgres@127.0.0.1:"+strconv.Itoa(pg.Port())+"/postgres?sslmode=disable"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	ctx := context.Background()
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.URL())
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("CREATE TABLE: %v", err)
	}
	if got, err := pgShow(ctx, pg.URL(), "fsync"); err != nil || got != "off" {
		t.Errorf("fsync = %q, %v; want off", got, err)
	}

	// Paused: a query on an open connection hangs until Resume.
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pg.Pause(t)
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	var n int
	err = conn.QueryRow(qctx, "SELECT count(*) FROM t").Scan(&n)
	cancel()
	if err == nil {
		t.Fatal("query on a paused server succeeded")
	}
	t.Logf("paused query: %v", time.Since(t0))
	pg.Resume(t)
	if err := exec("SELECT 1"); err != nil {
		t.Fatalf("query after Resume: %v", err)
	}

	// Killed: connections are refused.
	pg.Kill(t)
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("query on a killed server succeeded")
	}

	// Restarted on the same port and data: the table survived the crash.
	t.Logf("killed: %v", time.Since(t0))
	port := pg.Port()
	pg.Restart(t)
	t.Logf("restarted: %v", time.Since(t0))
	if pg.Port() != port {
		t.Errorf("Port() after Restart = %d, want %d", pg.Port(), port)
	}
	if err := exec("INSERT INTO t VALUES (2)"); err != nil {
		t.Fatalf("INSERT after Restart: %v", err)
	}

	// Restart of a paused server, and cleanup of a paused server.
	pg.Pause(t)
	pg.Restart(t)
	if err := exec("SELECT 1"); err != nil {
		t.Fatalf("query after Restart of a paused server: %v", err)
	}
	pg.Pause(t)
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	c := RedisCluster(t)
	t.Logf("RedisCluster: %v", time.Since(t0))
	addrs := c.Addrs()
	if len(addrs) != 6 {
		t.Fatalf("Addrs() = %v, want 6 nodes", addrs)
	}
	if got, want := c.URL(), "redis://"+strings.Join(addrs, ","); got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	for _, a := range addrs {
		info, err := redisString(a, time.Second, "CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok\r\n") {
			t.Errorf("CLUSTER INFO on %s = %q, %v; want cluster_state:ok", a, info, err)
		}
	}
	nodes, err := c.clusterNodes()
	if err != nil {
		t.Fatal(err)
	}
	masters := 0
	for _, n := range nodes {
		if n.master && !n.failed && len(n.slots) > 0 {
			masters++
		}
	}
	if masters != 3 {
		t.Errorf("CLUSTER NODES = %+v, want 3 masters serving slots", nodes)
	}
	// KeySlot agrees with CLUSTER KEYSLOT, hash tags included.
	for _, key := range []string{"", "a", "foo", "123456789", "{user1000}.following", "{user1000}.followers",
		"foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{", "}{", "\xe9{\xfc}"} {
		want, err := redisDo(addrs[0], time.Second, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(KeySlot(key)); got != want {
			t.Errorf("KeySlot(%q) = %d, want %v (CLUSTER KEYSLOT)", key, got, want)
		}
	}
	if got, want := KeySlot("123456789"), 0x31c3%16384; got != want {
		t.Errorf("KeySlot(123456789) = %d, want %d (CRC-16/XMODEM check value)", got, want)
	}
	// MasterFor agrees with the server: a SET on the returned node succeeds
	// (any other node answers MOVED).
	for _, key := range []string{"a", "b", "user:{42}:x", "{}", "zzz"} {
		n := c.MasterFor(t, key)
		if got, err := redisString(n.Addr(), time.Second, "SET", key, "v"); err != nil || got != "OK" {
			t.Errorf("SET %q on MasterFor's node %s = %q, %v; want OK", key, n.Addr(), got, err)
		}
	}

	// Failover: kill the master of "a"; its replica takes over; the killed
	// node restarts and rejoins.
	old := c.MasterFor(t, "a")
	old.Kill(t)
	start := time.Now()
	promoted := c.WaitMasterFor(t, "a", old)
	t.Logf("failover took %v", time.Since(start))
	if got, err := redisString(promoted.Addr(), time.Second, "SET", "a", "v2"); err != nil || got != "OK" {
		t.Errorf("SET a on the promoted master %s = %q, %v; want OK", promoted.Addr(), got, err)
	}
	old.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := c.waitReady(ctx); err != nil {
		t.Errorf("cluster after the old master restarted: %v", err)
	}
}

func TestStaleReads(t *testing.T) {
	var s StaleReads
	s.Check(t, time.Second, time.Millisecond, func() bool { return true }, "fresh at once")
	if s.Count != 0 || s.MaxLag != 0 {
		t.Fatalf("after a fresh read: %+v, want nothing counted", s)
	}
	calls := 0
	s.Check(t, time.Second, time.Millisecond, func() bool { calls++; return calls > 3 }, "fresh at the fourth read")
	if s.Count != 1 || s.MaxLag < 2*time.Millisecond {
		t.Fatalf("after a read stale for three calls 1ms apart: %+v, want Count 1 and MaxLag of 2ms or more", s)
	}
}
