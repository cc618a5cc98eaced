package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/api"
)

// guardrailFlags collects repeated --guardrail flags.
type guardrailFlags struct{ rules *[]api.GuardrailRule }

func (g guardrailFlags) String() string { return "" }

// Set adds one rule written "KEY=WHEN for DUR -> ACTION", e.g.
// "api:*=success_rate < 95% for 5m -> pause" ("→" works for "->").
func (g guardrailFlags) Set(s string) error {
	r, err := parseGuardrailFlag(s)
	if err != nil {
		return err
	}
	*g.rules = append(*g.rules, r)
	return nil
}

// parseGuardrailFlag reads "KEY=WHEN for DUR -> ACTION"; the keeper
// checks each part.
func parseGuardrailFlag(s string) (api.GuardrailRule, error) {
	bad := func(why string) (api.GuardrailRule, error) {
		return api.GuardrailRule{}, fmt.Errorf("%q: %s; write KEY=WHEN for DUR -> ACTION, e.g. 'api:*=success_rate < 95%% for 5m -> pause'", s, why)
	}
	key, rest, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(key) == "" {
		return bad("no KEY=")
	}
	rest = strings.ReplaceAll(rest, "→", "->")
	cond, action, ok := strings.Cut(rest, "->")
	if !ok || strings.TrimSpace(action) == "" {
		return bad("no -> ACTION")
	}
	i := strings.LastIndex(cond, " for ")
	if i < 0 {
		return bad("no 'for DUR'")
	}
	return api.GuardrailRule{Key: strings.TrimSpace(key), When: strings.TrimSpace(cond[:i]),
		For: strings.TrimSpace(cond[i+len(" for "):]), Action: strings.TrimSpace(action)}, nil
}

// runShed is `koipond run shed ID PERCENT`.
func runShed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "run shed", "run shed [--json] ID PERCENT", `
Partial shutdown: hold back PERCENT of a run's koi (0 ≤ PERCENT < 100)
without stopping it; schools run round((100 − PERCENT)% × koi). 0 brings
every koi back.`, stderr)
	cf := addClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, err := strconv.ParseFloat(strings.TrimSuffix(fs.Arg(1), "%"), 64)
	if err != nil {
		fmt.Fprintf(stderr, "koipond run shed: %q is not a percentage\n", fs.Arg(1))
		return errUsage
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/runs/"+url.PathEscape(fs.Arg(0))+"/shed", map[string]float64{"percent": p}, &raw); err != nil {
		return err
	}
	return printRun(cf, stdout, raw)
}

// runGuardrails is `koipond guardrails [show | set FILE | clear]`.
func runGuardrails(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "guardrails", "guardrails [--json] [show | set FILE | clear]", `
Show or replace the global guardrails: rules evaluated every second on
every running run. FILE holds {"rules": [...]} or a bare list of rules:
  {"name": "api-health", "key": "api:*", "when": "success_rate < 95%",
   "for": "5m", "action": "pause", "min_count": 10}
action is pause, stop (both move the global switch) or "shed N%" (every
running run). "-" reads FILE from stdin. Setting needs an admin token.`, stderr)
	cf := addClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	verb := "show"
	if fs.NArg() > 0 {
		verb = fs.Arg(0)
	}
	var body any
	switch {
	case verb == "show" && fs.NArg() <= 1:
	case verb == "clear" && fs.NArg() == 1:
		body = map[string]any{"rules": []api.GuardrailRule{}}
	case verb == "set" && fs.NArg() == 2:
		var data []byte
		var err error
		if fs.Arg(1) == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(fs.Arg(1))
		}
		if err != nil {
			return fmt.Errorf("reading the rules: %w", err)
		}
		var obj struct {
			Rules []api.GuardrailRule `json:"rules"`
		}
		if err := json.Unmarshal(data, &obj); err != nil || obj.Rules == nil {
			if err2 := json.Unmarshal(data, &obj.Rules); err2 != nil {
				return fmt.Errorf("%s: want {\"rules\": [...]} or a list of rules: %v", fs.Arg(1), err)
			}
		}
		body = obj
	default:
		fmt.Fprintln(stderr, "koipond guardrails: want show, set FILE or clear")
		return errUsage
	}
	var raw json.RawMessage
	method := "GET"
	if body != nil {
		method = "PUT"
	}
	if err := cf.call(ctx, method, "/api/v1/guardrails", body, &raw); err != nil {
		return err
	}
	if cf.json {
		return writeJSON(stdout, raw)
	}
	var v api.GuardrailsView
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decoding the guardrails: %w", err)
	}
	if len(v.Rules) == 0 {
		fmt.Fprintln(stdout, "no global guardrails")
	}
	for _, r := range v.Rules {
		fmt.Fprintf(stdout, "%s: %s of %s for %s → %s (min %d observations)\n", r.Name, r.When, r.Key, r.For, r.Action, r.MinCount)
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return nil
}

// printGuard writes a run's shed share, live thresholds, guardrails and
// the actions they took.
func printGuard(w io.Writer, v *runView) {
	printCapacity(w, v.CapacityResult)
	if v.ShedPercent > 0 {
		fmt.Fprintf(w, "  shed %g%%: %d of %d koi active\n", v.ShedPercent, v.GuardView.EffectiveKoi, v.Koi)
	}
	for _, l := range v.LiveNow {
		fmt.Fprintf(w, "  %s\n", liveLine(l))
	}
	for _, g := range v.GuardNow {
		obs := ""
		if g.Observed != nil {
			obs = fmt.Sprintf(" %s over %d", formatObserved(*g.Observed, g.Unit), g.Count)
		}
		fmt.Fprintf(w, "  guardrail %q (%s): %s for %s → %s: %s%s\n", g.Name, g.Scope, g.Condition, g.For, g.Action, g.State, obs)
	}
	for _, a := range v.GuardActions {
		fmt.Fprintf(w, "  %s guardrail %q: %s was %s (%d observations) → %s: %s\n", a.At.Format(time.TimeOnly), a.Rule, a.Condition,
			formatObserved(a.Observed, a.Unit), a.Count, a.Action, a.Detail)
	}
}

// liveLine formats a live threshold, e.g.
// "live: api:chat.postMessage p95 < 300ms  FAIL 412.0 ms (for 6s)".
func liveLine(l api.LiveThresholdView) string {
	verdict := map[string]string{api.LivePass: "ok", api.LiveFail: "FAIL", api.LiveNoData: "no data", api.LiveIdle: "idle"}[l.State]
	if verdict == "" {
		verdict = l.State
	}
	s := fmt.Sprintf("live: %s %s  %s", l.Key, l.Expr, verdict)
	if l.Observed != nil {
		s += " " + formatObserved(*l.Observed, l.Unit)
	}
	if l.State == api.LiveFail && l.FailingSecs > 0 {
		s += fmt.Sprintf(" (for %s)", (time.Duration(l.FailingSecs) * time.Second).Round(time.Second))
	}
	return s
}

// capacityFlag reads --capacity start=N,step=N,every=DUR,max=N[,then=hold|stop][,flatten=KEY@GAIN].
type capacityFlag struct{ spec **api.CapacitySpec }

func (c capacityFlag) String() string { return "" }

func (c capacityFlag) Set(s string) error {
	cs := &api.CapacitySpec{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%q is not KEY=VALUE (start, step, every, max, then, flatten)", part)
		}
		var err error
		switch k {
		case "start":
			cs.Start, err = strconv.Atoi(v)
		case "step":
			cs.Step, err = strconv.Atoi(v)
		case "max":
			cs.Max, err = strconv.Atoi(v)
		case "every":
			var d time.Duration
			if d, err = time.ParseDuration(v); err == nil {
				cs.StepSecs = int(d.Seconds())
			}
		case "then":
			cs.Then = v
		case "flatten":
			key, gain, ok := strings.Cut(v, "@")
			if !ok {
				return fmt.Errorf("flatten=%q: want KEY@MIN_GAIN, e.g. api:*@0.5", v)
			}
			f := &api.CapacityFlatten{Key: key}
			f.MinGain, err = strconv.ParseFloat(gain, 64)
			cs.Flatten = f
		default:
			return fmt.Errorf("unknown key %q (start, step, every, max, then, flatten)", k)
		}
		if err != nil {
			return fmt.Errorf("%s=%q: %v", k, v, err)
		}
	}
	*c.spec = cs
	return nil
}

// printCapacity writes a capacity search's steps and result.
func printCapacity(w io.Writer, res *api.CapacityResult) {
	if res == nil {
		return
	}
	if res.Done {
		fmt.Fprintf(w, "capacity: %d koi sustained (%s)\n", res.Sustained, res.Reason)
	} else {
		fmt.Fprintf(w, "capacity: searching, %d koi sustained so far\n", res.Sustained)
	}
	for _, s := range res.Steps {
		verdict := "held"
		if !s.Held {
			verdict = "BROKE"
		}
		fmt.Fprintf(w, "  %6d koi  %-5s  %8.1f/s  %6.2f%% errors  p95 %s ms  (%s, %s)  %s\n", s.Koi, verdict, s.Rate, 100*s.ErrorRate,
			optMS(s.P95), s.Key, s.To.Sub(s.From).Round(time.Second), s.Reason)
	}
}
