package verdict

import (
	"encoding/csv"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper/state"
)

// The report CSV's last column lists each key's failure reasons as
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
	last := len(rows[0]) - 1
	if rows[0][last] != "reasons" {
		t.Fatalf("header %v: no reasons column last", rows[0])
	}
	if got := rows[1][last]; got != "not_authed=160;http 503=8" {
		t.Errorf("auth.test reasons %q", got)
	}
	if got := rows[2][last]; got != "" {
		t.Errorf("postMessage reasons %q, want empty", got)
	}
}
