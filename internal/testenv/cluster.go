package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a private Redis Cluster started by [RedisCluster]: three
// masters with one replica each, every node a [Redis] on its own loopback
// port. A test breaks a node through [Cluster.Node] (Kill, Pause, Restart);
// with cluster-node-timeout 1000, a replica takes over a failed master within
// a few seconds.
type Cluster struct {
	nodes []*Redis
}

// clusterSize is the number of nodes of a [Cluster]: 3 masters, 3 replicas.
const clusterSize = 6

// pickBusPort chooses a free cluster bus port (--cluster-port) for r: not
// the default port+10000, which may be taken or above 65535. It reports false
// when the port it found is r's own.
func (r *Redis) pickBusPort() (bool, error) {
	var err error
	if r.bus, err = freePort(); err != nil {
		return false, err
	}
	return r.bus != r.port, nil
}

// RedisCluster starts six redis-server nodes in cluster mode
// (cluster-node-timeout 1000 ms) on free loopback ports, joins them with
// `redis-cli --cluster create ... --cluster-replicas 1`, and returns once
// every node reports cluster_state:ok with all 16384 slots assigned and every
// replica is in sync with its master. The nodes are stopped at tb.Cleanup. It
// fails the test if redis-server or redis-cli is missing or the cluster is not
// ready within [StartTimeout].
func RedisCluster(tb testing.TB) *Cluster {
	tb.Helper()
	cli := lookRedisBinary(tb, "redis-cli")
	c := &Cluster{}
	for range clusterSize {
		r := newRedis(tb, []string{
			"--cluster-enabled", "yes",
			"--cluster-node-timeout", "1000",
			"--cluster-config-file", "nodes.conf",
			// An empty replica syncs at once instead of after the default 5 s.
			"--repl-diskless-sync-delay", "0",
		})
		if err := r.startFree(r.pickBusPort); err != nil {
			tb.Fatalf("testenv: RedisCluster: %v", err)
		}
		c.nodes = append(c.nodes, r)
	}

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("testenv: RedisCluster: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitReady(ctx); err != nil {
		tb.Fatalf("testenv: RedisCluster: %v\nredis-cli output:\n%s", err, out)
	}
	return c
}

// waitReady polls every node until the cluster is healthy from its point of
// view and replicas are in sync, or ctx ends.
func (c *Cluster) waitReady(ctx context.Context) error {
	var last error
	for {
		if last = c.healthy(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready within %v: %v", StartTimeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// healthy returns nil if every node reports a healthy cluster and every
// replica's link to its master is up, else the first problem found.
func (c *Cluster) healthy() error {
	for _, n := range c.nodes {
		info, err := redisString(n.Addr(), time.Second, "CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", n.Addr(), err)
		}
		for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_slots_ok:16384",
			"cluster_known_nodes:" + strconv.Itoa(clusterSize), "cluster_size:3"} {
			if !strings.Contains(info, want+"\r\n") {
				return fmt.Errorf("%s: CLUSTER INFO lacks %s:\n%s", n.Addr(), want, info)
			}
		}
		repl, err := redisString(n.Addr(), time.Second, "INFO", "replication")
		if err != nil {
			return fmt.Errorf("%s: INFO replication: %w", n.Addr(), err)
		}
		if strings.Contains(repl, "role:slave\r\n") && !strings.Contains(repl, "master_link_status:up\r\n") {
			return fmt.Errorf("%s: replica not in sync:\n%s", n.Addr(), repl)
		}
	}
	return nil
}

// Addrs returns the "127.0.0.1:PORT" addresses of the six nodes, in the
// order of [Cluster.Node].
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL returns "redis://127.0.0.1:P1,127.0.0.1:P2,..." with all six nodes.
func (c *Cluster) URL() string { return "redis://" + strings.Join(c.Addrs(), ",") }

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	addr   string // host:port, without the bus port
	flags  []string
	slots  [][2]int // inclusive ranges
	master bool
	failed bool
}

// clusterNodes returns CLUSTER NODES as seen by the first node that answers.
func (c *Cluster) clusterNodes() ([]clusterNode, error) {
	var last error
	for _, n := range c.nodes {
		s, err := redisString(n.Addr(), 500*time.Millisecond, "CLUSTER", "NODES")
		if err != nil {
			last = err
			continue
		}
		return parseClusterNodes(s)
	}
	return nil, fmt.Errorf("no node answers CLUSTER NODES: %w", last)
}

// parseClusterNodes parses the reply of CLUSTER NODES.
func parseClusterNodes(s string) ([]clusterNode, error) {
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("testenv: malformed CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{addr: addr, flags: strings.Split(f[2], ",")}
		for _, fl := range n.flags {
			switch fl {
			case "master":
				n.master = true
			case "fail", "fail?", "noaddr":
				n.failed = true
			}
		}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") { // a slot being migrated or imported
				continue
			}
			lo, hi, isRange := strings.Cut(sl, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("testenv: malformed slot %q in CLUSTER NODES line %q", sl, line)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out, nil
}

// MasterFor returns the node that masters the slot of key ([KeySlot]) as the
// first node that answers CLUSTER NODES sees it. It fails the test if no
// healthy master serves that slot (as during a failover).
func (c *Cluster) MasterFor(tb testing.TB, key string) *Redis {
	tb.Helper()
	n, err := c.masterFor(key)
	if err != nil {
		tb.Fatalf("testenv: MasterFor(%q): %v", key, err)
	}
	return n
}

// WaitMasterFor waits until a healthy master other than not serves the slot of
// key, as after not was killed and its replica took over, and returns it. It
// fails the test if that takes longer than [StartTimeout]; not may be nil.
func (c *Cluster) WaitMasterFor(tb testing.TB, key string, not *Redis) *Redis {
	tb.Helper()
	deadline := time.Now().Add(StartTimeout)
	for {
		n, err := c.masterFor(key)
		if err == nil && n != not {
			return n
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: WaitMasterFor(%q): no new master within %v (last: %v, %v)", key, StartTimeout, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) masterFor(key string) (*Redis, error) {
	slot := KeySlot(key)
	nodes, err := c.clusterNodes()
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if !n.master || n.failed {
			continue
		}
		for _, r := range n.slots {
			if r[0] <= slot && slot <= r[1] {
				for _, node := range c.nodes {
					if node.Addr() == n.addr {
						return node, nil
					}
				}
				return nil, fmt.Errorf("slot %d is served by %s, which is not a node of this cluster", slot, n.addr)
			}
		}
	}
	return nil, fmt.Errorf("no healthy master serves slot %d", slot)
}

// KeySlot returns the Redis Cluster hash slot of key (CRC16 modulo 16384),
// hashing only the hash tag {...} when the key has a non-empty one, as
// CLUSTER KEYSLOT does.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum
// of Redis Cluster.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
