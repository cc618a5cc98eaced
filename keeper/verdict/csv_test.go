package verdict

import (
	"encoding/csv"
	"slices"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper/state"
)

// The report CSV's reasons column lists each key's failure reasons as
// reason=count pairs, most frequent first; keys without reasons leave it
// empty.
func TestReportCSVReasons(t *testing.T) {
	rep := &state.Report{Run: "r1", Keys: []state.ReportKey{
		{Key: "api:auth.test", Count: 170, Failures: 168, Outcomes: map[string]uint64{"ok": 2, "error": 168},
			Reasons: []state.Reason{{Reason: "not_authed", Count: 160, Sample: `{"ok":false}`}, {Reason: "http 503", Count: 8}}},
		{Key: "api:chat.postMessage", Count: 5, Outcomes: map[string]uint64{"ok": 5}},
	}}
	var b strings.Builder
	if err := WriteReportCSV(&b, rep); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	last := slices.Index(rows[0], "reasons")
	if last < 0 {
		t.Fatalf("header %v: no reasons column", rows[0])
	}
	if got := rows[1][last]; got != "not_authed=160;http 503=8" {
		t.Errorf("auth.test reasons %q", got)
	}
	if got := rows[2][last]; got != "" {
		t.Errorf("postMessage reasons %q, want empty", got)
	}
}

// The fidelity columns: a behavior's expected runs, SE, z and verdict on
// its row; a behavior that never ran gets a row; a launch's uniformity on
// its sequence row; the run's verdict last, under key "fidelity".
func TestReportCSVFidelity(t *testing.T) {
	z, ks, p := -12.5, 0.9, 1e-20
	mz := 12.5
	rep := &state.Report{Run: "r1", Keys: []state.ReportKey{
		{Key: "behavior:post", Count: 100, Outcomes: map[string]uint64{"ok": 50, "halted": 50}},
		{Key: "formation:herd#l1", Count: 40, Outcomes: map[string]uint64{"ok": 40}},
	}, Launches: []state.ReportLaunch{{ID: "l1", Key: "formation:herd#l1"}},
		Fidelity: &state.Fidelity{Verdict: state.FidelityNotMatched, Summary: "behavior post under: 50% halted", MaxAbsZ: &mz,
			Behaviors: []state.FidelityBehavior{
				{Behavior: "post", Key: "behavior:post", Expected: 100, SE: 4, Z: &z, Verdict: state.FidelityUnder, Cause: "50% halted"},
				{Behavior: "never", Key: "behavior:never", Expected: 2, SE: 1.4, Verdict: state.FidelityTooLittle}},
			Launches: []state.FidelityLaunch{{ID: "l1", Starts: 40, KS: &ks, P: &p, Uniformity: state.FidelityClumped}}}}
	var b strings.Builder
	if err := WriteReportCSV(&b, rep); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := func(row []string, name string) string { return row[slices.Index(rows[0], name)] }
	if len(rows) != 5 {
		t.Fatalf("%d rows, want header, 2 keys, 1 unseen behavior, 1 verdict: %q", len(rows), rows)
	}
	if col(rows[1], "expected") != "100.00" || col(rows[1], "z") != "-12.50" || col(rows[1], "fidelity") != "under: 50% halted" {
		t.Errorf("behavior row %q", rows[1])
	}
	if !strings.HasPrefix(col(rows[2], "fidelity"), "clumped (KS D 0.900, p 1e-20, 40 starts)") {
		t.Errorf("launch row %q", rows[2])
	}
	if col(rows[3], "key") != "behavior:never" || col(rows[3], "count") != "0" || col(rows[3], "fidelity") != "too_little" {
		t.Errorf("unseen behavior row %q", rows[3])
	}
	if col(rows[4], "key") != "fidelity" || col(rows[4], "fidelity") != "not_matched: behavior post under: 50% halted" || col(rows[4], "z") != "12.50" {
		t.Errorf("verdict row %q", rows[4])
	}
}
