package migrations_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/journalsvc/journal/internal/migrations"
)

func TestLoadOrdersByVersion(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"migrations/0010_ten.sql":  {Data: []byte("ten")},
		"migrations/0002_two.sql":  {Data: []byte("two")},
		"migrations/0001_init.sql": {Data: []byte("one")},
		"migrations/README":        {Data: []byte("not a migration")},
	}
	ms, err := migrations.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name+"="+m.SQL)
	}
	if want := "0001_init.sql=one 0002_two.sql=two 0010_ten.sql=ten"; strings.Join(got, " ") != want {
		t.Errorf("Load = %v, want %s", got, want)
	}
	if ms[2].Version != 10 {
		t.Errorf("version of 0010_ten.sql = %d, want 10", ms[2].Version)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	for name, fsys := range map[string]fstest.MapFS{
		"no number":    {"migrations/init.sql": {}},
		"zero":         {"migrations/0_init.sql": {}},
		"no separator": {"migrations/0001.sql": {}},
		"duplicate":    {"migrations/1_a.sql": {}, "migrations/01_b.sql": {}},
	} {
		if _, err := migrations.Load(fsys); err == nil {
			t.Errorf("%s: Load accepted %v", name, fsys)
		}
	}
}
