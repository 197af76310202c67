// Package policyfile reads rate-limit policies from a YAML file
// (docs/design.md, "Policies the service applies"):
//
//	policies:
//	  - name: ip-hour          # header token; [a-z0-9-]
//	    key: ip                # ip | user | login | login-account | signup
//	    rate: 2000/1h
//	    burst: 200             # optional, default N
//	    algorithm: gcra        # optional, default the caller's
//	    fail: local            # open | closed | local (optional, default local)
//	    shadow: true           # optional
//
// Unknown fields, bad rates, unknown keys, algorithms or fail modes, and
// duplicate names are errors that name the policy and the field.
package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/journalsvc/journal/ratelimit"
	"go.yaml.in/yaml/v3"
)

// Keys a policy may be keyed by: what identifies the subject of a request.
const (
	KeyIP     = "ip"     // the client IP (IPv6 by /64), every limited request
	KeyUser   = "user"   // the authenticated user, after authentication
	KeyLogin  = "login"  // client IP + SHA-256 of the username, every password check
	KeySignup = "signup" // the client IP, POST /v1/users
	// KeyLoginAccount: the SHA-256 of the username, charged by failed
	// password checks only.
	KeyLoginAccount = "login-account"
)

// Policy is one policy of the file and the subject it is keyed by.
type Policy struct {
	Key    string // KeyIP, KeyUser, KeyLogin, KeyLoginAccount or KeySignup
	Policy ratelimit.Policy
}

type filePolicy struct {
	Name      string `yaml:"name"`
	Key       string `yaml:"key"`
	Rate      string `yaml:"rate"`
	Burst     *int64 `yaml:"burst"`
	Algorithm string `yaml:"algorithm"`
	Fail      string `yaml:"fail"`
	Shadow    bool   `yaml:"shadow"`
}

type file struct {
	Policies []filePolicy `yaml:"policies"`
}

// ReadFile reads and validates the policy file at path; see Parse.
func ReadFile(path string, defaultAlgorithm ratelimit.Algorithm, reserved ...string) ([]Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b, defaultAlgorithm, reserved...)
}

// Parse validates a policy file. Policies without an algorithm get
// defaultAlgorithm. Names listed in reserved (the built-in policies, such as
// "ip") may not be reused. The error of an invalid file names the policy and
// the field.
func Parse(data []byte, defaultAlgorithm ratelimit.Algorithm, reserved ...string) ([]Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("policy file: %w", err)
	}
	var extra file
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("policy file: more than one YAML document")
	}
	names := make(map[string]bool, len(f.Policies)+len(reserved))
	for _, r := range reserved {
		names[r] = true
	}
	out := make([]Policy, 0, len(f.Policies))
	for i, fp := range f.Policies {
		where := fmt.Sprintf("policy file: policies[%d]", i)
		if fp.Name != "" {
			where = fmt.Sprintf("policy file: policy %q", fp.Name)
		}
		if names[fp.Name] {
			return nil, fmt.Errorf("%s: duplicate name", where)
		}
		names[fp.Name] = true
		switch fp.Key {
		case KeyIP, KeyUser, KeyLogin, KeyLoginAccount, KeySignup:
		case "":
			return nil, fmt.Errorf("%s: key is required (ip, user, login, login-account or signup)", where)
		default:
			return nil, fmt.Errorf("%s: key %q: want ip, user, login, login-account or signup", where, fp.Key)
		}
		if fp.Rate == "" {
			return nil, fmt.Errorf("%s: rate is required (N/DURATION like 2000/1h)", where)
		}
		rate, err := ratelimit.ParseRate(fp.Rate)
		if err != nil {
			return nil, fmt.Errorf("%s: rate: %w", where, err)
		}
		p := ratelimit.Policy{Name: fp.Name, Rate: rate, Algorithm: defaultAlgorithm, Shadow: fp.Shadow}
		if fp.Burst != nil {
			if *fp.Burst < 1 {
				return nil, fmt.Errorf("%s: burst must be at least 1", where)
			}
			p.Burst = *fp.Burst
		}
		if fp.Algorithm != "" {
			if p.Algorithm, err = ratelimit.ParseAlgorithm(fp.Algorithm); err != nil {
				return nil, fmt.Errorf("%s: algorithm: %w", where, err)
			}
		}
		if fp.Fail != "" {
			if p.Fail, err = ratelimit.ParseFailMode(fp.Fail); err != nil {
				return nil, fmt.Errorf("%s: fail: %w", where, err)
			}
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, Policy{Key: fp.Key, Policy: p})
	}
	return out, nil
}
