package verdict

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper/state"
)

func TestParseThreshold(t *testing.T) {
	for _, c := range []struct {
		expr  string
		stat  string
		op    string
		limit float64
		unit  string
	}{
		{"p95 < 300ms", "p95", "<", 300, "ms"},
		{"p99<2s", "p99", "<", 2000, "ms"},
		{"p99.9 <= 1.5s", "p99.9", "<=", 1500, "ms"},
		{"max < 10s", "max", "<", 10000, "ms"},
		{"P50 > 0ms", "p50", ">", 0, "ms"},
		{"error_rate < 1%", "error_rate", "<", 0.01, "fraction"},
		{"error_rate <= 0.05", "error_rate", "<=", 0.05, "fraction"},
		{"success_rate >= 99.5%", "success_rate", ">=", 0.995, "fraction"},
		{"count >= 100", "count", ">=", 100, "count"},
		{"errors < 5", "errors", "<", 5, "count"},
		{"rate > 50/s", "rate", ">", 50, "per_sec"},
		{"  rate   >=  2.5 ", "rate", ">=", 2.5, "per_sec"},
	} {
		th, err := ParseThreshold("api:x", c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		if th.Stat != c.stat || th.Op != c.op || math.Abs(th.Limit-c.limit) > 1e-9 || th.Unit() != c.unit {
			t.Errorf("%q: got %+v unit %s", c.expr, th, th.Unit())
		}
	}
	for _, c := range []struct{ expr, want string }{
		{"", "want STAT OP VALUE"},
		{"p95 300ms", "want STAT OP VALUE"},
		{"p95 < 300ms extra", "want STAT OP VALUE"},
		{"p95 = 300ms", "operator"},
		{"p95 << 300ms", "operator"},
		{"p0 < 1s", "percentile"},
		{"p101 < 1s", "percentile"},
		{"pxx < 1s", "percentile"},
		{"avg < 1s", "unknown statistic"},
		{"p95 < 300", "duration with a unit"},
		{"p95 < -1s", "negative"},
		{"error_rate < 150%", "outside"},
		{"error_rate < 2", "outside"},
		{"error_rate < lots", "percentage"},
		{"count > -1", "non-negative"},
		{"rate > NaN", "non-negative"},
	} {
		_, err := ParseThreshold("api:x", c.expr)
		if err == nil || !errors.Is(err, errThreshold) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one mentioning %q", c.expr, err, c.want)
		}
	}
}

// A fidelity threshold is "matched" or a bound on max |z|; it fails a run
// that did not match, or could not be judged.
func TestFidelityThreshold(t *testing.T) {
	ts, ferr := ParseThresholds(map[string][]string{FidelityKey: {"matched", "max_z<=3", " MAX_Z < 4.5 "}})
	if ferr != nil {
		t.Fatal(ferr)
	}
	if len(ts) != 3 || ts[0].Stat != "matched" || ts[1].Expr != "max_z <= 3" || ts[2].Limit != 4.5 || !ts[0].IsFidelity() {
		t.Fatalf("parsed %+v %+v %+v", ts[0], ts[1], ts[2])
	}
	for _, c := range []struct{ expr, want string }{
		{"p95 < 1s", "a fidelity condition is"}, // a metric statistic on the fidelity key
		{"max_z > 3", "takes < or <="},
		{"max_z <= -1", "positive number"},
		{"max_z <= NaN", "positive number"},
		{"matched please", "a fidelity condition is"},
	} {
		_, ferr := ParseThresholds(map[string][]string{FidelityKey: {c.expr}})
		if ferr == nil || ferr.Field != `thresholds["fidelity"][0]` || !strings.Contains(ferr.Message, c.want) {
			t.Errorf("%q: error %v, want one mentioning %q", c.expr, ferr, c.want)
		}
	}
	z := func(v float64) *float64 { return &v }
	matched := &state.Fidelity{Verdict: state.FidelityMatched, Summary: "the load matched its spec", MaxAbsZ: z(2.5),
		Behaviors: []state.FidelityBehavior{{Verdict: state.FidelityWithin}}}
	under := &state.Fidelity{Verdict: state.FidelityNotMatched, Summary: "behavior x under: 50% halted", MaxAbsZ: z(9),
		Behaviors: []state.FidelityBehavior{{Verdict: state.FidelityUnder}, {Verdict: state.FidelityWithin}}}
	unjudged := &state.Fidelity{Verdict: state.FidelityUnjudged, Summary: "too little exposure to judge"}
	for _, c := range []struct {
		th     *Threshold
		f      *state.Fidelity
		passed bool
		note   string
	}{
		{ts[0], matched, true, "the load matched its spec"},
		{ts[0], under, false, "behavior x under"},
		{ts[0], unjudged, false, "too little exposure"},
		{ts[0], nil, false, "fidelity not judged"},
		{ts[1], matched, true, ""},
		{ts[2], under, false, "behavior x under"},
		{ts[1], unjudged, false, "too little exposure"}, // no z at all
	} {
		res := c.th.EvaluateFidelity(c.f)
		if res.Passed != c.passed || !strings.Contains(res.Note, c.note) {
			t.Errorf("%s on %v: passed %v note %q", c.th.Expr, c.f, res.Passed, res.Note)
		}
	}
	if res := ts[0].EvaluateFidelity(under); res.Observed == nil || *res.Observed != 1 {
		t.Errorf("matched on under: observed %v, want 1 behavior off", res.Observed)
	}
}
