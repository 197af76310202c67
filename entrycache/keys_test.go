package entrycache

import (
	"strings"
	"testing"
)

// TestUserKeysSharePrefix: itemKey and genKey spell the user prefix out
// (one allocation per key); they must still start with userPrefix, whose
// hash tag keeps every key of a user in one Redis Cluster slot.
func TestUserKeysSharePrefix(t *testing.T) {
	s := &Store{opts: Options{Prefix: "p:"}}
	prefix := s.userPrefix("u1")
	if !strings.Contains(prefix, "{u:u1}") {
		t.Fatalf("userPrefix = %q, want the hash tag {u:u1}", prefix)
	}
	for name, key := range map[string]string{"itemKey": s.itemKey("u1", "e1"), "genKey": s.genKey("u1")} {
		if !strings.HasPrefix(key, prefix) || len(key) == len(prefix) {
			t.Errorf("%s = %q, want %q and more", name, key, prefix)
		}
	}
}
