package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/keeper/contract"
)

func runCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "run create", "run create --name NAME --behaviors SET [--api-base URL] [--ws-url URL] [flags]", `
Create a run: koi with one behavior set against one target. The run starts
at once (or paused with --paused); without --duration it is always-on.
--api-base is needed when the set sends api requests. The websocket comes
from --ws-url (else the boot sequence gives it), with --ws-subprotocol and
--ws-header offered in its handshake, e.g.
  --ws-url ws://127.0.0.1:8080/mqtt --ws-subprotocol mqtt --ws-header 'Authorization=Bearer {{.Token}}'

--threshold adds a condition the run's report judges, e.g.
  --threshold 'api:chat.postMessage=p95 < 300ms' --threshold 'api:chat.postMessage=error_rate < 1%'
--threshold 'fidelity=matched' fails the run unless the load matched its spec
(every behavior within 4 standard errors of its expected runs, every launch's
starts uniform); 'fidelity=max_z <= 3' bounds the largest |z| instead.
With --wait (and --duration) the command shows progress until the run ends
(on a terminal one line redrawn every second; in logs and pipes a line
every --progress-every and whenever the state or a threshold's live
verdict over --threshold-window changes), prints the final report and
exits 1 when a threshold failed or a guardrail acted on the run (outside a
capacity search): CI gating. A keeper restart is ridden out: the wait
retries for up to --wait-unavailable, then exits 3.

--guardrail adds a rule acting on the run when its metrics go bad, e.g.
  --guardrail 'api:*=success_rate < 95% for 5m -> pause'
  --guardrail 'event:message=p99 > 5s for 1m -> shed 50%'

--capacity makes the run a capacity search: it starts at start koi and adds
step koi every DUR while every guardrail holds, up to max, then reports the
largest count that held and stops (then=stop) or holds there (then=hold).`, stderr)
	cf := addClientFlags(fs)
	var spec api.RunSpec
	labels := keyValues{}
	fs.StringVar(&spec.Name, "name", "", "run `NAME`, shown in lists, reports and notifications")
	fs.StringVar(&spec.BehaviorSet, "behaviors", "", "behavior `SET` to run: its name (latest version) or hash")
	fs.StringVar(&spec.Target.APIBase, "api-base", "", "target API base `URL`, e.g. http://127.0.0.1:9090/api")
	fs.StringVar(&spec.Target.WebsocketURL, "ws-url", "", "websocket `URL` (else the boot sequence finds it)")
	fs.StringVar(&spec.Target.WebsocketURL, "ws", "", "websocket `URL` (same as --ws-url)")
	fs.Var(stringList{&spec.Target.WebsocketSubprotocols}, "ws-subprotocol", "websocket `SUBPROTOCOL` offered in the handshake (repeatable)")
	wsHeaders := keyValues{}
	fs.Var(wsHeaders, "ws-header", "websocket handshake header `NAME=VALUE`; the value is a template over {{.Index}}, {{.Token}}, {{.UserID}} (repeatable)")
	fs.StringVar(&spec.Target.Token, "token-template", "", "koi token `template` over {{.Index}}, e.g. xoxp-pond-{{.Index}}")
	fs.StringVar(&spec.Target.UserID, "user-template", "", "koi user id `template` over {{.Index}}")
	fs.IntVar(&spec.Koi, "koi", 100, "number of koi")
	fs.Float64Var(&spec.Ramp, "ramp", 50, "koi started per second (0: all at once)")
	fs.Float64Var(&spec.TimeScale, "time-scale", 0, "speed behavior time up (0 or 1: real time)")
	fs.Float64Var(&spec.ActivitySigma, "activity-sigma", 0, "spread of light and heavy users (lognormal σ)")
	dur := fs.Duration("duration", 0, "end the run after this long (0: always-on)")
	fs.Var(labels, "label", "label `key=value` on the run; webhooks and triggers match labels (repeatable)")
	fs.BoolVar(&spec.Paused, "paused", false, "create the run paused")
	thresholds := thresholdFlags{}
	fs.Var(thresholds, "threshold", "condition the run's report judges, `KEY=CONDITION`, e.g. 'api:auth.test=p95 < 300ms' (repeatable)")
	fs.Var(guardrailFlags{&spec.Guardrails}, "guardrail", "guardrail acting on the run, `RULE` 'KEY=WHEN for DUR -> ACTION' where ACTION is pause, stop or shed N% (repeatable)")
	fs.Var(capacityFlag{&spec.Capacity}, "capacity", "make the run a capacity search, `SPEC` start=N,step=N,every=DUR,max=N[,then=hold|stop][,flatten=KEY@GAIN]")
	window := fs.Duration("threshold-window", 0, "sliding window of live thresholds (default 30s)")
	wait := fs.Bool("wait", false, "stream progress until the run ends, print its report, exit 1 if a threshold failed or a guardrail acted (needs --duration or --capacity)")
	var wo waitOpts
	fs.DurationVar(&wo.unavailable, "wait-unavailable", 2*time.Minute, "with --wait: how long the keeper may be unreachable before giving up (exit 3)")
	fs.DurationVar(&wo.every, "progress-every", 10*time.Second, "with --wait, when not on a terminal: write a progress line this often (and on every change)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *wait && *dur <= 0 && (spec.Capacity == nil || spec.Capacity.Then == "hold") {
		fmt.Fprintln(stderr, "koipond run create: --wait needs --duration or a --capacity search that stops (an always-on run never ends)")
		return errUsage
	}
	spec.DurationSecs = dur.Seconds()
	spec.ThresholdWindowSecs = int(window.Seconds())
	if len(labels) > 0 {
		spec.Labels = labels
	}
	if len(wsHeaders) > 0 {
		spec.Target.WebsocketHeaders = wsHeaders
	}
	if len(thresholds) > 0 {
		spec.Thresholds = thresholds
	}
	var v json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/runs", spec, &v); err != nil {
		return err
	}
	if !*wait {
		return printRun(cf, stdout, v)
	}
	var created runView
	if err := json.Unmarshal(v, &created); err != nil {
		return fmt.Errorf("decoding the run: %w", err)
	}
	if !cf.json {
		if err := printRun(cf, stderr, v); err != nil {
			return err
		}
	}
	return waitRun(ctx, cf, created.ID, wo, stdout, stderr)
}

// runView is what client commands read of a run.
type runView struct {
	api.Run
	Assigned    int              `json:"assigned"`
	Partial     string           `json:"partial"`
	Assignments []api.Assignment `json:"assignments"`
	KoiNow      struct {
		Booting, Connected, Reconnecting, Failed, Paused int
	} `json:"koi_now"`
	Refused        map[string]string `json:"refused"`
	StopCompleteMS int64             `json:"stop_complete_ms"`
	api.GuardView
	Fidelity *contract.Fidelity `json:"fidelity"`
}

func printRun(cf *clientFlags, stdout io.Writer, raw json.RawMessage) error {
	if cf.json {
		return writeJSON(stdout, raw)
	}
	var v runView
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decoding the run: %w", err)
	}
	fmt.Fprintf(stdout, "run %s %q: %s, %d koi at %g/s, %d assigned, %d connected\n",
		v.ID, v.Name, v.State, v.Koi, v.Ramp, v.Assigned, v.KoiNow.Connected)
	fmt.Fprintf(stdout, "  behavior set %s, target %s, owner %s, epoch %d\n", short(v.BehaviorSet), v.Target.Where(), v.Owner, v.Switch.Epoch)
	if v.Partial != "" {
		fmt.Fprintf(stdout, "  PARTIAL: %s\n", v.Partial)
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", w)
	}
	for _, a := range v.Assignments {
		fmt.Fprintf(stdout, "  school %s: koi [%d, %d) at %.3g/s\n", a.School, a.From, a.To, a.Ramp)
	}
	for s, why := range v.Refused {
		fmt.Fprintf(stdout, "  REFUSED by %s: %s\n", s, why)
	}
	printGuard(stdout, &v)
	if v.Fidelity != nil {
		fmt.Fprintf(stdout, "  fidelity: %s — %s\n", fidelityWord(v.Fidelity), clean(v.Fidelity.Summary, 300))
	}
	if v.Stop != nil {
		if v.Stop.Complete() {
			fmt.Fprintf(stdout, "  %s\n", stopConfirmed(len(v.Stop.Expected), v.StopCompleteMS))
		} else {
			fmt.Fprintf(stdout, "  stop: %d of %s confirmed%s\n", len(v.Stop.Acks), plural(len(v.Stop.Expected), "school", "schools"), lateList(v.Stop.Late))
		}
	}
	return nil
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "run list", "run list [--state running|paused|stopped] [--json]", "List runs.", stderr)
	cf := addClientFlags(fs)
	st := fs.String("state", "", "only runs in this `STATE`: running, paused or stopped")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var raw json.RawMessage
	path := "/api/v1/runs"
	if *st != "" {
		path += "?state=" + *st
	}
	if err := cf.call(ctx, "GET", path, nil, &raw); err != nil {
		return err
	}
	if cf.json {
		return writeJSON(stdout, raw)
	}
	var runs []runView
	if err := json.Unmarshal(raw, &runs); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tKOI\tASSIGNED\tCONNECTED\tRAMP\tSTARTED")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%g/s\t%s\n", r.ID, r.Name, r.State, r.Koi, r.Assigned, connectedCell(&r), r.Ramp, r.StartedAt.Format(time.DateTime))
	}
	return tw.Flush()
}

// connectedCell is a run's CONNECTED column: "–" for a stopped run whose
// stop every school confirmed (what a school last reported of it is
// history), else the connected koi the live schools report, so a stop
// still in progress shows what is left.
func connectedCell(r *runView) string {
	if r.State == api.RunStopped && (r.KoiNow.Connected == 0 || r.Stop == nil || r.Stop.Complete()) {
		return "–"
	}
	return strconv.Itoa(r.KoiNow.Connected)
}

// runOne is a run verb on one run ID: a request to the run's path plus
// suffix, answered with the run, which it prints.
func runOne(verb, help, method, suffix string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(ctx, "run "+verb, "run "+verb+" [--json] ID", help, stderr)
		cf := addClientFlags(fs)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		var raw json.RawMessage
		if err := cf.call(ctx, method, "/api/v1/runs/"+fs.Arg(0)+suffix, nil, &raw); err != nil {
			return err
		}
		if err := printRun(cf, stdout, raw); err != nil || verb != "show" || cf.json {
			return err
		}
		return printRequestRates(ctx, cf, fs.Arg(0), stdout)
	}
}

// runSwitchVerb pauses, resumes or stops one run.
func runSwitchVerb(verb string) func(context.Context, []string, io.Writer, io.Writer) error {
	return runOne(verb, fmt.Sprintf("%s one run (stop is final).", strings.ToUpper(verb[:1])+verb[1:]), "POST", "/"+verb)
}

func runScale(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "run scale", "run scale [--koi N] [--ramp R] [--json] ID", `
Change a running run's koi count and/or ramp live: schools move to the new
count at the ramp rate, without a restart.`, stderr)
	cf := addClientFlags(fs)
	koi := fs.Int("koi", -1, "new number of koi (-1: unchanged)")
	ramp := fs.Float64("ramp", -1, "new ramp, koi started per second (-1: unchanged)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var p api.RunPatch
	fs.Visit(func(f *flagT) {
		switch f.Name {
		case "koi":
			p.Koi = koi
		case "ramp":
			p.Ramp = ramp
		}
	})
	var raw json.RawMessage
	if err := cf.call(ctx, "PATCH", "/api/v1/runs/"+fs.Arg(0), p, &raw); err != nil {
		return err
	}
	return printRun(cf, stdout, raw)
}
