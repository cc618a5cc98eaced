package warehouse

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
)

// loadsSessions encodes a sessions result and parses it as a behavior
// file, failing the test with the parser's diagnostics when it does not
// load.
func loadsSessions(t *testing.T, res *Result) {
	t.Helper()
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	if set, diags := behaviors.Parse(behaviors.File{Name: "sessions.json", Data: out.Bytes()}); set == nil {
		t.Fatalf("the generated sessions do not load: %v", diags)
	}
}

// A pause just under the longest a behavior can hold (one week), learned
// with a session gap of a week: the delay sketch's estimates run up to 2%
// above the delays observed, so without clamping them to the exact
// extremes the generated delay_after_ms is over a week and the output
// does not load. The quantiles stay within the observed delays.
func TestSessionsDelayQuantilesWithinObserved(t *testing.T) {
	const delay = 7*24*time.Hour - time.Millisecond
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	var calls []call
	for u := range 20 {
		user := fmt.Sprintf("U%d", u)
		t0 := start.Add(time.Duration(u) * time.Minute)
		calls = append(calls, call{User: user, Method: "conversations.history", T: t0},
			call{User: user, Method: "chat.postMessage", T: t0.Add(delay)})
	}
	res := generate(t, Options{From: writeCalls(t, t.TempDir(), "week.csv", calls), Sessions: true, SessionGap: 7 * 24 * time.Hour})
	if len(res.Sessions.Transitions) != 1 {
		t.Fatalf("transitions %+v, want the one", res.Sessions.Transitions)
	}
	tr := res.Sessions.Transitions[0]
	for i, q := range tr.DelayQuantilesMS {
		if q != delay.Milliseconds() {
			t.Errorf("delay quantile %d is %d ms, every delay observed was %d ms", i, q, delay.Milliseconds())
		}
	}
	loadsSessions(t, res)
}

// A session gap longer than the longest pause a behavior can hold lets a
// session hold delays no generated step could write: refused, saying why.
func TestSessionsGapOverAWeekRefused(t *testing.T) {
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	calls := []call{{User: "U1", Method: "conversations.history", T: start},
		{User: "U1", Method: "chat.postMessage", T: start.Add(8 * 24 * time.Hour)}}
	res, err := Generate(t.Context(), Options{From: writeCalls(t, t.TempDir(), "gap.csv", calls), Sessions: true,
		SessionGap: 10 * 24 * time.Hour, TempDir: t.TempDir()}, nil)
	if err == nil {
		loadsSessions(t, res)
		t.Fatal("a 10-day session gap was accepted")
	}
	if !strings.Contains(err.Error(), "session gap: 240h0m0s is over 168h0m0s") {
		t.Errorf("error %q does not name the gap and its bound", err)
	}
}

// A method's sequence (Options.Sequences) may hold choose steps of its
// own; the generated sessions nest them inside their follow-ups' choose
// steps, and the output must still load (choose steps nest at most
// behaviors.MaxChooseDepth deep).
func TestSessionsNestSequencesWithChoose(t *testing.T) {
	dir := t.TempDir()
	inner := `{"delay_after_ms": 1}`
	for range 3 {
		inner = `{"choose": [{"weight": 0.5, "steps": [` + inner + `]}]}`
	}
	seqs := writeFile(t, dir, "seqs.json", []byte(`{"sequences": {"conversations.history": {"steps": [
		{"request": {"type": "api", "method": "conversations.history"}}, `+inner+`]}}}`))
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	var calls []call
	for u := range 30 {
		t0 := start.Add(time.Duration(u) * time.Minute)
		for i := range 8 {
			calls = append(calls, call{User: fmt.Sprintf("U%d", u), Method: "conversations.history", T: t0.Add(time.Duration(i) * time.Second)})
		}
	}
	res := generate(t, Options{From: writeCalls(t, dir, "deep.csv", calls), Sessions: true, Sequences: seqs})
	if tr := res.Sessions.Transitions; len(tr) != 1 || !tr[0].Kept {
		t.Errorf("transitions %+v, want the one, kept as deep as it fits", tr)
	}
	loadsSessions(t, res)
}
