package behaviors

import (
	"strings"
	"testing"
)

// "exclusive" names a behavior's group; bad names and conflicting files are
// errors that say where.
func TestExclusiveField(t *testing.T) {
	good := `{"behaviors": {"a": {"frequency": 0.5, "exclusive": "session",
	  "steps": [{"request": {"type": "api", "method": "a"}}]},
	  "b": {"frequency": 0.5, "steps": [{"request": {"type": "api", "method": "b"}}]}}}`
	set, diags := Parse(File{Name: "x.json", Data: []byte(good)})
	if set == nil || len(diags) != 0 {
		t.Fatal(diags)
	}
	if g := set.Behavior("a").Exclusive; g != "session" {
		t.Errorf("a exclusive = %q", g)
	}
	if g := set.Behavior("b").Exclusive; g != "" {
		t.Errorf("b exclusive = %q", g)
	}
	// Given in the frequency file, the steps in another.
	set, diags = Parse(File{Name: "f.json", Data: []byte(`{"behaviors": {"a": {"frequency": 0.5, "exclusive": "s"}}}`)},
		File{Name: "s.json", Data: []byte(`{"sequences": {"a": {"steps": [{"request": {"type": "api", "method": "a"}}]}}}`)})
	if set == nil || set.Behavior("a").Exclusive != "s" {
		t.Fatalf("split files: %v", diags)
	}
	for _, tc := range []struct{ src, want string }{
		// Not a string.
		{`{"behaviors": {"a": {"frequency": 0.1, "exclusive": 3, "steps": [{"request": {"type": "api", "method": "a"}}]}}}`, `x.json:1:53: behavior "a" › exclusive: must be a string`},
		// Empty.
		{`{"behaviors": {"a": {"frequency": 0.1, "exclusive": "", "steps": [{"request": {"type": "api", "method": "a"}}]}}}`, `"" is not a group name`},
		// Too long.
		{`{"behaviors": {"a": {"frequency": 0.1, "exclusive": "` + strings.Repeat("g", MaxExclusiveName+1) + `", "steps": [{"request": {"type": "api", "method": "a"}}]}}}`, "is not a group name (1 to 64"},
		// A control byte.
		{`{"behaviors": {"a": {"frequency": 0.1, "exclusive": "a\nb", "steps": [{"request": {"type": "api", "method": "a"}}]}}}`, `x.json:1:53: behavior "a" › exclusive: "a\nb" is not a group name`},
		// Only behaviors are scheduled: a sequence takes no group.
		{`{"sequences": {"a": {"exclusive": "s", "steps": [{"request": {"type": "api", "method": "a"}}]}}}`, `exclusive`},
	} {
		if set, d := Parse(File{Name: "x.json", Data: []byte(tc.src)}); set != nil || !strings.Contains(d.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.src, d, tc.want)
		}
	}
	// Two files disagree.
	_, d := Parse(File{Name: "f.json", Data: []byte(`{"behaviors": {"a": {"frequency": 0.5, "exclusive": "s"}}}`)},
		File{Name: "g.json", Data: []byte(`{"behaviors": {"a": {"exclusive": "t", "steps": [{"request": {"type": "api", "method": "a"}}]}}}`)})
	if !strings.Contains(d.Error(), `g.json:1:35: behavior "a" › exclusive: "t" differs from "s"`) {
		t.Errorf("conflict: %v", d)
	}
}
