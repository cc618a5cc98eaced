package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/keeper/api"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "report", "report [--format json|csv|text] [--baseline OTHER [--tolerance 10%] [--fail-on-regression]] RUN", `
Show a run's report: per metric key counts, errors, rate and latency
quantiles over the run's whole life, websocket connects and drops, launch
outcomes, the fidelity verdict (did the load match its spec: per behavior
the runs expected over the koi-minutes the koi ran against those started
and completed, within 4 standard errors; per launch the uniformity of the
starts) and threshold verdicts. It is final once the run has ended and
its schools' last metrics are in; before that it is provisional. The exit
status is 1 when a threshold failed or a guardrail acted on the run.

With --baseline, compare the run with another: per key and statistic both
values, the deltas and a verdict (regressed, improved, same, new, gone).
Latencies, rates and counts change when they move by more than
--tolerance relative to the baseline (and, for latencies, by more than the
sketches' 1% error and --min-delta); error rates when they move by more than
--error-tolerance percentage points; counts, rates and error rates also by
more than three standard deviations of counting noise. A comparison is
information: the
exit status is 0 unless --fail-on-regression is given and a key or a
threshold regressed (then 1).`, stderr)
	cf := addClientFlags(fs)
	format := fs.String("format", "text", "output `format`: json, csv or text")
	var co compareOpts
	fs.StringVar(&co.baseline, "baseline", "", "compare with the baseline run `OTHER`: every key side by side, with verdicts")
	fs.StringVar(&co.tolerance, "tolerance", "10%", "relative `change` below which latencies, rates and counts are the same")
	fs.StringVar(&co.errTolerance, "error-tolerance", "0.5pp", "error-rate change in percentage `points` below which it is the same")
	fs.DurationVar(&co.minDelta, "min-delta", time.Millisecond, "smallest latency `change` flagged (sub-ms loopback latencies are noise)")
	fs.BoolVar(&co.noColor, "no-color", false, "no colour in the comparison table, even on a terminal")
	fs.BoolVar(&co.failOnRegression, "fail-on-regression", false, "exit 1 when the comparison finds a regression")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cf.json {
		*format = "json"
	}
	if co.baseline != "" {
		return runCompare(ctx, cf, fs.Arg(0), *format, co, stdout, stderr)
	}
	path := "/api/v1/runs/" + url.PathEscape(fs.Arg(0)) + "/report"
	switch *format {
	case "csv":
		var raw json.RawMessage
		if err := cf.call(ctx, "GET", path+"?format=csv", nil, &raw); err != nil {
			return err
		}
		_, err := stdout.Write(raw)
		return err
	case "json", "text":
	default:
		fmt.Fprintf(stderr, "koipond report: --format %q is not json, csv or text\n", *format)
		return errUsage
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	var rep api.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("decoding the report: %w", err)
	}
	if *format == "json" {
		if err := writeJSON(stdout, raw); err != nil {
			return err
		}
	} else {
		printReport(stdout, &rep)
	}
	return verdict(&rep, stderr)
}

// optMS formats an optional latency in ms.
func optMS(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *p)
}

// reportKeyWidth caps the key column of the text report: a long formation
// name would pad every row to its length (the JSON and CSV reports keep
// whole keys).
const reportKeyWidth = 40

// printReport writes a report for people.
func printReport(w io.Writer, rep *api.Report) {
	status := "final"
	if !rep.Final {
		status = "provisional (the run has not settled)"
	}
	fmt.Fprintf(w, "report of run %s %q: %s, %s over %s\n", rep.Run, rep.Name, rep.State, status,
		(time.Duration(rep.DurationSecs * float64(time.Second))).Round(time.Millisecond))
	if rep.EndReason != "" {
		fmt.Fprintf(w, "  ended: %s\n", rep.EndReason)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "KEY\tCOUNT\tRATE/S\tERRORS\tERR%\tP50 MS\tP90 MS\tP95 MS\tP99 MS\tMAX MS\t")
	for _, k := range rep.Keys {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%d\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", fitMiddle(k.Key, reportKeyWidth), k.Count, k.Rate, k.Failures, 100*k.ErrorRate,
			optMS(k.P50), optMS(k.P90), optMS(k.P95), optMS(k.P99), optMS(k.Max))
	}
	_ = tw.Flush()
	for _, k := range rep.Keys {
		if k.Failures == 0 {
			continue
		}
		var parts []string
		for o, c := range k.Outcomes {
			if o != "ok" {
				parts = append(parts, fmt.Sprintf("%s %d", o, c))
			}
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "  %s errors: %s\n", k.Key, strings.Join(parts, ", "))
	}
	printReasons(w, rep.Keys)
	ws := rep.Websocket
	var closes []string
	for code, n := range ws.Closes {
		closes = append(closes, fmt.Sprintf("%s×%d", code, n))
	}
	sort.Strings(closes)
	if len(closes) == 0 {
		closes = []string{"none"}
	}
	fmt.Fprintf(w, "websockets: %d connects (%d failed, p95 %s ms), %d drops, %d reconnects, closes %s\n",
		ws.Connects, ws.ConnectFailures, optMS(ws.ConnectP95), ws.Drops, ws.Reconnects, strings.Join(closes, " "))
	for _, l := range rep.Launches {
		fmt.Fprintf(w, "launch %s %q (%s): %d planned (%d connected), %d started, %d finished, %d failed, %d cancelled; first %.0f ms after the instant, spread %.0f ms\n",
			l.ID, l.Name, l.State, l.Planned, l.Connected, l.Started, l.Finished, l.Failed, l.Cancelled, l.FirstDelayMS, l.SpreadMS)
		for _, s := range l.Schools {
			fmt.Fprintf(w, "  school %s: %d planned, %d started, %d finished, %d failed, %d cancelled, spread %.0f ms %s\n",
				s.School, s.Planned, s.Started, s.Finished, s.Failed, s.Cancelled, s.SpreadMS, s.Error)
		}
		for _, k := range l.Steps {
			fmt.Fprintf(w, "  %s: %d, %d failed, p50 %s ms, p95 %s ms\n", k.Key, k.Count, k.Failures, optMS(k.P50), optMS(k.P95))
		}
	}
	printCapacity(w, rep.Capacity)
	if rep.ShedPercent > 0 {
		fmt.Fprintf(w, "shed at the end: %g%% of %d koi held back\n", rep.ShedPercent, rep.Koi)
	}
	if len(rep.GuardActions) > 0 {
		fmt.Fprintln(w, "guardrail actions:")
		for _, a := range rep.GuardActions {
			fmt.Fprintf(w, "  %s %q (%s): %s was %s over %d → %s: %s\n", a.At.Format(time.TimeOnly), a.Rule, a.Scope, a.Condition,
				formatObserved(a.Observed, a.Unit), a.Count, a.Action, a.Detail)
		}
	}
	printFidelity(w, rep.Fidelity)
	if len(rep.Thresholds) > 0 {
		fmt.Fprintln(w, "thresholds:")
		for _, t := range rep.Thresholds {
			verdict := "PASS"
			if !t.Passed {
				verdict = "FAIL"
			}
			obs := t.Note
			if t.Observed != nil {
				obs = formatObserved(*t.Observed, t.Unit)
			}
			live := ""
			if t.LiveFailures > 0 {
				live = fmt.Sprintf("; failed live %d× for %.0f s", t.LiveFailures, t.LiveFailedSecs)
			}
			fmt.Fprintf(w, "  %s  %s: %s (observed %s%s)\n", verdict, t.Key, t.Expr, obs, live)
		}
		if rep.Passed != nil && *rep.Passed {
			fmt.Fprintln(w, "all thresholds passed")
		} else {
			fmt.Fprintln(w, "THRESHOLDS FAILED")
		}
	}
}

// formatObserved formats a threshold's observed value in its unit.
func formatObserved(v float64, unit string) string {
	switch unit {
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	case "fraction":
		return fmt.Sprintf("%.2f%%", 100*v)
	case "per_sec":
		return fmt.Sprintf("%.2f/s", v)
	case "z":
		return fmt.Sprintf("|z| %.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// thresholdFlags collects repeated --threshold KEY=CONDITION flags.
type thresholdFlags map[string][]string

func (t thresholdFlags) String() string { return "" }

// Set adds one condition, e.g. "api:chat.postMessage=p95 < 300ms".
func (t thresholdFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || strings.TrimSpace(v) == "" {
		return fmt.Errorf("%q is not KEY=CONDITION, e.g. 'api:chat.postMessage=p95 < 300ms'", s)
	}
	t[k] = append(t[k], strings.TrimSpace(v))
	return nil
}

// verdict is the exit status of a judged run: 1 when a threshold failed,
// or when a guardrail acted on the run — the target was not healthy,
// whatever the whole-run thresholds say (in a capacity search breaking a
// guardrail is how the search ends, so it does not count there).
func verdict(rep *api.Report, w io.Writer) error {
	if rep.Passed != nil && !*rep.Passed {
		return exitError{code: 1}
	}
	if rep.Capacity == nil && len(rep.GuardActions) > 0 {
		a := rep.GuardActions[len(rep.GuardActions)-1]
		fmt.Fprintf(w, "failing: %s on the run; the last: %q → %s\n", plural(len(rep.GuardActions), "guardrail action", "guardrail actions"), a.Rule, a.Action)
		return exitError{code: 1}
	}
	return nil
}
