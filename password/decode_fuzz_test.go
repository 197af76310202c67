package password

import (
	"bytes"
	"testing"
)

// FuzzDecode: the stored hash is read back from the database on every
// login, so a corrupted or hostile row must not crash a login or make one
// verification allocate without bound. decode never panics; what it accepts
// has parameters within the limits (memory at most 1 GiB) and a salt and key
// of the stated lengths, and encodes to a hash that decodes to the same.
func FuzzDecode(f *testing.F) {
	p := DefaultParams()
	f.Add(encode(p, bytes.Repeat([]byte{1}, int(p.SaltLen)), bytes.Repeat([]byte{2}, int(p.KeyLen))))
	for _, s := range []string{
		"", "$", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=19456,t=0,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=019456,t=02,p=01$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=19456,t=2,p=256$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$t=2,m=19456,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=19456,t=2,p=1$$", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := decode(s)
		if err != nil {
			if err != ErrMalformedHash {
				t.Fatalf("decode(%q) error %v, want ErrMalformedHash", s, err)
			}
			return
		}
		if !p.valid() || p.Memory > maxMemory || int(p.SaltLen) != len(salt) || int(p.KeyLen) != len(key) {
			t.Fatalf("decode(%q) = %+v, salt %d bytes, key %d bytes: out of limits or inconsistent", s, p, len(salt), len(key))
		}
		p2, salt2, key2, err := decode(encode(p, salt, key))
		if err != nil || p2 != p || !bytes.Equal(salt2, salt) || !bytes.Equal(key2, key) {
			t.Fatalf("decode(%q) = %+v, but its encoding decodes to %+v, %v", s, p, p2, err)
		}
	})
}
