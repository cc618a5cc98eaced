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
// frequent first (their samples are in the JSON report), then the
// fidelity columns: on a behavior's row its expected runs, their standard
// error, z and verdict (with the cause); on a launch's sequence row its
// start uniformity. A behavior that never ran gets a row of its own, and
// a last row, key "fidelity", holds the run's verdict and summary.
func WriteReportCSV(w io.Writer, rep *state.Report) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"run", "key", "count", "failures", "error_rate", "rate_per_sec", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "outcomes", "reasons",
		"expected", "se", "z", "fidelity"})
	fid := fidelityColumns(rep)
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
		_ = cw.Write(append([]string{rep.Run, k.Key, strconv.FormatUint(k.Count, 10), strconv.FormatUint(k.Failures, 10),
			strconv.FormatFloat(k.ErrorRate, 'f', 6, 64), strconv.FormatFloat(k.Rate, 'f', 3, 64),
			f(k.P50), f(k.P90), f(k.P95), f(k.P99), f(k.Max), strings.Join(names, ";"), reasonPairs(k.Reasons)}, fid.cols(k.Key)...))
	}
	for _, key := range fid.unseen(rep) {
		_ = cw.Write(append([]string{rep.Run, key, "0", "0", "", "", "", "", "", "", "", "", ""}, fid.cols(key)...))
	}
	if rep.Fidelity != nil {
		z := ""
		if rep.Fidelity.MaxAbsZ != nil {
			z = strconv.FormatFloat(*rep.Fidelity.MaxAbsZ, 'f', 2, 64)
		}
		_ = cw.Write([]string{rep.Run, "fidelity", "", "", "", "", "", "", "", "", "", "", "", "", "", z,
			rep.Fidelity.Verdict + ": " + rep.Fidelity.Summary})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing the report CSV: %w", err)
	}
	return nil
}

// fidelityCols maps metric keys to their report's fidelity columns
// (expected, se, z, fidelity).
type fidelityCols map[string][]string

func fidelityColumns(rep *state.Report) fidelityCols {
	m := fidelityCols{}
	if rep.Fidelity == nil {
		return m
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	for _, b := range rep.Fidelity.Behaviors {
		z, verdict := "", b.Verdict
		if b.Z != nil {
			z = num(*b.Z)
		}
		if b.Cause != "" {
			verdict += ": " + b.Cause
		}
		m[b.Key] = []string{num(b.Expected), num(b.SE), z, verdict}
	}
	for _, l := range rep.Fidelity.Launches {
		for _, rl := range rep.Launches {
			if rl.ID == l.ID && rl.Key != "" {
				v := l.Uniformity
				if l.P != nil {
					v += fmt.Sprintf(" (KS D %.3f, p %.3g, %d starts)", *l.KS, *l.P, l.Starts)
				}
				m[rl.Key] = []string{"", "", "", v}
			}
		}
	}
	return m
}

// cols returns a key's fidelity columns, empty ones for a key without.
func (m fidelityCols) cols(key string) []string {
	if c, ok := m[key]; ok {
		return c
	}
	return []string{"", "", "", ""}
}

// unseen lists the judged behaviors' keys the report has no row of (they
// never ran), in the verdict's order.
func (m fidelityCols) unseen(rep *state.Report) []string {
	if rep.Fidelity == nil {
		return nil
	}
	has := map[string]bool{}
	for _, k := range rep.Keys {
		has[k.Key] = true
	}
	var out []string
	for _, b := range rep.Fidelity.Behaviors {
		if !has[b.Key] {
			out = append(out, b.Key)
			has[b.Key] = true
		}
	}
	return out
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
