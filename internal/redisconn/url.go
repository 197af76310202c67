package redisconn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// URL is a parsed JOURNAL_REDIS_URL: one Redis server (standalone or a
// single cluster seed, which the client detects) or several seed nodes of a
// Redis Cluster.
type URL struct {
	// Addrs are the server addresses as host:port, in the order given. More
	// than one address means Redis Cluster. A missing port is 6379.
	Addrs []string
	// Username and Password are the ACL credentials, unescaped; both may be
	// empty ("redis://:secret@host" gives only a password).
	Username string
	Password string
	// DB is the database number selected on connect; always 0 for a cluster.
	DB int
	// TLS is true for the rediss:// scheme.
	TLS bool
}

// Cluster reports whether the URL names several seed nodes of a Redis
// Cluster. A single address may still be a cluster node: the client detects
// that when it connects.
func (r URL) Cluster() bool { return len(r.Addrs) > 1 }

// String returns the URL with the password replaced by "xxxxx", safe to log.
func (r URL) String() string {
	var b strings.Builder
	if r.TLS {
		b.WriteString("rediss://")
	} else {
		b.WriteString("redis://")
	}
	if r.Username != "" || r.Password != "" {
		b.WriteString(url.User(r.Username).String()) // escapes ':', '/', '@' and '?'
		if r.Password != "" {
			b.WriteString(":xxxxx")
		}
		b.WriteByte('@')
	}
	b.WriteString(strings.Join(r.Addrs, ","))
	if r.DB != 0 {
		b.WriteString("/" + strconv.Itoa(r.DB))
	}
	return b.String()
}

const defaultRedisPort = "6379"

// ParseURL parses redis://[user:pass@]host:port[/db], rediss:// (TLS) and
// the cluster form redis://[user:pass@]h1:p1,h2:p2,h3:p3 (JOURNAL_REDIS_URL). The
// project parses it itself because the Redis client's ParseURL does not take
// several hosts. A database number with several seeds, query parameters,
// fragments, duplicate or empty addresses and out-of-range ports are errors;
// the error text says what is wanted and never contains the password.
func ParseURL(s string) (URL, error) {
	var r URL
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return r, errors.New("want redis://[user:pass@]host:port[/db], rediss://... or redis://h1:p1,h2:p2,... for a cluster")
	}
	switch strings.ToLower(scheme) {
	case "redis":
	case "rediss":
		r.TLS = true
	default:
		return r, fmt.Errorf("scheme %q: want redis:// or rediss://", scheme)
	}
	if strings.ContainsAny(rest, "?#") {
		return r, errors.New("query parameters and fragments are not supported")
	}
	authority, path, hasPath := strings.Cut(rest, "/")
	if strings.Contains(path, "@") {
		// The user name or password holds a '/': quoting any part of the
		// URL here could show the password.
		return r, errors.New("a '/' before the '@': percent-encode '/' in the user name and password as %2F")
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo := authority[:at]
		authority = authority[at+1:]
		user, pass, _ := strings.Cut(userinfo, ":")
		var err error
		if r.Username, err = url.PathUnescape(user); err != nil {
			return URL{}, errors.New("malformed percent-encoding in the user name")
		}
		if r.Password, err = url.PathUnescape(pass); err != nil {
			return URL{}, errors.New("malformed percent-encoding in the password")
		}
	}
	if authority == "" {
		return URL{}, errors.New("no host: want redis://host:port")
	}
	seen := make(map[string]bool)
	for _, hp := range strings.Split(authority, ",") {
		addr, err := redisAddr(strings.TrimSpace(hp))
		if err != nil {
			return URL{}, err
		}
		if seen[addr] {
			return URL{}, fmt.Errorf("address %s appears twice", addr)
		}
		seen[addr] = true
		r.Addrs = append(r.Addrs, addr)
	}
	if hasPath && path != "" {
		if r.Cluster() {
			return URL{}, errors.New("a database number (/db) cannot be used with a cluster (several addresses)")
		}
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 || strconv.Itoa(db) != path {
			return URL{}, fmt.Errorf("database %q: want a non-negative integer such as /0", path)
		}
		r.DB = db
	}
	return r, nil
}

// redisAddr validates one host[:port] and returns it as host:port.
func redisAddr(hp string) (string, error) {
	if hp == "" {
		return "", errors.New("empty address in the list: want h1:p1,h2:p2")
	}
	host, port := hp, defaultRedisPort
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]") {
		host = hp[1 : len(hp)-1] // bracketed IPv6 without a port
	} else if strings.Contains(hp, ":") {
		return "", fmt.Errorf("address %q: want host:port", hp)
	}
	if host == "" {
		return "", fmt.Errorf("address %q has no host", hp)
	}
	if strings.ContainsAny(host, " /@[]") {
		return "", fmt.Errorf("address %q: malformed host", hp)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("address %q: port must be 1-65535", hp)
	}
	return net.JoinHostPort(host, port), nil
}
