package rediscache

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/rueidis"
)

// ClientConfig holds the settings [ClientOptions] applies beyond the
// addresses. The zero value gives the documented defaults.
type ClientConfig struct {
	// CacheSizeEachConn is the near-cache size of each connection in bytes.
	// ClientOptions uses one connection per Redis node, so this is the near
	// cache per node. Default 32 MiB (rueidis' own default is 128 MiB).
	CacheSizeEachConn int
	// ReadBufferEachConn and WriteBufferEachConn size each connection's
	// buffers. Default 128 KiB each (rueidis' default is 0.5 MiB).
	ReadBufferEachConn, WriteBufferEachConn int
	// ConnWriteTimeout bounds each write and the background PING of rueidis:
	// a server that does not answer within it has its connection dropped and
	// that connection's near cache flushed. Default 500ms.
	ConnWriteTimeout time.Duration
	// KeepAlive is the idle gap after which rueidis PINGs a connection (and
	// the TCP keep-alive interval). Default 200ms.
	KeepAlive time.Duration
	// DialTimeout bounds connecting. Default 1s.
	DialTimeout time.Duration
	// OnInvalidations, if set, is called for each invalidation message the
	// server pushes: with the number of keys invalidated, or 0 when a whole
	// connection's near cache was flushed (disconnect or FLUSHALL). It runs on
	// rueidis' reader goroutine and must be fast (a counter).
	OnInvalidations func(keys int)
	// OnInvalidatedKey, if set, is called with each key the server
	// invalidates (for example LagProbe.Invalidated). It runs on rueidis'
	// reader goroutine and must be fast.
	OnInvalidatedKey func(key string)
}

// ClientOptions returns the rueidis options this package relies on, for a
// standalone Redis (one address) or a Redis Cluster (several seed addresses):
//
//   - CacheSizeEachConn, ReadBufferEachConn, WriteBufferEachConn set
//     explicitly (see [ClientConfig] for the defaults);
//   - DisableRetry: true, so no command is retried inside a caller's deadline;
//   - ConnWriteTimeout 500ms and Dialer.KeepAlive 200ms, so a hung server is
//     detected and its connection, near cache included, dropped within about
//     0.7s;
//   - PipelineMultiplex -1: one auto-pipelined connection per node. [Store]
//     needs it: a write and the near-cache reads of its key then share one
//     connection, which is what lets a write wait for its own invalidation
//     (see [Store] on read-your-writes).
//
// Callers may change other fields (credentials, TLS, SelectDB) before
// NewClient, but must keep PipelineMultiplex at -1.
func ClientOptions(addrs []string, cfg ClientConfig) rueidis.ClientOption {
	if cfg.CacheSizeEachConn <= 0 {
		cfg.CacheSizeEachConn = 32 << 20
	}
	if cfg.ReadBufferEachConn <= 0 {
		cfg.ReadBufferEachConn = 128 << 10
	}
	if cfg.WriteBufferEachConn <= 0 {
		cfg.WriteBufferEachConn = 128 << 10
	}
	if cfg.ConnWriteTimeout <= 0 {
		cfg.ConnWriteTimeout = 500 * time.Millisecond
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 200 * time.Millisecond
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	opt := rueidis.ClientOption{
		InitAddress:         append([]string(nil), addrs...),
		CacheSizeEachConn:   cfg.CacheSizeEachConn,
		ReadBufferEachConn:  cfg.ReadBufferEachConn,
		WriteBufferEachConn: cfg.WriteBufferEachConn,
		DisableRetry:        true,
		ConnWriteTimeout:    cfg.ConnWriteTimeout,
		Dialer:              net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: cfg.KeepAlive},
		PipelineMultiplex:   -1,
	}
	if count, each := cfg.OnInvalidations, cfg.OnInvalidatedKey; count != nil || each != nil {
		opt.OnInvalidations = func(msgs []rueidis.RedisMessage) {
			if count != nil {
				count(len(msgs))
			}
			if each != nil {
				for _, m := range msgs {
					if k, err := m.ToString(); err == nil {
						each(k)
					}
				}
			}
		}
	}
	return opt
}

// NewClient connects with opt. When the server refuses client-side caching
// (CLIENT TRACKING unsupported, or no RESP3, as on some managed offerings),
// rueidis.NewClient fails with rueidis.ErrNoCache: NewClient then connects
// again with DisableCache set and returns nearCache false, so reads go straight
// to Redis (coherent, no near cache). The caller should log that once.
func NewClient(opt rueidis.ClientOption) (client rueidis.Client, nearCache bool, err error) {
	return NewClientWith(opt, rueidis.NewClient)
}

// NewClientWith is NewClient with connect in place of rueidis.NewClient, for
// a client that wraps the one rueidis makes (for example to trace its calls).
// connect must return rueidis' error as it is, or wrapped.
func NewClientWith(opt rueidis.ClientOption, connect func(rueidis.ClientOption) (rueidis.Client, error)) (client rueidis.Client, nearCache bool, err error) {
	client, err = connect(opt)
	if err == nil {
		return client, !opt.DisableCache, nil
	}
	if !errors.Is(err, rueidis.ErrNoCache) {
		return nil, false, fmt.Errorf("rediscache: connect: %w", err)
	}
	opt.DisableCache = true
	client, err = connect(opt)
	if err != nil {
		return nil, false, fmt.Errorf("rediscache: connect without client-side caching: %w", err)
	}
	return client, false, nil
}
