package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/keeper/api"
)

// compareOpts are the flags of `koipond report --baseline`.
type compareOpts struct {
	baseline, tolerance, errTolerance string
	minDelta                          time.Duration
	noColor, failOnRegression         bool
}

// ANSI colours of the comparison table.
const (
	ansiRed   = "\x1b[31m"
	ansiGreen = "\x1b[32m"
	ansiReset = "\x1b[0m"
)

// runCompare prints a run's comparison with a baseline run.
func runCompare(ctx context.Context, cf *clientFlags, run, format string, co compareOpts, stdout, stderr io.Writer) error {
	if _, err := api.ParseTolerance(co.tolerance); err != nil {
		fmt.Fprintf(stderr, "koipond report: --tolerance: %v\n", err)
		return errUsage
	}
	if _, err := api.ParseErrorTolerance(co.errTolerance); err != nil {
		fmt.Fprintf(stderr, "koipond report: --error-tolerance: %v\n", err)
		return errUsage
	}
	if co.minDelta < 0 {
		fmt.Fprintf(stderr, "koipond report: --min-delta %v is negative\n", co.minDelta)
		return errUsage
	}
	q := url.Values{"baseline": {co.baseline}, "tolerance": {co.tolerance}, "error_tolerance": {co.errTolerance}, "min_delta": {co.minDelta.String()}}
	path := "/api/v1/runs/" + url.PathEscape(run) + "/report?"
	var raw json.RawMessage
	switch format {
	case "csv":
		q.Set("format", "csv")
		if err := cf.call(ctx, "GET", path+q.Encode(), nil, &raw); err != nil {
			return err
		}
		if _, err := stdout.Write(raw); err != nil {
			return err
		}
	case "json", "text":
		if err := cf.call(ctx, "GET", path+q.Encode(), nil, &raw); err != nil {
			return err
		}
	default:
		fmt.Fprintf(stderr, "koipond report: --format %q is not json, csv or text\n", format)
		return errUsage
	}
	var rep api.ComparedReport
	if format != "csv" {
		if err := json.Unmarshal(raw, &rep); err != nil || rep.Comparison == nil {
			return fmt.Errorf("decoding the comparison: %v", err)
		}
	}
	switch format {
	case "json":
		if err := writeJSON(stdout, raw); err != nil {
			return err
		}
	case "text":
		printComparison(stdout, &rep, useColor(stdout, co.noColor))
	case "csv":
		// Judge regressions from the JSON answer: one more request.
		if co.failOnRegression {
			q.Del("format")
			if err := cf.call(ctx, "GET", path+q.Encode(), nil, &rep); err != nil {
				return err
			}
		}
	}
	if co.failOnRegression && rep.Comparison != nil && regressions(rep.Comparison) > 0 {
		return exitError{code: 1}
	}
	return nil
}

// useColor reports whether w is a terminal that should get colour: not
// with --no-color or NO_COLOR set.
func useColor(w io.Writer, noColor bool) bool {
	if noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// regressions counts regressed keys, thresholds and launches.
func regressions(c *api.Comparison) int {
	n := c.Regressed
	for _, t := range c.Thresholds {
		if t.Verdict == api.VerdictRegressed {
			n++
		}
	}
	for _, l := range c.Launches {
		if l.Verdict == api.VerdictRegressed {
			n++
		}
	}
	return n
}

// verdictMark is the marker column: ! regressed, + improved, * new,
// - gone, blank the same.
func verdictMark(v string) string {
	switch v {
	case api.VerdictRegressed:
		return "!"
	case api.VerdictImproved:
		return "+"
	case api.VerdictNew:
		return "*"
	case api.VerdictGone:
		return "-"
	}
	return " "
}

// statValue formats one statistic's value in its unit.
func statValue(stat string, p *float64) string {
	if p == nil {
		return "-"
	}
	switch {
	case stat == "count":
		return fmt.Sprintf("%.0f", *p)
	case stat == "error_rate":
		return fmt.Sprintf("%.2f%%", 100**p)
	case stat == "rate_per_sec":
		return fmt.Sprintf("%.2f/s", *p)
	}
	return fmt.Sprintf("%.1f ms", *p)
}

// statDelta formats a delta: percentage points for error rates.
func statDelta(stat string, d, rel *float64) (string, string) {
	if d == nil {
		return "", ""
	}
	delta := ""
	switch {
	case stat == "error_rate":
		delta = fmt.Sprintf("%+.2f pp", 100**d)
	case stat == "count":
		delta = fmt.Sprintf("%+.0f", *d)
	case stat == "rate_per_sec":
		delta = fmt.Sprintf("%+.2f/s", *d)
	default:
		delta = fmt.Sprintf("%+.1f ms", *d)
	}
	if rel == nil {
		return delta, ""
	}
	return delta, fmt.Sprintf("%+.1f%%", 100**rel)
}

// printComparison writes a comparison for people: one row per key and
// statistic, marked and (on a terminal) coloured when it changed beyond
// the tolerance, then thresholds and launches side by side.
func printComparison(w io.Writer, rep *api.ComparedReport, color bool) {
	c := rep.Comparison
	fmt.Fprintf(w, "run %s %q against baseline %s %q: tolerance %.4g%% (latencies also beyond the sketches' %.0f%% error and %.4g ms), error rates %.4g pp\n",
		rep.Run, rep.Name, c.Baseline, c.BaselineName, 100*c.Tolerance, 100*c.SketchAccuracy, c.MinLatencyDeltaMS, c.ErrorTolerancePP)
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, " \tKEY\tSTAT\tBASELINE\tRUN\tDELTA\tCHANGE\tVERDICT")
	for _, k := range c.Keys {
		for _, s := range k.Stats {
			d, rel := statDelta(s.Stat, s.Delta, s.Relative)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", verdictMark(s.Verdict), k.Key, strings.TrimSuffix(s.Stat, "_ms"),
				statValue(s.Stat, s.Baseline), statValue(s.Stat, s.Value), d, rel, s.Verdict)
		}
	}
	for _, t := range c.Thresholds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\t\t%s\n", verdictMark(t.Verdict), t.Key, "threshold "+t.Expr, passFail(t.BaselinePassed), passFail(t.Passed), t.Verdict)
	}
	for _, l := range c.Launches {
		fmt.Fprintf(tw, "%s\tlaunch %s #%d\tstart spread\t%s\t%s\t\t\t%s\n", verdictMark(l.Verdict), l.Name, l.Index+1,
			statValue("spread_ms", l.BaselineSpread), statValue("spread_ms", l.Spread), l.Verdict)
	}
	_ = tw.Flush()
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case color && strings.HasPrefix(line, "!"):
			line = ansiRed + line + ansiReset
		case color && strings.HasPrefix(line, "+"):
			line = ansiGreen + line + ansiReset
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "%d of %s regressed, %d improved", c.Regressed, plural(len(c.Keys), "key", "keys"), c.Improved)
	if n := regressions(c) - c.Regressed; n > 0 {
		fmt.Fprintf(w, "; %d thresholds or launches regressed", n)
	}
	fmt.Fprintln(w)
}

// passFail formats an optional threshold verdict.
func passFail(p *bool) string {
	switch {
	case p == nil:
		return "-"
	case *p:
		return "pass"
	}
	return "FAIL"
}
