package keeper

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
)

// The verdict names a behavior's halts by the literal reasons its steps
// give halt, in step order, each once; a computed reason is left out.
func TestHaltReasonsFromSpec(t *testing.T) {
	set, diags := behaviors.Parse(behaviors.File{Name: "h.json", Data: []byte(`{"behaviors": {"post": {"frequency": 0.1, "steps": [
	  {"pre_actions": ["{{ if not (get \"ch\") }}{{ halt \"no current channel\" }}{{ end }}", "{{ if chance 0.1 }}{{ halt ` + "`raw reason`" + ` }}{{ end }}"],
	   "request": {"type": "api", "method": "auth.test"}},
	  {"pre_actions": ["{{ halt (printf \"computed %d\" 1) }}", "{{ if chance 0.5 }}{{ halt \"no current channel\" }}{{ end }}"],
	   "request": {"type": "api", "method": "auth.test", "post_actions": ["{{ if not .ok }}{{ halt \"said \\\"no\\\"\" }}{{ end }}"]}}]}}}`)})
	if set == nil {
		t.Fatalf("parse: %v", diags)
	}
	got := haltReasons(set.Behavior("post").Sequence)
	want := []string{"no current channel", "raw reason", `said "no"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("halt reasons %q, want %q", got, want)
	}
}

// fidelitySet has one behavior that always completes and one that halts
// on a coin flip, at frequencies that give a few hundred runs in seconds
// at time scale 60.
const fidelitySet = `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {
    "steady": {"frequency": 0.5, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
    "coin": {"frequency": 0.5, "steps": [{"pre_actions": ["{{ if chance 0.5 }}{{ halt \"the coin said no\" }}{{ end }}"],
      "request": {"type": "api", "method": "conversations.list", "args": {"limit": "5"}}}]}}}`

// matchedSet's behaviors always complete.
const matchedSet = `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {
    "steady": {"frequency": 0.5, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
    "list": {"frequency": 0.25, "steps": [{"request": {"type": "api", "method": "conversations.list", "args": {"limit": "5"}}}]}}}`

// fidelityRun starts koi koi of a set against p for secs seconds at time
// scale 60 (a behavior-minute a second).
func fidelityRun(t *testing.T, k *Keeper, p *pond.Server, name, set string, koi int, secs float64, thresholds map[string][]string) *state.Run {
	t.Helper()
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", name, []behaviors.File{{Name: name + ".json", Data: []byte(set)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: name, BehaviorSet: name, Koi: koi, TimeScale: 60, DurationSecs: secs,
		Target: state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}, Thresholds: thresholds})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func behaviorOf(t *testing.T, f *state.Fidelity, name string) state.FidelityBehavior {
	t.Helper()
	for _, b := range f.Behaviors {
		if b.Behavior == name {
			return b
		}
	}
	t.Fatalf("no behavior %s in the verdict %+v", name, f)
	return state.FidelityBehavior{}
}

func logFidelity(t *testing.T, name string, f *state.Fidelity) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s — %s; %.0f koi-minutes of %.0f planned\n", name, f.Verdict, f.Summary, f.KoiMinutes, f.PlannedKoiMinutes)
	for _, x := range f.Behaviors {
		z := "-"
		if x.Z != nil {
			z = fmt.Sprintf("%+.2f (started %+.2f)", *x.Z, *x.ZStarted)
		}
		fmt.Fprintf(&b, "  %s: expected %.1f ± %.1f, started %d, completed %d, halted %d, failed %d, canceled %d, z %s: %s %s\n",
			x.Behavior, x.Expected, x.SE, x.Started, x.Completed, x.Halted, x.Failed, x.Canceled, z, x.Verdict, x.Cause)
	}
	for _, n := range f.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	t.Log(b.String())
}

// End to end, real keeper, school and ponds: a run whose behaviors always
// complete matched its spec (every behavior within 4 SE) and passes
// fidelity=matched; in a run with a behavior that halts on a coin flip,
// that behavior is under with its halt reason named while the other is
// within, and fidelity=matched fails it; against a pond failing most
// calls, the behavior calling it is under with the error named. The verdicts are the stored
// reports', and a keeper restart serves them unchanged (report and run
// view).
func TestFidelityEndToEnd(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	clean := openPond(t, nil)
	failing := openPond(t, map[string]pond.Fault{"auth.test": {Error: 0.6}})
	openSchool(t, k, k.NATSURL(), "s1", 200)
	gate := map[string][]string{"fidelity": {"matched"}}
	// Three runs side by side: the spec met, a behavior halting half the
	// time, a target failing most calls.
	okRun := fidelityRun(t, k, clean, "matched", matchedSet, 40, 8, gate)
	coinRun := fidelityRun(t, k, clean, "coin", fidelitySet, 40, 8, gate)
	badRun := fidelityRun(t, k, failing, "failing", matchedSet, 40, 8, nil)

	ok := finalReport(t, k, okRun.ID, 90*time.Second)
	if ok.Fidelity == nil {
		t.Fatal("the final report has no fidelity verdict")
	}
	logFidelity(t, "spec met", ok.Fidelity)
	for _, b := range ok.Fidelity.Behaviors {
		if b.Verdict != state.FidelityWithin {
			t.Errorf("spec met: %s is %s (%s), want within 4 SE", b.Behavior, b.Verdict, b.Cause)
		}
	}
	if ok.Fidelity.Verdict != state.FidelityMatched || ok.Fidelity.Summary != "the load matched its spec" || ok.Passed == nil || !*ok.Passed {
		t.Errorf("spec met: %s %q, fidelity=matched passed %v", ok.Fidelity.Verdict, ok.Fidelity.Summary, ok.Passed)
	}

	rep := finalReport(t, k, coinRun.ID, 90*time.Second)
	f := rep.Fidelity
	logFidelity(t, "coin", f)
	steady, coin := behaviorOf(t, f, "steady"), behaviorOf(t, f, "coin")
	if steady.Verdict != state.FidelityWithin {
		t.Errorf("steady: %s (%s), want within 4 SE", steady.Verdict, steady.Cause)
	}
	if coin.Verdict != state.FidelityUnder || !strings.Contains(coin.Cause, "halted (the coin said no)") {
		t.Errorf("coin: %s %q, want under with the halt named", coin.Verdict, coin.Cause)
	}
	if f.Verdict != state.FidelityNotMatched || !strings.Contains(f.Summary, "behavior coin under: ") || !strings.Contains(f.Summary, "halted (the coin said no)") {
		t.Errorf("summary %s %q", f.Verdict, f.Summary)
	}
	if rep.Passed == nil || *rep.Passed || len(rep.Thresholds) != 1 || rep.Thresholds[0].Passed {
		t.Errorf("fidelity=matched on a run that did not match: passed %v, %+v", rep.Passed, rep.Thresholds)
	}

	bad := finalReport(t, k, badRun.ID, 90*time.Second)
	logFidelity(t, "failing pond", bad.Fidelity)
	if b := behaviorOf(t, bad.Fidelity, "steady"); b.Verdict != state.FidelityUnder || !strings.Contains(b.Cause, "failed (") || len(b.Reasons) == 0 ||
		!strings.Contains(b.Cause, b.Reasons[0].Reason) {
		t.Errorf("steady against a failing pond: %s %q, want under with the error named", b.Verdict, b.Cause)
	}

	// A restart serves the same verdicts, from the stored reports.
	before, _ := json.Marshal(f)
	k.ns.Shutdown()
	k.ns.WaitForShutdown()
	k.Close()
	k2 := openKeeper(t, dir)
	got, err := k2.RunReport(rep.Run)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal(got.Fidelity); string(after) != string(before) {
		t.Errorf("after a restart the verdict is\n%s\nwas\n%s", after, before)
	}
	var view struct {
		Fidelity *state.Fidelity `json:"fidelity"`
	}
	wiretest.API{Base: "http://" + k2.HTTPAddr()}.Call(t, "GET", "/api/v1/runs/"+rep.Run, nil, &view)
	if after, _ := json.Marshal(view.Fidelity); string(after) != string(before) {
		t.Errorf("after a restart the run view's verdict is\n%s\nwas\n%s", after, before)
	}
}
