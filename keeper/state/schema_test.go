package state

import "testing"

// Every table is restored from its records and every record kind names a
// table of the schema, so a table added to one and not the other fails
// here instead of losing its rows at the next restart.
func TestRecordKindsCoverTheSchema(t *testing.T) {
	tables := schema().Tables
	restored := map[string]bool{}
	for _, r := range records {
		if tables[r.table] == nil {
			t.Errorf("record kind %q restores into table %q, which the schema lacks", r.key, r.table)
		}
		restored[r.table] = true
	}
	for name := range tables {
		if !restored[name] {
			t.Errorf("table %q has no record kind: Restore would refuse its records", name)
		}
	}
	// Prefixes sharing a start would make the first one listed win.
	for i, a := range records {
		for _, b := range records[i+1:] {
			if !a.exact && len(b.key) >= len(a.key) && b.key[:len(a.key)] == a.key {
				t.Errorf("prefix %q shadows the later %q", a.key, b.key)
			}
		}
	}
}
