package keeper

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// waitTraffic waits until p has answered n auth.test calls.
func waitTraffic(t *testing.T, p *pond.Server, n uint64) {
	t.Helper()
	wiretest.WaitFor(t, 20*time.Second, "traffic at pond", func() error {
		if got := p.Stats().Requests["auth.test"]["200"]; got < n {
			return errors.New("not enough traffic at pond yet")
		}
		return nil
	})
}

// The acceptance test: pond starts failing 10% of calls mid-run; the rule
// "success_rate of api:* < 95% for 3s → pause" pauses the run within its
// window plus one second of the fault starting; the audit trail, the run
// view and the notice record it. The same rule on a run against a clean
// pond does not fire over more than two windows.
func TestGuardrailPausesWithinWindow(t *testing.T) {
	r := newRig(t, 200)
	ctx := context.Background()
	faulty, clean := newPond(t, nil), newPond(t, nil)
	rule := state.GuardrailRule{Name: "api-health", Key: "api:*", When: "success_rate < 95%", For: "3s", Action: "pause"}
	const window = 3 * time.Second
	sa, sb := spec("faulty", faulty, 40), spec("clean", clean, 40)
	sa.Guardrails, sb.Guardrails = []state.GuardrailRule{rule}, []state.GuardrailRule{rule}
	a, err := r.k.CreateRun(ctx, "test", sa)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.k.CreateRun(ctx, "test", sb)
	if err != nil {
		t.Fatal(err)
	}
	waitTraffic(t, faulty, 200)
	waitTraffic(t, clean, 200)
	// Both rules are armed (a whole window since the start) and hold.
	wiretest.WaitFor(t, 10*time.Second, "the rule evaluated as ok", func() error {
		v := r.k.RunView(r.k.State(), a.ID)
		if len(v.GuardNow) != 1 || v.GuardNow[0].State != LiveOK {
			return errors.New("the rule is not evaluated as ok yet")
		}
		return nil
	})
	if st := r.run(a.ID).State; st != state.RunRunning {
		t.Fatalf("run paused before any fault: %s", st)
	}

	reports := watchReports(t, r.k)
	faultAt := time.Now()
	if err := faulty.SetFaults(map[string]pond.Fault{"*": {Error: 0.1}}); err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 15*time.Second, "the faulty run to pause", func() error {
		if r.run(a.ID).State != state.RunPaused {
			return errors.New("the faulty run is not paused")
		}
		return nil
	})
	run := r.run(a.ID)
	delay := run.Switch.At.Sub(faultAt)
	// Within the window and a guard pass, plus however much later than
	// its interval the school's reports came (a starved school reports
	// late, and the rule can only judge what has been reported).
	limit := window + guardTick + reports.lateness(faultAt.Add(-2*time.Second), run.Switch.At, school.DefaultMetricsInterval)
	t.Logf("fault at 10%% → paused by %s after %v (window %v, limit %v)", run.Switch.By, delay.Round(time.Millisecond), window, limit)
	if delay > limit {
		t.Errorf("paused %v after the fault started; want within %v", delay, limit)
	}
	if run.Switch.By != "guardrail:api-health" {
		t.Errorf("paused by %q", run.Switch.By)
	}
	if len(run.GuardActions) != 1 {
		t.Fatalf("guard actions %+v", run.GuardActions)
	}
	act := run.GuardActions[0]
	t.Logf("recorded: %+v", act)
	if act.Rule != "api-health" || act.Action != "pause" || act.Scope != "run" || act.Observed >= 0.95 || act.Observed < 0.8 || act.Count < 100 {
		t.Errorf("action %+v", act)
	}
	entries := auditWith(r.k, "guardrail:api-health", `guardrail "api-health": success_rate of api:* was`)
	if len(entries) != 1 || !strings.Contains(entries[0].Detail, "< 95% over 3s") || !strings.Contains(entries[0].Detail, "→ pause") {
		t.Errorf("audit: %+v", entries)
	} else {
		t.Logf("audit: %s %s %s: %s", entries[0].Actor, entries[0].Action, entries[0].Object, entries[0].Detail)
	}
	if len(auditWith(r.k, "guardrail:api-health", "epoch")) != 1 {
		t.Error("the pause itself is not audited as the guardrail's")
	}
	r.noticesOf(t, notify.NoticeGuardrail, a.ID, 1)
	var view struct {
		GuardActions []state.GuardAction `json:"guard_actions"`
		GuardNow     []GuardrailView     `json:"guardrails_now"`
	}
	if code := (wiretest.API{Base: "http://" + r.k.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/"+a.ID, nil, &view); code != 200 || len(view.GuardActions) != 1 {
		t.Errorf("run view: %d %+v", code, view)
	}

	// The clean run kept running over more than two windows, its rule
	// evaluated as ok.
	cleanFrom := latest(b.CreatedAt.Add(window), faultAt)
	for time.Since(cleanFrom) < 2*window+time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	cb := r.run(b.ID)
	if cb.State != state.RunRunning || len(cb.GuardActions) != 0 {
		t.Errorf("clean run: %s, actions %+v", cb.State, cb.GuardActions)
	}
	v := r.k.RunView(r.k.State(), b.ID)
	if len(v.GuardNow) != 1 || v.GuardNow[0].State != LiveOK || v.GuardNow[0].Observed == nil || *v.GuardNow[0].Observed < 0.95 {
		t.Errorf("clean run's rule: %+v", v.GuardNow)
	} else {
		t.Logf("clean run after %v armed: rule %s, success rate %.3f over %d calls", time.Since(b.CreatedAt.Add(window)).Round(time.Second),
			v.GuardNow[0].State, *v.GuardNow[0].Observed, v.GuardNow[0].Count)
	}
}

// A stop rule against a pond failing from the start stops the run `for`
// after its start, with the rule as the stop's reason.
func TestGuardrailStops(t *testing.T) {
	r := newRig(t, 100)
	p := newPond(t, map[string]pond.Fault{"auth.test": {Error: 0.5}})
	s := spec("doomed", p, 20)
	s.Guardrails = []state.GuardrailRule{{Key: "api:auth.test", When: "error_rate > 20%", For: "2s", Action: "stop"}}
	run, err := r.k.CreateRun(context.Background(), "test", s)
	if err != nil {
		t.Fatal(err)
	}
	name := "error_rate of api:auth.test > 20% for 2s → stop"
	if run.Guardrails[0].Name != name || run.Guardrails[0].MinCount != verdict.DefaultMinCount {
		t.Errorf("defaulted rule %+v", run.Guardrails[0])
	}
	wiretest.WaitFor(t, 15*time.Second, "the run to stop", func() error {
		if r.run(run.ID).State != state.RunStopped {
			return errors.New("not stopped")
		}
		return nil
	})
	got := r.run(run.ID)
	t.Logf("stopped %v after the start: %s", got.EndedAt.Sub(got.StartedAt).Round(time.Millisecond), got.EndReason)
	if got.EndReason != "stopped by guardrail:"+name || got.EndedAt.Sub(got.StartedAt) < 2*time.Second {
		t.Errorf("end %q after %v", got.EndReason, got.EndedAt.Sub(got.StartedAt))
	}
	if len(got.GuardActions) != 1 || got.GuardActions[0].Action != "stop" {
		t.Errorf("actions %+v", got.GuardActions)
	}
	wiretest.WaitFor(t, 10*time.Second, "no koi connected at pond", func() error {
		if ws := p.Stats().WebsocketsOpen; ws != 0 {
			return errors.New("koi still connected at pond")
		}
		return nil
	})
}

// Shedding by hand drops the koi really connected at pond to the
// effective count and restoring brings them back; a shed rule does the
// same on its own, compounding.
func TestShedByHandAndByRule(t *testing.T) {
	r := newRig(t, 100)
	p := newPond(t, nil)
	run, err := r.k.CreateRun(context.Background(), "test", spec("shed", p, 40))
	if err != nil {
		t.Fatal(err)
	}
	wsOpen := func(n int64) func() error {
		return func() error {
			if got := p.Stats().WebsocketsOpen; got != n {
				return errors.New("websockets open at pond: not there yet")
			}
			return nil
		}
	}
	wiretest.WaitFor(t, 20*time.Second, "40 websockets open at pond", wsOpen(40))
	var v RunView
	if code := (wiretest.API{Base: "http://" + r.k.HTTPAddr()}).Do(t, "POST", "/api/v1/runs/"+run.ID+"/shed", map[string]float64{"percent": 50}, &v); code != 200 || v.ShedPercent != 50 || v.GuardView.EffectiveKoi != 20 {
		t.Fatalf("shed: %d %+v", code, v)
	}
	start := time.Now()
	wiretest.WaitFor(t, 10*time.Second, "20 websockets open at pond", wsOpen(20))
	t.Logf("shed 50%%: websockets open at pond 40 → 20 in %v", time.Since(start).Round(time.Millisecond))
	if got := r.run(run.ID); got.State != state.RunRunning || got.Koi != 40 {
		t.Errorf("shed changed the run: %s koi %d", got.State, got.Koi)
	}
	prom := apiText(t, r.k, "/metrics")
	for _, want := range []string{`koipond_run_koi_effective{run="` + run.ID + `",name="shed"} 20`, `koipond_run_shed_percent{run="` + run.ID + `",name="shed"} 50`} {
		if !strings.Contains(prom, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, bad := range []string{`{"percent": 100}`, `{"percent": -1}`, `{}`, `{"percent": "x"}`} {
		var e errorBody
		if code := (wiretest.API{Base: "http://" + r.k.HTTPAddr()}).Do(t, "POST", "/api/v1/runs/"+run.ID+"/shed", bad, &e); code != 400 || e.Error.Field != "percent" {
			t.Errorf("%s: %d %+v", bad, code, e.Error)
		}
	}
	wiretest.API{Base: "http://" + r.k.HTTPAddr()}.Do(t, "POST", "/api/v1/runs/"+run.ID+"/shed", map[string]float64{"percent": 0}, &v)
	start = time.Now()
	wiretest.WaitFor(t, 20*time.Second, "40 websockets open at pond again", wsOpen(40))
	t.Logf("restore: websockets open at pond back to 40 in %v", time.Since(start).Round(time.Millisecond))
	// Reports older than a couple of seconds are kept encoded: the run's
	// history bytes on /metrics are what the aggregator holds.
	wiretest.WaitFor(t, 10*time.Second, "the run's history bytes on /metrics", func() error {
		held, _ := r.k.agg.historyBytes(run.ID)
		series := fmt.Sprintf(`koipond_run_history_bytes{run="%s",name="shed"} `, run.ID)
		text := apiText(t, r.k, "/metrics")
		_, v, ok := strings.Cut(text, series)
		v, _, _ = strings.Cut(v, "\n")
		if !ok {
			return fmt.Errorf("%s%s (the aggregator holds %d)", series, v, held)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxRunBytes {
			return fmt.Errorf("%s%s: not a size", series, v)
		}
		// The history is held in the history file, rounded up to
		// blocks, not in memory.
		gauge := func(name string) (int, error) {
			_, v, _ := strings.Cut(text, "\n"+name+" ")
			v, _, _ = strings.Cut(v, "\n")
			return strconv.Atoi(v)
		}
		if sp, err := gauge("koipond_keeper_history_space_bytes"); err != nil || sp < n {
			return fmt.Errorf("koipond_keeper_history_space_bytes %d (%v) for a history of %d bytes", sp, err, n)
		}
		if mem, err := gauge("koipond_keeper_history_store_bytes"); err != nil || mem != 0 {
			return fmt.Errorf("koipond_keeper_history_store_bytes %d (%v) with the history in its file, want 0", mem, err)
		}
		return nil
	})
	if n := len(auditWith(r.k, "", "active koi")); n != 2 {
		t.Errorf("%d shed audit entries, want 2", n)
	}

	// A rule sheds 50% while pond fails; healed after the first action, it
	// does not shed again on what it hears after the heal. The school's
	// reports are watched on NATS: on a starved machine one report can
	// span seconds of calls from before the heal and is filed at its end,
	// inside the re-armed window; a second shed is then explained by
	// that report and allowed, but never before the re-armed window is
	// whole, and never once only data from after the heal is left.
	reports := watchReports(t, r.k)
	p2 := newPond(t, map[string]pond.Fault{"auth.test": {Error: 0.5}})
	s := spec("shed-rule", p2, 40)
	s.Guardrails = []state.GuardrailRule{{Name: "shed-on-errors", Key: "api:auth.test", When: "error_rate > 20%", For: "2s", Action: "shed 50%"}}
	run2, err := r.k.CreateRun(context.Background(), "test", s)
	if err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 20*time.Second, "the second run to be shed", func() error {
		if r.run(run2.ID).ShedPercent == 0 {
			return errors.New("not shed yet")
		}
		return nil
	})
	_ = p2.SetFaults(nil)
	healed := time.Now()
	got := r.run(run2.ID)
	if got.ShedPercent != 50 || len(got.GuardActions) != 1 || !strings.Contains(got.GuardActions[0].Detail, "40 → 20 active koi") {
		t.Errorf("rule shed: %g %+v", got.ShedPercent, got.GuardActions)
	}
	acted := got.GuardActions[0].At
	wiretest.WaitFor(t, 10*time.Second, "20 koi at the second pond", func() error {
		if got := p2.Stats().WebsocketsOpen; got != 20 {
			return errors.New("pond does not see 20 koi yet")
		}
		return nil
	})
	// Wait until the rule has judged a whole window of reports begun
	// after the heal (plus a guard pass), then look at what it did.
	const window = 2 * time.Second
	var stale time.Time // the end of the last report holding calls from before the heal
	wiretest.WaitFor(t, 30*time.Second, "a clean report after the fault healed", func() error {
		var clean time.Time
		stale, clean = reports.around(healed)
		if clean.IsZero() || time.Until(clean.Add(window+2*guardTick)) > 0 {
			return errors.New("no whole window of reports from after the heal judged yet")
		}
		return nil
	})
	got = r.run(run2.ID)
	t.Logf("healed %v after the action; the last report with calls from before the heal ended %v after it",
		healed.Sub(acted).Round(time.Millisecond), stale.Sub(healed).Round(time.Millisecond))
	// The rule re-arms at its pass's clock reading, which precedes the
	// action's record by the write (up to the start of the recorded
	// second); its first whole window ends no earlier than that second
	// plus the window.
	rearmed := acted.Truncate(time.Second).Add(window)
	for _, a := range got.GuardActions[1:] {
		switch {
		case a.At.Before(rearmed):
			t.Errorf("shed again %v after the first, before a whole re-armed window: %+v", a.At.Sub(acted), a)
		case a.At.After(stale.Add(window + 2*guardTick)):
			t.Errorf("shed again on data from after the heal (%v after it): %+v", a.At.Sub(healed), a)
		default:
			t.Logf("shed again on a report from before the heal filed in the re-armed window: %+v", a)
		}
	}
	if len(got.GuardActions) > 2 {
		t.Errorf("%d sheds: %+v", len(got.GuardActions), got.GuardActions)
	}
	if c := compoundShed(compoundShed(0, 50), 50); c != 75 {
		t.Errorf("50%% twice = %g%%", c)
	}
}

// reportWatch records the span of every metrics report schools publish.
type reportWatch struct {
	mu    sync.Mutex
	spans [][2]time.Time // start, end
}

// watchReports subscribes to the schools' metrics reports on the
// keeper's NATS, with the keeper's credentials (only the keeper may hear
// reports), until the test ends.
func watchReports(t *testing.T, k *Keeper) *reportWatch {
	t.Helper()
	opts, err := k.natsClientAuth()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(k.NATSURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := &reportWatch{}
	if _, err := nc.Subscribe(wire.SubjectMetrics, func(m *nats.Msg) {
		var rep wire.MetricsReport
		if wire.Decode(m.Data, &rep) == nil {
			w.mu.Lock()
			w.spans = append(w.spans, [2]time.Time{rep.Start, rep.End})
			w.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// lateness returns how much longer than interval (plus its 10% jitter)
// the longest gap between reports ending in [from, to] was, or 0.
func (w *reportWatch) lateness(from, to time.Time, interval time.Duration) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ends []time.Time
	for _, sp := range w.spans {
		if !sp[1].Before(from) && !sp[1].After(to) {
			ends = append(ends, sp[1])
		}
	}
	slices.SortFunc(ends, time.Time.Compare)
	var late time.Duration
	for i := 1; i < len(ends); i++ {
		late = max(late, ends[i].Sub(ends[i-1])-interval*11/10)
	}
	return late
}

// around returns the end of the last report that began before at (it
// may hold calls from before at) and the end of the first report that
// began at or after it (zero until one arrived).
func (w *reportWatch) around(at time.Time) (stale, clean time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, sp := range w.spans {
		switch {
		case sp[0].Before(at):
			stale = latest(stale, sp[1])
		case clean.IsZero() || sp[1].Before(clean):
			clean = sp[1]
		}
	}
	return stale, clean
}

// Bad rules are refused with the field at fault, in a run spec and in the
// global rules; nothing is stored.
func TestBadGuardrails(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	seedRun(t, k, 0)
	ok := state.GuardrailRule{Key: "api:*", When: "success_rate < 95%", For: "5m", Action: "pause"}
	with := func(f func(*state.GuardrailRule)) []state.GuardrailRule {
		r := ok
		f(&r)
		return []state.GuardrailRule{ok, r}
	}
	for _, c := range []struct {
		name  string
		rules []state.GuardrailRule
		field string
		want  string
	}{
		// the condition does not parse
		{"bad when", with(func(r *state.GuardrailRule) { r.When = "success_rate < lots" }), "guardrails[1].when", "percentage"},
		// no condition at all
		{"empty when", with(func(r *state.GuardrailRule) { r.When = "" }), "guardrails[1].when", "give a condition"},
		// a statistic that does not exist
		{"unknown stat", with(func(r *state.GuardrailRule) { r.When = "avg > 1s" }), "guardrails[1].when", "unknown statistic"},
		// for is not a duration
		{"bad for", with(func(r *state.GuardrailRule) { r.For = "five minutes" }), "guardrails[1].for", "not a duration"},
		// for is too short
		{"short for", with(func(r *state.GuardrailRule) { r.For = "500ms" }), "guardrails[1].for", "outside 1s..24h"},
		// for is too long
		{"long for", with(func(r *state.GuardrailRule) { r.For = "25h" }), "guardrails[1].for", "outside"},
		// for is missing
		{"no for", with(func(r *state.GuardrailRule) { r.For = "" }), "guardrails[1].for", "give how long"},
		// an action that does not exist
		{"bad action", with(func(r *state.GuardrailRule) { r.Action = "reboot" }), "guardrails[1].action", "not pause, stop"},
		// shedding everything is a stop
		{"shed 100", with(func(r *state.GuardrailRule) { r.Action = "shed 100%" }), "guardrails[1].action", "between 0 and 100"},
		// shedding nothing
		{"shed 0", with(func(r *state.GuardrailRule) { r.Action = "shed 0%" }), "guardrails[1].action", "between 0 and 100"},
		// shed without a number
		{"shed x", with(func(r *state.GuardrailRule) { r.Action = "shed half" }), "guardrails[1].action", "between 0 and 100"},
		// a broken glob
		{"bad glob", with(func(r *state.GuardrailRule) { r.Key = "api:[" }), "guardrails[1].key", "not a valid glob"},
		// no key
		{"no key", with(func(r *state.GuardrailRule) { r.Key = "" }), "guardrails[1].key", "must not be empty"},
		// a negative min_count
		{"min_count", with(func(r *state.GuardrailRule) { r.MinCount = -1 }), "guardrails[1].min_count", "outside"},
		// two rules with one name (both default to the same)
		{"duplicate", []state.GuardrailRule{ok, ok}, "guardrails[1].name", "names two rules"},
	} {
		_, err := k.CreateRun(context.Background(), "test", RunSpec{Name: c.name, BehaviorSet: "bg", Target: state.Target{APIBase: "http://127.0.0.1:9/api"},
			Guardrails: c.rules})
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeInvalid || e.Field != c.field || !strings.Contains(e.Message, c.want) {
			t.Errorf("%s: %v (%#v), want field %s mentioning %q", c.name, err, e, c.field, c.want)
		}
		var eb errorBody
		if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "PUT", "/api/v1/guardrails", map[string]any{"rules": c.rules}, &eb); code != 400 ||
			eb.Error.Field != strings.Replace(c.field, "guardrails", "rules", 1) {
			t.Errorf("%s: PUT %d %+v", c.name, code, eb.Error)
		}
	}
	if n := len(k.State().Runs(nil)); n != 1 {
		t.Errorf("%d runs stored, want only the seeded one", n)
	}
	if g := k.State().Guardrails(nil); len(g.Rules) != 0 {
		t.Errorf("global rules stored: %+v", g.Rules)
	}
	for _, body := range []string{`{}`, `{"rules": [{"key": "api:*", "when": "p99 > 1s", "for": "1m", "action": "pause", "extra": 1}]}`} {
		if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "PUT", "/api/v1/guardrails", body, nil); code != 400 {
			t.Errorf("%s: %d", body, code)
		}
	}
	// An unknown metric kind warns; it does not fail.
	run, err := k.CreateRun(context.Background(), "test", RunSpec{Name: "warned", BehaviorSet: "bg", Target: state.Target{APIBase: "http://127.0.0.1:9/api"},
		Guardrails: []state.GuardrailRule{{Key: "db:query", When: "p99 > 1s", For: "1m", Action: "stop"}}})
	if err != nil || len(run.Warnings) != 1 || !strings.Contains(run.Warnings[0], `guardrails[0].key: unknown metric kind "db"`) {
		t.Errorf("unknown kind: %v %q", err, run.Warnings)
	}
	var gv GuardrailsView
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "PUT", "/api/v1/guardrails", map[string]any{"rules": []state.GuardrailRule{{Key: "db:query", When: "p99 > 1s", For: "1m", Action: "stop"}}}, &gv); code != 200 || len(gv.Warnings) != 1 {
		t.Errorf("global unknown kind: %d %+v", code, gv)
	}
	// Thresholds' window.
	_, err = k.CreateRun(context.Background(), "test", RunSpec{Name: "w", BehaviorSet: "bg", Target: state.Target{APIBase: "http://127.0.0.1:9/api"}, ThresholdWindowSecs: 3601})
	var e *Error
	if !errors.As(err, &e) || e.Field != "threshold_window_secs" {
		t.Errorf("window: %v", err)
	}
}

// Rules (run and global), the shed share and recorded actions survive a
// keeper restart.
func TestGuardrailsSurviveRestart(t *testing.T) {
	r := newRig(t, 100)
	p := newPond(t, map[string]pond.Fault{"auth.test": {Error: 0.5}})
	ctx := context.Background()
	global := []state.GuardrailRule{{Name: "slow", Key: "event:*", When: "p99 > 5s", For: "1m", Action: "shed 50%", MinCount: 20}}
	if _, err := r.k.SetGuardrails(ctx, "test", global); err != nil {
		t.Fatal(err)
	}
	s := spec("kept", p, 20)
	s.Guardrails = []state.GuardrailRule{{Name: "errors", Key: "api:auth.test", When: "error_rate > 20%", For: "2s", Action: "shed 50%"}}
	run, err := r.k.CreateRun(ctx, "test", s)
	if err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 20*time.Second, "the rule to act", func() error {
		if len(r.run(run.ID).GuardActions) == 0 {
			return errors.New("the rule has not acted yet")
		}
		return nil
	})
	_ = p.SetFaults(nil)
	if _, err := r.k.ShedRun(ctx, "test", run.ID, 30); err != nil {
		t.Fatal(err)
	}
	before := r.run(run.ID)
	r.k.Close()
	k2 := openKeeper(t, r.dir)
	after := k2.State().Run(nil, run.ID)
	if after.ShedPercent != 30 || len(after.Guardrails) != 1 || after.Guardrails[0] != before.Guardrails[0] ||
		len(after.GuardActions) != len(before.GuardActions) || after.GuardActions[0].Rule != "errors" || !after.GuardActions[0].At.Equal(before.GuardActions[0].At) {
		t.Errorf("after restart: %+v\nbefore: %+v", after, before)
	}
	if g := k2.State().Guardrails(nil); len(g.Rules) != 1 || g.Rules[0] != global[0] {
		t.Errorf("global rules after restart: %+v", g.Rules)
	}
	var v RunView
	if code := (wiretest.API{Base: "http://" + k2.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/"+run.ID, nil, &v); code != 200 || v.GuardView.EffectiveKoi != 14 || len(v.GuardActions) != 1 {
		t.Errorf("view after restart: %d effective %d actions %d", code, v.GuardView.EffectiveKoi, len(v.GuardActions))
	}
}

// A live threshold goes failing when pond's faults start and passing
// again when they stop; the failure is audited and notified once, and the
// final report says how long it failed live.
func TestLiveThresholdFailsAndRecovers(t *testing.T) {
	r := newRig(t, 100)
	p := newPond(t, nil)
	s := spec("live", p, 30)
	s.DurationSecs = 20 // room for pass, fail, pass on a busy machine
	s.ThresholdWindowSecs = 2
	s.Thresholds = map[string][]string{"api:auth.test": {"error_rate < 5%"}}
	run, err := r.k.CreateRun(context.Background(), "test", s)
	if err != nil {
		t.Fatal(err)
	}
	liveState := func() LiveThresholdView {
		v := r.k.RunView(r.k.State(), run.ID)
		if len(v.LiveNow) != 1 {
			return LiveThresholdView{}
		}
		return v.LiveNow[0]
	}
	waitState := func(want string) {
		t.Helper()
		wiretest.WaitFor(t, 15*time.Second, "the live threshold state", func() error {
			if got := liveState(); got.State != want {
				return errors.New("live threshold is " + got.State + ", want " + want)
			}
			return nil
		})
	}
	waitState(LivePass)
	faultAt := time.Now()
	_ = p.SetFaults(map[string]pond.Fault{"auth.test": {Error: 0.3}})
	waitState(LiveFail)
	failing := liveState()
	t.Logf("failing %v after the fault: observed %.1f%% over %d calls in %ds", time.Since(faultAt).Round(time.Millisecond), 100**failing.Observed, failing.Count, failing.WindowSecs)
	time.Sleep(2 * time.Second) // failing for a while: still notified once
	healAt := time.Now()
	_ = p.SetFaults(nil)
	waitState(LivePass)
	t.Logf("passing again %v after healing", time.Since(healAt).Round(time.Millisecond))
	r.noticesOf(t, notify.NoticeThresholdFailed, run.ID, 1)
	if n := len(auditWith(r.k, "keeper", "api:auth.test error_rate < 5%")); n != 1 {
		t.Errorf("%d audit entries, want 1", n)
	}
	var lt []state.LiveThreshold
	wiretest.WaitFor(t, 5*time.Second, "the failing stretch recorded on the run", func() error { // written just after the pass that saw it pass
		if lt = r.run(run.ID).LiveThresholds; len(lt) != 1 || lt[0].FailedSecs == 0 {
			return errors.New("the failing stretch is not recorded on the run yet")
		}
		return nil
	})
	if lt[0].Failures != 1 || lt[0].FailedSecs < 2 || lt[0].FailedSecs > 10 {
		t.Errorf("recorded live failures %+v", lt)
	}
	var rep *state.Report
	wiretest.WaitFor(t, 20*time.Second, "the final report", func() error {
		if rep = r.k.State().Report(nil, run.ID); rep == nil {
			return errors.New("no final report yet")
		}
		return nil
	})
	th := rep.Thresholds[0]
	t.Logf("final report: %s %s passed=%v observed %.2f%%, live failures %d for %.1f s", th.Key, th.Expr, th.Passed, 100**th.Observed, th.LiveFailures, th.LiveFailedSecs)
	if th.LiveFailures != 1 || math.Abs(th.LiveFailedSecs-lt[0].FailedSecs) > 1e-6 {
		t.Errorf("report threshold %+v, recorded %+v", th, lt[0])
	}
}
