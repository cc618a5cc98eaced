package verdict

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
)

// Limits on thresholds per run.
const (
	maxThresholdKeys  = 100
	maxThresholdExprs = 20
)

// Threshold is one parsed condition on a metric key, e.g. "p95 < 300ms"
// on "api:chat.postMessage".
type Threshold struct {
	Key  string
	Expr string
	// Stat is p<N> (a latency quantile, N in (0, 100]), max, count,
	// errors, error_rate, success_rate or rate.
	Stat string
	// Quantile is N/100 for p<N>, 1 for max.
	Quantile float64
	Op       string // <, <=, > or >=
	// Limit is in the stat's unit: ms for latencies, a fraction for
	// error_rate and success_rate, per second for rate, a number for
	// count and errors.
	Limit float64
}

// Unit names the unit of the threshold's stat.
func (t *Threshold) Unit() string {
	switch {
	case t.Quantile > 0:
		return "ms"
	case t.Stat == "error_rate" || t.Stat == "success_rate":
		return "fraction"
	case t.Stat == "rate":
		return "per_sec"
	}
	return "count"
}

// errThreshold is wrapped by every threshold syntax error.
var errThreshold = errors.New("bad threshold")

// ParseThreshold parses "STAT OP VALUE" for a metric key: STAT is p50,
// p90, p95, p99 (any p<N>, 0 < N ≤ 100), max, count, errors, error_rate,
// success_rate or rate; OP is <, <=, > or >=; VALUE is a duration with
// its unit for latencies ("300ms", "2s"), a percentage or a fraction for
// the rates of errors and successes ("1%", "0.01"), and a number for the
// others ("rate > 50", "rate > 50/s").
func ParseThreshold(key, expr string) (*Threshold, error) {
	fields := conditionFields(expr)
	if len(fields) != 3 {
		return nil, fmt.Errorf("%w %q: want STAT OP VALUE, e.g. \"p95 < 300ms\" or \"error_rate < 1%%\"", errThreshold, expr)
	}
	t := &Threshold{Key: key, Expr: strings.Join(fields, " "), Stat: strings.ToLower(fields[0]), Op: fields[1]}
	switch t.Op {
	case "<", "<=", ">", ">=":
	default:
		return nil, fmt.Errorf("%w %q: operator %q is not <, <=, > or >=", errThreshold, expr, t.Op)
	}
	val := fields[2]
	switch {
	case t.Stat == "max":
		t.Quantile = 1
	case strings.HasPrefix(t.Stat, "p"):
		n, err := strconv.ParseFloat(t.Stat[1:], 64)
		if err != nil || !(n > 0 && n <= 100) {
			return nil, fmt.Errorf("%w %q: %q is not a percentile p<N> with 0 < N ≤ 100", errThreshold, expr, t.Stat)
		}
		t.Quantile = n / 100
	case t.Stat == "count", t.Stat == "errors", t.Stat == "error_rate", t.Stat == "success_rate", t.Stat == "rate":
	default:
		return nil, fmt.Errorf("%w %q: unknown statistic %q (p50, p90, p95, p99, max, count, errors, error_rate, success_rate, rate)", errThreshold, expr, t.Stat)
	}
	switch t.Unit() {
	case "ms":
		d, err := time.ParseDuration(val)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %q is not a duration with a unit, e.g. 300ms or 2s", errThreshold, expr, val)
		}
		if d < 0 {
			return nil, fmt.Errorf("%w %q: negative duration %s", errThreshold, expr, val)
		}
		t.Limit = float64(d) / float64(time.Millisecond)
	case "fraction":
		pct := strings.HasSuffix(val, "%")
		f, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
		if err != nil || math.IsNaN(f) {
			return nil, fmt.Errorf("%w %q: %q is not a percentage (1%%) or a fraction (0.01)", errThreshold, expr, val)
		}
		if pct {
			f /= 100
		}
		if f < 0 || f > 1 {
			return nil, fmt.Errorf("%w %q: %s is outside 0..100%%", errThreshold, expr, val)
		}
		t.Limit = f
	default:
		f, err := strconv.ParseFloat(strings.TrimSuffix(val, "/s"), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return nil, fmt.Errorf("%w %q: %q is not a non-negative number", errThreshold, expr, val)
		}
		t.Limit = f
	}
	return t, nil
}

// conditionFields splits "STAT OP VALUE" into its fields, around the
// operator when written without spaces ("p95<300ms").
func conditionFields(expr string) []string {
	fields := strings.Fields(expr)
	if len(fields) == 1 {
		if i := strings.IndexAny(expr, "<>"); i > 0 {
			j := i + 1
			if j < len(expr) && expr[j] == '=' {
				j++
			}
			fields = []string{expr[:i], expr[i:j], expr[j:]}
		}
	}
	return fields
}

// ParseThresholds parses a run spec's thresholds, failing on the first bad
// one with its field (thresholds["KEY"][i]). Keys are checked for their
// kind only; see the keeper's thresholdWarnings.
func ParseThresholds(m map[string][]string) ([]*Threshold, *FieldError) {
	if len(m) > maxThresholdKeys {
		return nil, invalid("thresholds", "%d metric keys; at most %d", len(m), maxThresholdKeys)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []*Threshold
	for _, key := range keys {
		field := fmt.Sprintf("thresholds[%q]", key)
		if err := checkName(field, key); err != nil {
			return nil, err
		}
		exprs := m[key]
		if len(exprs) == 0 {
			return nil, invalid(field, "give at least one condition, e.g. \"p95 < 300ms\"")
		}
		if len(exprs) > maxThresholdExprs {
			return nil, invalid(field, "%d conditions; at most %d", len(exprs), maxThresholdExprs)
		}
		for i, e := range exprs {
			parse := ParseThreshold
			if key == FidelityKey {
				parse = ParseFidelityThreshold
			}
			t, err := parse(key, e)
			if err != nil {
				return nil, &FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Message: err.Error(), Err: err}
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// metricKinds are the kinds of metric key koi report (the part before
// the first colon, or the whole key without one): the connection
// lifecycle's "on_connect" and "on_connect:<n>", "on_disconnect", and a
// connect request's "connect:open" among them.
var metricKinds = map[string]bool{"api": true, "http": true, "ws": true, "event": true, "on_event": true,
	"behavior": true, "boot": true, "formation": true, "on_connect": true, "on_disconnect": true, "connect": true}

// Evaluate checks a threshold against a report key and its merged
// series (nil: no data).
func (t *Threshold) Evaluate(k *state.ReportKey, ss *metrics.SeriesSnapshot) state.ThresholdResult {
	res := state.ThresholdResult{Key: t.Key, Expr: t.Expr, Unit: t.Unit()}
	var v float64
	switch {
	case k == nil || k.Count == 0:
		res.Note = "no data for this key"
		return res
	case t.Quantile > 0:
		d, ok := time.Duration(0), false
		if ss != nil {
			d, ok = ss.Quantile(t.Quantile)
		}
		if !ok {
			res.Note = "no latency samples for this key"
			return res
		}
		v = float64(d) / float64(time.Millisecond)
	case t.Stat == "count":
		v = float64(k.Count)
	case t.Stat == "errors":
		v = float64(k.Failures)
	case t.Stat == "error_rate":
		v = k.ErrorRate
	case t.Stat == "success_rate":
		v = float64(k.Outcomes["ok"]) / float64(k.Count)
	case t.Stat == "rate":
		v = k.Rate
	}
	res.Observed = &v
	switch t.Op {
	case "<":
		res.Passed = v < t.Limit
	case "<=":
		res.Passed = v <= t.Limit
	case ">":
		res.Passed = v > t.Limit
	case ">=":
		res.Passed = v >= t.Limit
	}
	return res
}

// WindowEnd is where a live window over whole seconds [from, to) ends for
// this statistic: ratios and quantiles also take the second still being
// reported (its share of calls is as good as any, and it is the newest
// news), while rates and totals need whole seconds to divide by.
func (t *Threshold) WindowEnd(to time.Time) time.Time {
	if t.Quantile > 0 || t.Stat == "error_rate" || t.Stat == "success_rate" {
		return to.Add(time.Second)
	}
	return to
}

// Observe computes the threshold's statistic over a series covering secs
// seconds; false without data (or without latency samples for a
// quantile).
func (t *Threshold) Observe(ss *metrics.SeriesSnapshot, secs float64) (float64, bool) {
	if ss == nil || ss.Total() == 0 {
		return 0, false
	}
	n := float64(ss.Total())
	switch {
	case t.Quantile > 0:
		d, ok := ss.Quantile(t.Quantile)
		return ms(d), ok
	case t.Stat == "count":
		return n, true
	case t.Stat == "errors":
		return float64(ss.Failures()), true
	case t.Stat == "error_rate":
		return float64(ss.Failures()) / n, true
	case t.Stat == "success_rate":
		return float64(ss.Counts[metrics.OK]) / n, true
	case t.Stat == "rate":
		return n / max(secs, 1e-9), true
	}
	return 0, false
}

// Holds reports whether v meets the threshold's condition.
func (t *Threshold) Holds(v float64) bool {
	switch t.Op {
	case "<":
		return v < t.Limit
	case "<=":
		return v <= t.Limit
	case ">":
		return v > t.Limit
	case ">=":
		return v >= t.Limit
	}
	return false
}

// FormatValue formats a value in a threshold's unit for people.
func FormatValue(v float64, unit string) string {
	switch unit {
	case "ms":
		if v >= 1000 {
			return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
		}
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	case "fraction":
		return strconv.FormatFloat(100*v, 'f', 1, 64) + "%"
	case "per_sec":
		return strconv.FormatFloat(v, 'f', 2, 64) + "/s"
	case "z":
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// KnownKind reports whether koi report metric keys of this kind (the part
// of a key before its first colon).
func KnownKind(kind string) bool { return metricKinds[kind] }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// FidelityKey is the threshold key that judges a run's fidelity instead of
// a metric key: --threshold 'fidelity=matched' fails the run unless every
// behavior was within 4 SE of its spec and every tested launch uniform;
// 'fidelity=max_z <= 3' bounds the largest |z| over the behaviors
// instead. A run whose fidelity could not be judged fails either.
const FidelityKey = "fidelity"

// IsFidelity reports whether the threshold judges the run's fidelity.
func (t *Threshold) IsFidelity() bool { return t.Key == FidelityKey }

// ParseFidelityThreshold parses a fidelity condition: "matched", or
// "max_z OP VALUE" with OP < or <= and VALUE a positive number.
func ParseFidelityThreshold(key, expr string) (*Threshold, error) {
	if strings.EqualFold(strings.TrimSpace(expr), "matched") {
		return &Threshold{Key: key, Expr: "matched", Stat: "matched"}, nil
	}
	fields := conditionFields(expr)
	if len(fields) != 3 || strings.ToLower(fields[0]) != "max_z" {
		return nil, fmt.Errorf("%w %q: a fidelity condition is \"matched\" or \"max_z <= N\" (N standard errors)", errThreshold, expr)
	}
	t := &Threshold{Key: key, Expr: strings.Join([]string{"max_z", fields[1], fields[2]}, " "), Stat: "max_z", Op: fields[1]}
	if t.Op != "<" && t.Op != "<=" {
		return nil, fmt.Errorf("%w %q: max_z takes < or <=, not %q", errThreshold, expr, t.Op)
	}
	f, err := strconv.ParseFloat(fields[2], 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w %q: %q is not a positive number of standard errors", errThreshold, expr, fields[2])
	}
	t.Limit = f
	return t, nil
}

// EvaluateFidelity checks a fidelity threshold against a run's verdict
// (nil: not judged, a failure). "matched" observes the number of
// behaviors and launches that did not match; max_z the largest |z|.
func (t *Threshold) EvaluateFidelity(f *state.Fidelity) state.ThresholdResult {
	res := state.ThresholdResult{Key: t.Key, Expr: t.Expr, Unit: "count"}
	if f == nil {
		res.Note = "fidelity not judged"
		return res
	}
	res.Note = f.Summary
	if t.Stat == "max_z" {
		res.Unit = "z"
		if f.MaxAbsZ == nil {
			return res
		}
		v := *f.MaxAbsZ
		res.Observed = &v
		res.Passed = t.Holds(v)
		if res.Passed {
			res.Note = ""
		}
		return res
	}
	n := 0
	for _, b := range f.Behaviors {
		if b.Verdict == state.FidelityUnder || b.Verdict == state.FidelityOver {
			n++
		}
	}
	for _, l := range f.Launches {
		if l.Uniformity == state.FidelityClumped {
			n++
		}
	}
	v := float64(n)
	res.Observed = &v
	res.Passed = f.Verdict == state.FidelityMatched
	return res
}
