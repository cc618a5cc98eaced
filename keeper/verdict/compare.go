package verdict

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/koipond/koipond/keeper/state"
)

// Comparison defaults and bounds.
const (
	// DefaultTolerance is the relative change of a latency, rate or count
	// below which a statistic counts as the same (10%).
	DefaultTolerance = 0.10
	// DefaultErrorTolerancePP is the change of an error rate, in
	// percentage points, below which it counts as the same (0.5 pp).
	DefaultErrorTolerancePP = 0.5
	// DefaultMinLatencyDeltaMS is the smallest latency change flagged
	// (1 ms): below it, sub-millisecond loopback latencies differ by
	// scheduling noise alone.
	DefaultMinLatencyDeltaMS = 1.0
	// SketchAccuracy is DDSketch's relative accuracy: every reported
	// quantile is within 1% of the true sample at its rank, so a latency
	// change smaller than the two values' combined error is never flagged.
	SketchAccuracy = 0.01
	// NoiseSigmas is how many standard deviations of counting noise a
	// count, rate or error rate must move to be flagged: a Poisson count's
	// (√n) for counts and rates, a binomial share's (√(p(1−p)/n)) for
	// error rates — so 4 calls against 8 is noise, 1,000 against 800 is
	// not.
	NoiseSigmas = 3
	// spreadFloorMS is the smallest launch start-spread change flagged:
	// below it, timer and scheduling noise dominate.
	spreadFloorMS = 5
	// maxTolerance bounds the relative tolerance (1000%).
	maxTolerance = 10
)

// Verdicts of a compared statistic, key, threshold or launch.
const (
	VerdictRegressed = "regressed"
	VerdictImproved  = "improved"
	VerdictSame      = "same"
	VerdictNew       = "new"  // only in the compared run
	VerdictGone      = "gone" // only in the baseline
)

// Comparison is a run's report against a baseline run's: per metric key
// and statistic, both values, the absolute and relative deltas and a
// verdict; threshold verdicts side by side; launch spreads side by side.
//
// Tolerances: latencies (p50, p90, p95, p99, max), rates and counts are
// compared relatively — a change is flagged when |delta| exceeds
// Tolerance × baseline, and, for latencies, also the sketches' error
// (SketchAccuracy × (baseline + value)) and MinLatencyDeltaMS, and for
// counts and rates also NoiseSigmas standard deviations of Poisson
// counting noise. Error rates are compared in absolute percentage points:
// flagged when |delta| exceeds ErrorTolerancePP and NoiseSigmas binomial
// standard deviations. Higher latencies and error rates are regressions;
// lower rates and counts are regressions (less throughput), except for
// keys that count bad things (ws:disconnect, ws:close:*) where higher is.
type Comparison struct {
	Baseline         string  `json:"baseline"`
	BaselineName     string  `json:"baseline_name"`
	Tolerance        float64 `json:"tolerance"`
	ErrorTolerancePP float64 `json:"error_tolerance_pp"`
	// MinLatencyDeltaMS is the smallest latency change flagged.
	MinLatencyDeltaMS float64 `json:"min_latency_delta_ms"`
	SketchAccuracy    float64 `json:"sketch_accuracy"`
	// Regressed and Improved count the keys with that verdict.
	Regressed  int                   `json:"regressed"`
	Improved   int                   `json:"improved"`
	Keys       []KeyComparison       `json:"keys"`
	Thresholds []ThresholdComparison `json:"thresholds"`
	Launches   []LaunchComparison    `json:"launches"`
}

// KeyComparison is one metric key in either run. Verdict is the key's
// worst: regressed when any statistic regressed, else improved when any
// improved, else same (new and gone for keys in one run only).
type KeyComparison struct {
	Key     string           `json:"key"`
	Verdict string           `json:"verdict"`
	Stats   []StatComparison `json:"stats"`
}

// StatComparison is one statistic of a key: count, rate_per_sec,
// error_rate (a fraction) or p50_ms … max_ms. Baseline or Value is absent
// when that run has no such value (no latency samples, or no such key);
// Relative is absent when the baseline is 0 or absent.
type StatComparison struct {
	Stat     string   `json:"stat"`
	Baseline *float64 `json:"baseline,omitempty"`
	Value    *float64 `json:"value,omitempty"`
	Delta    *float64 `json:"delta,omitempty"`
	Relative *float64 `json:"relative,omitempty"`
	Verdict  string   `json:"verdict"`
}

// ThresholdComparison is one threshold (key and expression) in either
// run: passing in the baseline and failing now is a regression.
type ThresholdComparison struct {
	Key              string   `json:"key"`
	Expr             string   `json:"expr"`
	BaselinePassed   *bool    `json:"baseline_passed,omitempty"`
	Passed           *bool    `json:"passed,omitempty"`
	BaselineObserved *float64 `json:"baseline_observed,omitempty"`
	Observed         *float64 `json:"observed,omitempty"`
	Unit             string   `json:"unit"`
	Verdict          string   `json:"verdict"`
}

// LaunchComparison pairs the n-th launch of a formation (by name) in
// both runs: start spread and first-koi delay in ms, koi started of
// planned. Verdict judges the spread (relative tolerance, at least 5 ms).
type LaunchComparison struct {
	Name            string   `json:"name"`
	Index           int      `json:"index"`
	BaselineSpread  *float64 `json:"baseline_spread_ms,omitempty"`
	Spread          *float64 `json:"spread_ms,omitempty"`
	BaselineDelay   *float64 `json:"baseline_first_delay_ms,omitempty"`
	Delay           *float64 `json:"first_delay_ms,omitempty"`
	BaselineStarted string   `json:"baseline_started,omitempty"`
	Started         string   `json:"started,omitempty"`
	Verdict         string   `json:"verdict"`
}

// ParseTolerance parses a relative tolerance: a percentage ("10%") or a
// fraction ("0.1"), from 0 to 1000%.
func ParseTolerance(s string) (float64, error) {
	v := strings.TrimSpace(s)
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "%")), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a percentage (10%%) or a fraction (0.1)", s)
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > maxTolerance {
		return 0, fmt.Errorf("%q is outside 0..%d%%", s, maxTolerance*100)
	}
	return f, nil
}

// ParseErrorTolerance parses an error-rate tolerance in percentage
// points: "0.5pp", "0.5%" or "0.5" all mean half a point; 0..100.
func ParseErrorTolerance(s string) (float64, error) {
	v := strings.TrimSpace(s)
	v = strings.TrimSuffix(strings.TrimSuffix(v, "pp"), "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not percentage points, e.g. 0.5pp", s)
	}
	if f < 0 || f > 100 {
		return 0, fmt.Errorf("%q is outside 0..100 percentage points", s)
	}
	return f, nil
}

// badIsHigh reports whether a higher count of the key is worse: keys that
// count drops and closes.
func badIsHigh(key string) bool {
	return key == "ws:disconnect" || strings.HasPrefix(key, "ws:close:")
}

// CompareOptions are a comparison's tolerances (see Comparison).
type CompareOptions struct {
	// Tolerance is relative, for latencies, rates and counts.
	Tolerance float64
	// ErrorTolerancePP is in percentage points, for error rates.
	ErrorTolerancePP float64
	// MinLatencyDeltaMS is the smallest latency change flagged.
	MinLatencyDeltaMS float64
}

// DefaultCompareOptions returns 10%, 0.5 pp and 1 ms.
func DefaultCompareOptions() CompareOptions {
	return CompareOptions{Tolerance: DefaultTolerance, ErrorTolerancePP: DefaultErrorTolerancePP, MinLatencyDeltaMS: DefaultMinLatencyDeltaMS}
}

// CompareReports compares rep against base.
func CompareReports(rep, base *state.Report, o CompareOptions) *Comparison {
	tol, errPP := o.Tolerance, o.ErrorTolerancePP
	c := &Comparison{Baseline: base.Run, BaselineName: base.Name, Tolerance: tol, ErrorTolerancePP: errPP,
		MinLatencyDeltaMS: o.MinLatencyDeltaMS, SketchAccuracy: SketchAccuracy, Keys: []KeyComparison{}, Thresholds: []ThresholdComparison{}, Launches: []LaunchComparison{}}
	cur, old := map[string]*state.ReportKey{}, map[string]*state.ReportKey{}
	var names []string
	for i := range rep.Keys {
		cur[rep.Keys[i].Key] = &rep.Keys[i]
		names = append(names, rep.Keys[i].Key)
	}
	for i := range base.Keys {
		old[base.Keys[i].Key] = &base.Keys[i]
		if cur[base.Keys[i].Key] == nil {
			names = append(names, base.Keys[i].Key)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		kc := compareKey(name, old[name], cur[name], base.DurationSecs, rep.DurationSecs, o)
		switch kc.Verdict {
		case VerdictRegressed:
			c.Regressed++
		case VerdictImproved:
			c.Improved++
		}
		c.Keys = append(c.Keys, kc)
	}
	c.Thresholds = compareThresholds(base.Thresholds, rep.Thresholds)
	c.Launches = compareLaunches(base.Launches, rep.Launches, tol)
	return c
}

// compareKey compares one key (either side may be nil) of runs lasting
// oldSecs and curSecs.
func compareKey(name string, old, cur *state.ReportKey, oldSecs, curSecs float64, o CompareOptions) KeyComparison {
	tol, errPP := o.Tolerance, o.ErrorTolerancePP
	kc := KeyComparison{Key: name, Stats: []StatComparison{}}
	type stat struct {
		name string
		get  func(*state.ReportKey) *float64
		kind int // 0 latency, 1 throughput, 2 error rate
	}
	num := func(f func(*state.ReportKey) float64) func(*state.ReportKey) *float64 {
		return func(k *state.ReportKey) *float64 { v := f(k); return &v }
	}
	stats := []stat{
		{"count", num(func(k *state.ReportKey) float64 { return float64(k.Count) }), 1},
		{"rate_per_sec", num(func(k *state.ReportKey) float64 { return k.Rate }), 1},
		{"error_rate", num(func(k *state.ReportKey) float64 { return k.ErrorRate }), 2},
		{"p50_ms", func(k *state.ReportKey) *float64 { return k.P50 }, 0},
		{"p90_ms", func(k *state.ReportKey) *float64 { return k.P90 }, 0},
		{"p95_ms", func(k *state.ReportKey) *float64 { return k.P95 }, 0},
		{"p99_ms", func(k *state.ReportKey) *float64 { return k.P99 }, 0},
		{"max_ms", func(k *state.ReportKey) *float64 { return k.Max }, 0},
	}
	regressed, improved := false, false
	for _, s := range stats {
		sc := StatComparison{Stat: s.name}
		if old != nil {
			sc.Baseline = s.get(old)
		}
		if cur != nil {
			sc.Value = s.get(cur)
		}
		switch {
		case sc.Baseline == nil && sc.Value == nil:
			continue
		case sc.Baseline == nil:
			sc.Verdict = VerdictNew
		case sc.Value == nil:
			sc.Verdict = VerdictGone
		default:
			b, v := *sc.Baseline, *sc.Value
			d := v - b
			sc.Delta = &d
			if b != 0 {
				r := d / b
				sc.Relative = &r
			}
			var limit float64
			worse := d > 0
			switch s.kind {
			case 0:
				limit = max(tol*b, SketchAccuracy*(b+v), o.MinLatencyDeltaMS)
			case 1:
				n0, n1 := float64(old.Count), float64(cur.Count)
				noise := math.Sqrt(n0 + n1) // difference of two Poisson counts
				if s.name == "rate_per_sec" {
					t0, t1 := max(oldSecs, 1e-9), max(curSecs, 1e-9)
					noise = math.Sqrt(n0/(t0*t0) + n1/(t1*t1))
				}
				limit = max(tol*b, NoiseSigmas*noise)
				worse = (d < 0) != badIsHigh(name)
			case 2:
				n0, n1 := max(float64(old.Count), 1), max(float64(cur.Count), 1)
				noise := math.Sqrt(b*(1-b)/n0 + v*(1-v)/n1)
				limit = max(errPP/100, NoiseSigmas*noise)
			}
			sc.Verdict = VerdictSame
			if math.Abs(d) > limit && d != 0 {
				if worse {
					sc.Verdict = VerdictRegressed
					regressed = true
				} else {
					sc.Verdict = VerdictImproved
					improved = true
				}
			}
		}
		kc.Stats = append(kc.Stats, sc)
	}
	switch {
	case old == nil:
		kc.Verdict = VerdictNew
	case cur == nil:
		kc.Verdict = VerdictGone
	case regressed:
		kc.Verdict = VerdictRegressed
	case improved:
		kc.Verdict = VerdictImproved
	default:
		kc.Verdict = VerdictSame
	}
	return kc
}

// compareThresholds pairs thresholds by key and expression.
func compareThresholds(old, cur []state.ThresholdResult) []ThresholdComparison {
	type id struct{ key, expr string }
	out := []ThresholdComparison{}
	at := map[id]int{}
	add := func(t state.ThresholdResult) *ThresholdComparison {
		i, ok := at[id{t.Key, t.Expr}]
		if !ok {
			i = len(out)
			at[id{t.Key, t.Expr}] = i
			out = append(out, ThresholdComparison{Key: t.Key, Expr: t.Expr, Unit: t.Unit})
		}
		return &out[i]
	}
	for _, t := range old {
		p := t.Passed
		tc := add(t)
		tc.BaselinePassed, tc.BaselineObserved = &p, t.Observed
	}
	for _, t := range cur {
		p := t.Passed
		tc := add(t)
		tc.Passed, tc.Observed = &p, t.Observed
	}
	for i := range out {
		tc := &out[i]
		switch {
		case tc.BaselinePassed == nil:
			tc.Verdict = VerdictNew
		case tc.Passed == nil:
			tc.Verdict = VerdictGone
		case *tc.BaselinePassed && !*tc.Passed:
			tc.Verdict = VerdictRegressed
		case !*tc.BaselinePassed && *tc.Passed:
			tc.Verdict = VerdictImproved
		default:
			tc.Verdict = VerdictSame
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Key < out[j].Key || out[i].Key == out[j].Key && out[i].Expr < out[j].Expr
	})
	return out
}

// compareLaunches pairs the n-th launch of each formation name.
func compareLaunches(old, cur []state.ReportLaunch, tol float64) []LaunchComparison {
	type id struct {
		name string
		n    int
	}
	out := []LaunchComparison{}
	at := map[id]int{}
	seen := map[string]int{}
	add := func(l state.ReportLaunch, seen map[string]int) *LaunchComparison {
		k := id{l.Name, seen[l.Name]}
		seen[l.Name]++
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, LaunchComparison{Name: l.Name, Index: k.n})
		}
		return &out[i]
	}
	for _, l := range old {
		lc := add(l, seen)
		s, d := l.SpreadMS, l.FirstDelayMS
		lc.BaselineSpread, lc.BaselineDelay, lc.BaselineStarted = &s, &d, fmt.Sprintf("%d/%d", l.Started, l.Planned)
	}
	seen = map[string]int{}
	for _, l := range cur {
		lc := add(l, seen)
		s, d := l.SpreadMS, l.FirstDelayMS
		lc.Spread, lc.Delay, lc.Started = &s, &d, fmt.Sprintf("%d/%d", l.Started, l.Planned)
	}
	for i := range out {
		lc := &out[i]
		switch {
		case lc.BaselineSpread == nil:
			lc.Verdict = VerdictNew
		case lc.Spread == nil:
			lc.Verdict = VerdictGone
		default:
			d := *lc.Spread - *lc.BaselineSpread
			lc.Verdict = VerdictSame
			if math.Abs(d) > max(tol**lc.BaselineSpread, spreadFloorMS) {
				lc.Verdict = VerdictImproved
				if d > 0 {
					lc.Verdict = VerdictRegressed
				}
			}
		}
	}
	return out
}
