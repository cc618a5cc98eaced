package warehouse

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
)

// namedCalls makes 30 users each call from, then to 10 s later.
func namedCalls(from, to string) []call {
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	var calls []call
	for u := range 30 {
		at := start.Add(time.Duration(u) * time.Minute)
		calls = append(calls, call{User: fmt.Sprintf("U%d", u), Method: from, T: at}, call{User: fmt.Sprintf("U%d", u), Method: to, T: at.Add(10 * time.Second)})
	}
	return calls
}

// A method whose name holds '>' can still be named in a drop: "x>y>c"
// names the observed transition x>y → c, the only way to read it that
// the export holds.
func TestSessionsDropTransitionMethodWithArrow(t *testing.T) {
	path := writeCalls(t, t.TempDir(), "arrow.csv", namedCalls("x>y", "c"))
	s := generate(t, Options{From: path, Sessions: true, DropTransitions: []string{"x>y>c"}}).Sessions
	if len(s.Transitions) != 1 {
		t.Fatalf("transitions %+v, want x>y → c", s.Transitions)
	}
	if tr := s.Transitions[0]; tr.From != "x>y" || tr.To != "c" || !tr.Dropped || tr.Kept {
		t.Errorf("transition %+v: want x>y → c dropped", tr)
	}
	if notes := strings.Join(s.Notes, "\n"); strings.Contains(notes, "no such transition") {
		t.Errorf("notes %q: the drop was not matched", s.Notes)
	}
}

// Huge method names: the sessions output still loads.
func TestSessionsHugeMethodNames(t *testing.T) {
	from, to := strings.Repeat("f", 4000), strings.Repeat("t", 4000)
	res := generate(t, Options{From: writeCalls(t, t.TempDir(), "huge.csv", namedCalls(from, to)), Sessions: true})
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	if set, diags := behaviors.Parse(behaviors.File{Name: "huge.json", Data: out.Bytes()}); set == nil {
		t.Fatalf("the output does not load: %v", diags)
	}
}
