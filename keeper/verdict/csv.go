package verdict

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/koipond/koipond/keeper/state"
)

// WriteReportCSV writes one row per metric key: counts, error rate, rate
// and latency quantiles in ms (empty without samples), then outcomes as
// name=count pairs, then the failure reasons as reason=count pairs, most
// frequent first (their samples are in the JSON report).
func WriteReportCSV(w io.Writer, rep *state.Report) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"run", "key", "count", "failures", "error_rate", "rate_per_sec", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "outcomes", "reasons"})
	f := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'f', 3, 64)
	}
	for _, k := range rep.Keys {
		names := make([]string, 0, len(k.Outcomes))
		for o := range k.Outcomes {
			names = append(names, o)
		}
		sort.Strings(names)
		for i, o := range names {
			names[i] = fmt.Sprintf("%s=%d", o, k.Outcomes[o])
		}
		_ = cw.Write([]string{rep.Run, k.Key, strconv.FormatUint(k.Count, 10), strconv.FormatUint(k.Failures, 10),
			strconv.FormatFloat(k.ErrorRate, 'f', 6, 64), strconv.FormatFloat(k.Rate, 'f', 3, 64),
			f(k.P50), f(k.P90), f(k.P95), f(k.P99), f(k.Max), strings.Join(names, ";"), reasonPairs(k.Reasons)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing the report CSV: %w", err)
	}
	return nil
}

// reasonPairs lists reasons as reason=count pairs joined by ";".
func reasonPairs(rs []state.Reason) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Reason + "=" + strconv.FormatUint(r.Count, 10)
	}
	return strings.Join(parts, ";")
}

// WriteComparisonCSV writes one row per key and statistic: both values,
// the deltas and the verdict, then one row per threshold (stat
// "threshold: EXPR", passed as 1 or 0).
func WriteComparisonCSV(w io.Writer, run string, c *Comparison) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"run", "baseline", "key", "stat", "baseline_value", "value", "delta", "relative", "verdict"})
	f := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'f', -1, 64)
	}
	for _, k := range c.Keys {
		for _, s := range k.Stats {
			_ = cw.Write([]string{run, c.Baseline, k.Key, s.Stat, f(s.Baseline), f(s.Value), f(s.Delta), f(s.Relative), s.Verdict})
		}
	}
	b := func(p *bool) string {
		switch {
		case p == nil:
			return ""
		case *p:
			return "1"
		}
		return "0"
	}
	for _, t := range c.Thresholds {
		_ = cw.Write([]string{run, c.Baseline, t.Key, "threshold: " + t.Expr, b(t.BaselinePassed), b(t.Passed), "", "", t.Verdict})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing the comparison CSV: %w", err)
	}
	return nil
}
