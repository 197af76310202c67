package journal

import (
	"testing"
	"time"
)

// FuzzDecodeCursor checks that DecodeCursor never panics on any input, that
// what it accepts (filters included) re-encodes to the very same string, and
// that every cursor Encode makes decodes to itself.
func FuzzDecodeCursor(f *testing.F) {
	c := Cursor{CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC), ID: "0194d0a8-7c4e-7a8b-9c0d-1e2f3a4b5c6d"}
	f.Add(c.Encode(), int64(1735787045678901), "0194d0a8-7c4e-7a8b-9c0d-1e2f3a4b5c6d")
	f.Add("", int64(0), "")
	f.Add("MS4wLjAxOTRkMGE4LTdjNGUtN2E4Yi05YzBkLTFlMmYzYTRiNWM2ZA", int64(-1), "not-an-id")
	f.Add("!!!", int64(1<<62), "0194D0A8-7C4E-7A8B-9C0D-1E2F3A4B5C6D")
	rain, _ := ParseFilter("Rain Spain K", "2025-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z")
	f.Add(Cursor{CreatedAt: c.CreatedAt, ID: c.ID, Filter: rain}.Encode(), int64(0), c.ID)
	f.Fuzz(func(t *testing.T, s string, us int64, id string) {
		if got, err := DecodeCursor(s); err == nil {
			if enc := got.Encode(); enc != s {
				t.Fatalf("DecodeCursor(%q) accepted a cursor Encode writes as %q", s, enc)
			}
			again, err := DecodeCursor(got.Encode())
			if err != nil || !again.CreatedAt.Equal(got.CreatedAt) || again.ID != got.ID || !again.Filter.Equal(got.Filter) {
				t.Fatalf("DecodeCursor(%q) = %v, but its Encode decodes to %v, %v", s, got, again, err)
			}
			if got.CreatedAt.Location() != time.UTC || got.CreatedAt.UnixMicro() < 0 || !ValidID(got.ID) {
				t.Fatalf("DecodeCursor(%q) accepted %v", s, got)
			}
		}
		if us < 0 || !ValidID(id) {
			return
		}
		c := Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: id}
		got, err := DecodeCursor(c.Encode())
		if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
			t.Fatalf("DecodeCursor(Encode(%v)) = %v, %v", c, got, err)
		}
	})
}
