package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// respError is an error reply (-ERR ...) of a Redis server.
type respError string

func (e respError) Error() string { return "redis: " + string(e) }

// redisDo sends one command to the Redis server at addr over a fresh
// connection and returns its reply: string for simple and bulk strings (nil
// for a null), int64, []any for arrays, or a respError. The whole exchange
// is bounded by timeout. It needs no client library, so testenv does not
// depend on the client under test.
func redisDo(addr string, timeout time.Duration, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(conn))
}

// redisString is redisDo for commands whose reply is a string; an error
// reply is returned as an error.
func redisString(addr string, timeout time.Duration, args ...string) (string, error) {
	v, err := redisDo(addr, timeout, args...)
	if err != nil {
		return "", err
	}
	switch v := v.(type) {
	case respError:
		return "", v
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	default:
		return "", fmt.Errorf("testenv: %s: unexpected reply %T", args[0], v)
	}
}

// ping reports whether addr answers PING with PONG within timeout.
func ping(addr string, timeout time.Duration) error {
	s, err := redisString(addr, timeout, "PING")
	if err != nil {
		return err
	}
	if s != "PONG" {
		return fmt.Errorf("testenv: PING answered %q", s)
	}
	return nil
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("testenv: malformed RESP line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return respError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := respLength(body)
		if err != nil || n < 0 {
			return nil, err // a negative length is a null reply
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := respLength(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, errors.New("testenv: unsupported RESP type " + strconv.Quote(string(kind)))
	}
}

// respLength parses the length of a RESP bulk string or array; -1 means a
// null reply.
func respLength(body string) (int, error) {
	n, err := strconv.Atoi(body)
	if err != nil {
		return 0, fmt.Errorf("testenv: malformed RESP length %q", body)
	}
	return n, nil
}
