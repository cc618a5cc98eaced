package warehouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
)

// Options that cannot learn sessions are refused, each naming the field.
func TestSessionOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		// sessions must begin in distinct minutes
		{"gap below a minute", Options{From: "x", Sessions: true, SessionGap: 30 * time.Second}, "session gap: 30s is below the 1-minute minimum"},
		{"negative gap", Options{From: "x", Sessions: true, SessionGap: -time.Minute}, "session gap: -1m0s"},
		// from>to, both named
		{"drop without >", Options{From: "x", Sessions: true, DropTransitions: []string{"a-b"}}, `drop transition: "a-b" is not written from>to`},
		{"drop without to", Options{From: "x", Sessions: true, DropTransitions: []string{"a>"}}, `drop transition: "a>" is not written from>to`},
		// session options without sessions are a mistake, not ignored
		{"gap without sessions", Options{From: "x", SessionGap: time.Hour}, "they need sessions"},
		// an aggregated export has no order
		{"aggregated shape", Options{From: "x", Sessions: true, Shape: ShapeAggregated}, "sessions: a pre-aggregated export has no timestamps"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.o.Validate()
			if !strings.Contains(errors.Join(errs...).Error(), tc.want) {
				t.Errorf("Validate() = %v, want one containing %q", errs, tc.want)
			}
		})
	}
}

// An export without timestamps (the aggregated shape, found by its
// columns) cannot give sessions: an error saying why, and no result.
func TestSessionsNeedTimestamps(t *testing.T) {
	p := writeFile(t, t.TempDir(), "agg.csv", []byte("method,user_minutes,active_user_minutes\nchat.postMessage,10,100\n"))
	res, err := Generate(context.Background(), Options{From: p, Sessions: true, TempDir: t.TempDir()}, nil)
	if err == nil || res != nil {
		t.Fatalf("Generate = %v, %v; want an error", res, err)
	}
	for _, want := range []string{"--sessions needs a raw call log", "pre-aggregated", "no timestamps and no order of calls"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// One call per user: no transition can be learned, which the notes say;
// the entries are still written, and the output loads.
func TestSessionsOneCallPerUser(t *testing.T) {
	var calls []call
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	for u := range 50 {
		calls = append(calls, call{User: fmt.Sprintf("U%d", u), Method: testMethods[u%3], T: start.Add(time.Duration(u) * time.Minute)})
	}
	res := generate(t, Options{From: writeCalls(t, t.TempDir(), "one.csv", calls), Sessions: true})
	s := res.Sessions
	if s.TransitionCount != 0 || len(s.Transitions) != 0 || s.Count != 50 || s.SingleCall != 50 || len(s.Entries) != 3 {
		t.Errorf("sessions %+v: want 50 single-call sessions, 3 entries, no transitions", s)
	}
	if notes := strings.Join(s.Notes, "\n"); !strings.Contains(notes, "no transitions learned: each of the 50 sessions from 50 users holds a single call") {
		t.Errorf("notes %q do not say why nothing was learned", s.Notes)
	}
	if s.Coverage != 0 {
		t.Errorf("coverage %v with nothing observed, want 0", s.Coverage)
	}
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	if set, diags := behaviors.Parse(behaviors.File{Name: "one.json", Data: out.Bytes()}); set == nil || len(set.Behaviors) != 3 {
		t.Fatalf("the output does not load with 3 behaviors: %v", diags)
	}
}

// Clock skew between parts: one part's clock runs 10 minutes behind for
// the same users. The calls that go back in time are counted and the note
// says they came across parts; sessions are still cut in time order.
func TestSessionsClockSkewBetweenParts(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	var a, b []call
	for u := range 20 {
		user := fmt.Sprintf("U%d", u)
		for i := range 4 {
			at := start.Add(time.Duration(i) * 20 * time.Second)
			a = append(a, call{User: user, Method: "conversations.history", T: at})
			// what really came 10 s later, stamped by a clock 10 min slow
			b = append(b, call{User: user, Method: "chat.postMessage", T: at.Add(10*time.Second - 10*time.Minute)})
		}
	}
	writeCalls(t, filepath.Join(dir, "export"), "part-0.csv", a)
	writeCalls(t, filepath.Join(dir, "export"), "part-1.csv", b)
	s := generate(t, Options{From: filepath.Join(dir, "export"), Sessions: true}).Sessions
	if s.OutOfOrder != 20 {
		t.Errorf("out of order %d, want 20 (each user's first call of the slow part)", s.OutOfOrder)
	}
	notes := strings.Join(s.Notes, "\n")
	for _, want := range []string{"20 calls were more than 5s earlier than the same user's previous call", "all across parts: the parts' clocks may disagree", "largest step back is 10m50s"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q do not say %q", s.Notes, want)
		}
	}
}

// Dropping a transition leaves it out of the sessions (Kept false, its
// share ends the session) and lowers the coverage; naming one never seen
// is noted.
func TestSessionsDropTransition(t *testing.T) {
	dir := t.TempDir()
	calls := sessionModel.simulate(5, 100, time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC), time.Hour, DefaultSessionGap)
	path := writeCalls(t, dir, "calls.csv", calls)
	allRes := generate(t, Options{From: path, Sessions: true})
	all := allRes.Sessions
	drops := []string{"conversations.history>conversations.mark", "nope>never"}
	res := generate(t, Options{From: path, Sessions: true, DropTransitions: drops})
	s := res.Sessions
	found := false
	for _, tr := range s.Transitions {
		if tr.From == "conversations.history" && tr.To == "conversations.mark" {
			found = true
			if tr.Kept || !tr.Dropped || tr.Reproduced != 0 {
				t.Errorf("the dropped transition: %+v", tr)
			}
		}
	}
	if !found {
		t.Fatal("the dropped transition is not listed")
	}
	if s.Coverage >= all.Coverage-0.05 {
		t.Errorf("coverage %.3f with the most common transition dropped, %.3f without: want it lower", s.Coverage, all.Coverage)
	}
	if !strings.Contains(strings.Join(s.Notes, "\n"), `--drop-transition "nope">"never": no such transition was observed`) {
		t.Errorf("notes %q do not name the unknown transition", s.Notes)
	}
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	set, diags := behaviors.Parse(behaviors.File{Name: "d.json", Data: out.Bytes()})
	if set == nil {
		t.Fatal(diags)
	}
	set.Behavior("session:conversations.history").Sequence.EachStep(func(st *behaviors.Step) {
		for _, b := range st.Choose {
			if r := b.Sequence.Steps[1].Request; st.Request != nil && st.Request.Method == "conversations.history" && r != nil && r.Method == "conversations.mark" {
				t.Errorf("%s still follows conversations.history with conversations.mark", st.Where)
			}
		}
	})
}

// Many distinct method pairs: at most MaxTransitionPairs are tracked,
// the rest are counted as untracked and noted, and the probabilities keep
// the whole count in their denominators.
func TestSessionsPairCap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	var calls []call
	for i := range 30000 {
		calls = append(calls, call{User: fmt.Sprintf("U%d", i%10), Method: fmt.Sprintf("m%02d", r.IntN(80)), T: start.Add(time.Duration(i/10) * time.Second)})
	}
	s := generate(t, Options{From: writeCalls(t, t.TempDir(), "many.csv", calls), Sessions: true}).Sessions
	if len(s.Transitions) != MaxTransitionPairs || s.Untracked == 0 {
		t.Fatalf("%d transitions tracked, %d untracked; want %d and some", len(s.Transitions), s.Untracked, MaxTransitionPairs)
	}
	var tracked int64
	for _, tr := range s.Transitions {
		tracked += tr.Count
	}
	if tracked+s.Untracked != s.TransitionCount {
		t.Errorf("tracked %d + untracked %d != %d observed", tracked, s.Untracked, s.TransitionCount)
	}
	if !strings.Contains(strings.Join(s.Notes, "\n"), "first seen after the 4096 tracked pairs") {
		t.Errorf("notes %q do not say the pairs were capped", s.Notes)
	}
	if s.Coverage > float64(tracked)/float64(s.TransitionCount)+1e-9 {
		t.Errorf("coverage %.3f counts untracked transitions as reproduced", s.Coverage)
	}
}

// With Hourly, each entry gets 24 multipliers of when in the day its
// sessions begin (mean 1), written on its session behavior.
func TestSessionsHourly(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	var calls []call
	for day := range 2 {
		for u := range 30 {
			// one session per user and day, at 9:00-9:59 UTC
			at := start.Add(time.Duration(day)*24*time.Hour + 9*time.Hour + time.Duration(u)*time.Minute)
			calls = append(calls, call{User: fmt.Sprintf("U%d", u), Method: "conversations.history", T: at},
				call{User: fmt.Sprintf("U%d", u), Method: "conversations.mark", T: at.Add(2 * time.Second)})
		}
	}
	// a lone call late on the second day stretches the span past a day
	calls = append(calls, call{User: "Z", Method: "users.info", T: start.Add(47 * time.Hour)})
	res := generate(t, Options{From: writeCalls(t, t.TempDir(), "h.csv", calls), Sessions: true, Hourly: true})
	var e *Entry
	for i := range res.Sessions.Entries {
		if res.Sessions.Entries[i].Method == "conversations.history" {
			e = &res.Sessions.Entries[i]
		}
	}
	if e == nil || len(e.Hourly) != 24 || e.Hourly[9] != 24 || e.Hourly[10] != 0 {
		t.Fatalf("entry %+v: want all of its sessions' weight (24) at 9:00", e)
	}
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	set, diags := behaviors.Parse(behaviors.File{Name: "h.json", Data: out.Bytes()})
	if set == nil {
		t.Fatal(diags)
	}
	if b := set.Behavior("session:conversations.history"); b == nil || len(b.Hourly) != 24 || b.Hourly[9] != 24 {
		t.Errorf("the session behavior's hourly profile: %+v", b)
	}
}

// Sessions that would not fit a behavior file (big sequences copied into
// many branches) are refused with ErrLimit, saying what takes the room,
// and nothing is written.
func TestSessionsOutputBounded(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	var seqs strings.Builder
	seqs.WriteString(`{"behaviors": {`)
	big := strings.Repeat("x", 20_000)
	for i := range 60 {
		if i > 0 {
			seqs.WriteString(",")
		}
		fmt.Fprintf(&seqs, `"m%02d": {"steps": [{"doc": "%s", "request": {"type": "api", "method": "m%02d"}}]}`, i, big, i)
	}
	seqs.WriteString("}}")
	seqPath := writeFile(t, dir, "seqs.json", []byte(seqs.String()))
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	var calls []call
	for i := range 40000 {
		calls = append(calls, call{User: fmt.Sprintf("U%d", i%20), Method: fmt.Sprintf("m%02d", r.IntN(60)), T: start.Add(time.Duration(i/20) * time.Second)})
	}
	res := generate(t, Options{From: writeCalls(t, dir, "calls.csv", calls), Sessions: true, Sequences: seqPath})
	out := filepath.Join(dir, "out.json")
	err := res.WriteFile(out)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "the session behaviors") {
		t.Fatalf("WriteFile = %v, want ErrLimit naming what takes the room", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*out.json*")); len(left) > 0 {
		t.Errorf("written anyway: %v", left)
	}
}
