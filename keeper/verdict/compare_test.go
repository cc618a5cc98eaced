package verdict

import (
	"math"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper/state"
)

func TestParseTolerances(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{{"10%", 0.1}, {"0.1", 0.1}, {" 25 % ", 0.25}, {"0", 0}, {"1000%", 10}} {
		if got, err := ParseTolerance(c.in); err != nil || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ParseTolerance(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "not a percentage"}, {"ten", "not a percentage"}, {"-5%", "outside"}, {"1001%", "outside"}, {"NaN", "not a percentage"}, {"Inf", "not a percentage"},
	} {
		if _, err := ParseTolerance(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseTolerance(%q): %v, want %q", c.in, err, c.want)
		}
	}
	for _, c := range []struct {
		in   string
		want float64
	}{{"0.5pp", 0.5}, {"0.5%", 0.5}, {"2", 2}} {
		if got, err := ParseErrorTolerance(c.in); err != nil || got != c.want {
			t.Errorf("ParseErrorTolerance(%q) = %v, %v", c.in, got, err)
		}
	}
	for _, in := range []string{"x", "-1pp", "101"} {
		if _, err := ParseErrorTolerance(in); err == nil {
			t.Errorf("ParseErrorTolerance(%q) accepted", in)
		}
	}
}

func f64(v float64) *float64 { return &v }

// Verdicts at the edges of the tolerances: a latency change inside the
// sketches' 1% error is never flagged, even at zero tolerance; error
// rates move in percentage points; fewer calls is a regression except for
// keys counting drops.
func TestCompareKeyVerdicts(t *testing.T) {
	key := func(name string, count uint64, rate, errRate float64, p95 *float64) state.ReportKey {
		return state.ReportKey{Key: name, Count: count, Rate: rate, ErrorRate: errRate, P95: p95}
	}
	verdict := func(kc KeyComparison, stat string) string {
		for _, s := range kc.Stats {
			if s.Stat == stat {
				return s.Verdict
			}
		}
		return "absent"
	}
	for _, c := range []struct {
		name      string
		old, cur  state.ReportKey
		tol       float64
		floor     float64 // MinLatencyDeltaMS
		stat      string
		want, key string
	}{
		// 100 → 101.5 ms is within the two sketches' combined 2% error.
		{"inside sketch error", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(101.5)), 0, 0, "p95_ms", VerdictSame, VerdictSame},
		// 100 → 103 ms is beyond it.
		{"beyond sketch error", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(103)), 0, 0, "p95_ms", VerdictRegressed, VerdictRegressed},
		// 100 → 109 ms is inside a 10% tolerance; 100 → 85 is not.
		{"inside tolerance", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(109)), 0.1, 0, "p95_ms", VerdictSame, VerdictSame},
		{"faster", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(85)), 0.1, 0, "p95_ms", VerdictImproved, VerdictImproved},
		// Error rates over a million calls: 1% → 1.4% is inside 0.5 pp,
		// 1% → 1.6% is not.
		{"errors inside pp", key("api:a", 1e6, 1e5, 0.01, nil), key("api:a", 1e6, 1e5, 0.014, nil), 0.1, 0, "error_rate", VerdictSame, VerdictSame},
		{"errors beyond pp", key("api:a", 1e6, 1e5, 0.01, nil), key("api:a", 1e6, 1e5, 0.016, nil), 0.1, 0, "error_rate", VerdictRegressed, VerdictRegressed},
		// Throughput over 10 s runs: 20% fewer calls is a regression when
		// beyond counting noise (1000 → 800: 3σ = 127 calls), not when
		// within it (8 → 4: 3σ = 10); 40% more drops is a regression.
		{"less throughput", key("api:a", 1000, 100, 0, nil), key("api:a", 800, 80, 0, nil), 0.1, 0, "rate_per_sec", VerdictRegressed, VerdictRegressed},
		{"fewer calls", key("api:a", 1000, 100, 0, nil), key("api:a", 800, 80, 0, nil), 0.1, 0, "count", VerdictRegressed, VerdictRegressed},
		{"few calls", key("api:a", 8, 0.8, 0, nil), key("api:a", 4, 0.4, 0, nil), 0.1, 0, "rate_per_sec", VerdictSame, VerdictSame},
		{"more drops", key("ws:disconnect", 500, 50, 1, nil), key("ws:disconnect", 700, 70, 1, nil), 0.1, 0, "rate_per_sec", VerdictRegressed, VerdictRegressed},
		// Error rates over few calls: 0 → 2% of 50 calls is noise (3σ ≈ 6 pp).
		{"few errors", key("api:a", 50, 5, 0, nil), key("api:a", 50, 5, 0.02, nil), 0.1, 0, "error_rate", VerdictSame, VerdictSame},
		// 0.6 → 0.9 ms is beyond 10% but under a 1 ms floor.
		{"under the floor", key("api:a", 10, 1, 0, f64(0.6)), key("api:a", 10, 1, 0, f64(0.9)), 0.1, 1, "p95_ms", VerdictSame, VerdictSame},
		// Latency only in the new run.
		{"new latency", key("api:a", 10, 1, 0, nil), key("api:a", 10, 1, 0, f64(5)), 0.1, 0, "p95_ms", VerdictNew, VerdictSame},
	} {
		base := &state.Report{Run: "b", DurationSecs: 10, Keys: []state.ReportKey{c.old}}
		rep := &state.Report{Run: "r", DurationSecs: 10, Keys: []state.ReportKey{c.cur}}
		cmp := CompareReports(rep, base, CompareOptions{Tolerance: c.tol, ErrorTolerancePP: DefaultErrorTolerancePP, MinLatencyDeltaMS: c.floor})
		if len(cmp.Keys) != 1 {
			t.Fatalf("%s: keys %+v", c.name, cmp.Keys)
		}
		if got := verdict(cmp.Keys[0], c.stat); got != c.want || cmp.Keys[0].Verdict != c.key {
			t.Errorf("%s: %s %s, key %s; want %s, key %s", c.name, c.stat, got, cmp.Keys[0].Verdict, c.want, c.key)
		}
	}
	// Keys in one run only; thresholds and launches side by side.
	yes, no := true, false
	base := &state.Report{Run: "b", Keys: []state.ReportKey{key("api:gone", 1, 1, 0, nil)},
		Thresholds: []state.ThresholdResult{{Key: "api:a", Expr: "p95 < 1s", Passed: yes}, {Key: "api:a", Expr: "error_rate < 1%", Passed: no}},
		Launches:   []state.ReportLaunch{{Name: "herd", SpreadMS: 20}}}
	rep := &state.Report{Run: "r", Keys: []state.ReportKey{key("api:new", 1, 1, 0, nil)},
		Thresholds: []state.ThresholdResult{{Key: "api:a", Expr: "p95 < 1s", Passed: no}, {Key: "api:a", Expr: "error_rate < 1%", Passed: yes}},
		Launches:   []state.ReportLaunch{{Name: "herd", SpreadMS: 60}, {Name: "herd", SpreadMS: 1}}}
	cmp := CompareReports(rep, base, DefaultCompareOptions())
	if len(cmp.Keys) != 2 || cmp.Keys[0].Key != "api:gone" || cmp.Keys[0].Verdict != VerdictGone || cmp.Keys[1].Verdict != VerdictNew {
		t.Errorf("keys %+v", cmp.Keys)
	}
	got := map[string]string{}
	for _, th := range cmp.Thresholds {
		got[th.Expr] = th.Verdict
	}
	if got["p95 < 1s"] != VerdictRegressed || got["error_rate < 1%"] != VerdictImproved {
		t.Errorf("thresholds %+v", cmp.Thresholds)
	}
	if len(cmp.Launches) != 2 || cmp.Launches[0].Verdict != VerdictRegressed || cmp.Launches[1].Verdict != VerdictNew {
		t.Errorf("launches %+v", cmp.Launches)
	}
}
