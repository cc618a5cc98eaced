package main

import (
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper/contract"
)

// The text report's failures-by-reason block names each failing key's
// reasons with count, share of the key's failures and a sample cut to one
// line; a report without reasons has no block.
func TestPrintReasons(t *testing.T) {
	long := `{"ok":false,"error":"not_authed","detail":"` + strings.Repeat("x", 200) + `"}`
	keys := []contract.ReportKey{
		{Key: "api:auth.test", Failures: 200, Reasons: []contract.Reason{
			{Reason: "not_authed", Count: 168, Sample: long}, {Reason: "http 503", Count: 32, Sample: "overloaded"}}},
		{Key: "api:chat.postMessage"},
	}
	var b strings.Builder
	printReasons(&b, keys)
	out := b.String()
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || lines[0] != "failures by reason:" {
		t.Fatalf("block:\n%s", out)
	}
	for i, want := range [][]string{{"api:auth.test", "not_authed", "168", "84.0%", `{"ok":false,"error":"not_authed"`}, {"api:auth.test", "http 503", "32", "16.0%", "overloaded"}} {
		line := lines[2+i]
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Errorf("line %q lacks %q", line, w)
			}
		}
	}
	if strings.Contains(out, strings.Repeat("x", 100)) || !strings.Contains(lines[2], "...") {
		t.Errorf("the long sample was not cut: %q", lines[2])
	}
	b.Reset()
	printReasons(&b, keys[1:])
	if b.Len() != 0 {
		t.Errorf("a report without reasons printed %q", b.String())
	}
}
