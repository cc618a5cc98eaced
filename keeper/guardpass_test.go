package keeper

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// addCalls reports n calls of key with outcome o on run at keeper time at.
func addCalls(t *testing.T, k *Keeper, run, key string, at time.Time, n int, o metrics.Outcome) {
	t.Helper()
	var rec metrics.Recorder
	for range n {
		rec.Observe(key, time.Millisecond, o)
	}
	snap, err := rec.Snapshot().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.agg.add(run, at, &wire.RunMetrics{Run: run, Snapshot: snap}); err != nil {
		t.Fatal(err)
	}
}

// A steady 100 calls/s, evaluated 0.3 s into a second whose report has
// only 30 of them so far: the rule "rate < 90/s for 5s" reads 100/s over
// the last 5 whole seconds and does not fire. (Over the 5 seconds up to
// and including the current one it read 430/5 = 86/s and fired.)
func TestGuardrailRateOverWholeSeconds(t *testing.T) {
	k := &Keeper{agg: newAggregator(), guard: newGuard(), windows: newWindowCache()}
	t0 := time.Now().Truncate(time.Second).Add(-time.Minute)
	for sec := range 60 {
		addCalls(t, k, "run", "api:x", t0.Add(time.Duration(sec)*time.Second), 100, metrics.OK)
	}
	now := t0.Add(60*time.Second + 300*time.Millisecond)
	addCalls(t, k, "run", "api:x", now.Truncate(time.Second), 30, metrics.OK)
	gs, err := parseGuardrails("guardrails", "run", []state.GuardrailRule{{Key: "api:*", When: "rate < 90/s", For: "5s", Action: "pause"}})
	if err != nil {
		t.Fatal(err)
	}
	run := &state.Run{ID: "run", State: state.RunRunning}
	v, f := k.evalGuardrail(gs[0], run, t0.Add(-time.Hour), now)
	if f != nil || v.State != LiveOK || v.Observed == nil || *v.Observed != 100 || v.Count != 500 {
		t.Errorf("view %+v (observed %v), firing %v", v, *v.Observed, f)
	}
	// Armed 3.5 s ago: the window is not whole, the rule is arming.
	if v, f := k.evalGuardrail(gs[0], run, now.Add(-3500*time.Millisecond), now); f != nil || v.State != LiveArming {
		t.Errorf("armed 3.5 s ago: %+v %v", v, f)
	}
}

// A keeper that opened 4.8 s ago (or a run resumed then) has metrics of
// the 4 whole seconds since: live thresholds judge a rate over those 4
// seconds (100/s, passing "rate > 90/s"; over the 30 s window it read
// 13/s and failed), and a count threshold is arming until its window is
// whole.
func TestLiveThresholdsFromArming(t *testing.T) {
	k := &Keeper{agg: newAggregator(), guard: newGuard(), windows: newWindowCache()}
	t0 := time.Now().Truncate(time.Second).Add(-time.Minute)
	armed := t0.Add(55*time.Second + 500*time.Millisecond)
	for sec := 56; sec < 60; sec++ {
		addCalls(t, k, "run", "api:x", t0.Add(time.Duration(sec)*time.Second), 100, metrics.OK)
	}
	now := t0.Add(60*time.Second + 300*time.Millisecond)
	addCalls(t, k, "run", "api:x", now.Truncate(time.Second), 30, metrics.OK)
	run := &state.Run{ID: "run", State: state.RunRunning, StartedAt: t0.Add(-time.Hour),
		Thresholds: map[string][]string{"api:x": {"rate > 90/s", "count > 1000"}}}
	if ch := k.liveThresholds(run, armed, now); len(ch) != 0 {
		t.Errorf("changes %+v", ch)
	}
	views := k.guardView(run).LiveNow
	if len(views) != 2 {
		t.Fatalf("views %+v", views)
	}
	for _, v := range views {
		switch v.Expr {
		case "rate > 90/s":
			if v.State != LivePass || v.Observed == nil || *v.Observed != 100 {
				t.Errorf("rate: %+v", v)
			}
		default:
			if v.State != LiveArming {
				t.Errorf("count over 4 of 30 s: %+v", v)
			}
		}
	}
	// Before a whole second since arming has ended, all are arming.
	k.liveThresholds(run, now.Add(-100*time.Millisecond), now)
	for _, v := range k.guardView(run).LiveNow {
		if v.State != LiveArming {
			t.Errorf("armed 0.1 s ago: %+v", v)
		}
	}
}

// flakyPersister persists nothing, failing while fail is set.
type flakyPersister struct{ fail atomic.Bool }

func (p *flakyPersister) Put(context.Context, string, []byte) error {
	if p.fail.Load() {
		return errors.New("persister down")
	}
	return nil
}

func (p *flakyPersister) Delete(ctx context.Context, key string) error { return p.Put(ctx, key, nil) }

// guardKeeper is a keeper without loops (guardPass is the test's to call)
// over a store writing through p, with one running run whose threshold
// "error_rate < 5%" over 3 s sees 50 failed calls of api:x every second
// from t0 for 5 s.
func guardKeeper(t *testing.T, p *flakyPersister, t0 time.Time) (*Keeper, *state.Run) {
	t.Helper()
	st, err := state.New(p)
	if err != nil {
		t.Fatal(err)
	}
	k := &Keeper{store: st, agg: newAggregator(), guard: newGuard(), windows: newWindowCache(),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	run := &state.Run{ID: "run-1", Name: "live", State: state.RunRunning, Koi: 1, StartedAt: t0.Add(-time.Minute),
		ThresholdWindowSecs: 3, Thresholds: map[string][]string{"api:x": {"error_rate < 5%"}}}
	if err := st.Write(context.Background(), func(tx *state.Txn) error { return tx.PutRun(run) }); err != nil {
		t.Fatal(err)
	}
	for sec := range 5 {
		addCalls(t, k, run.ID, "api:x", t0.Add(time.Duration(sec)*time.Second), 50, metrics.ServerError)
	}
	return k, run
}

// setRunState moves the stored run to st (stopped: ended at end).
func setRunState(t *testing.T, k *Keeper, id string, st state.RunState, end time.Time) {
	t.Helper()
	err := k.store.Write(context.Background(), func(tx *state.Txn) error {
		n := *tx.Run(nil, id)
		n.State = st
		if st == state.RunStopped {
			n.EndedAt = end
		}
		return tx.PutRun(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A failing stretch whose start cannot be recorded (the write fails) is
// not taken as started: the next pass records it — the failure counted
// and audited. Likewise its end: a stopped run's stretch stays open (and
// in openFailure, for reports) until its end is recorded.
func TestLiveFailureRetriedAfterWriteError(t *testing.T) {
	t0 := time.Now().Truncate(time.Second).Add(-time.Minute)
	p := &flakyPersister{}
	k, run := guardKeeper(t, p, t0)
	const key, expr = "api:x", "error_rate < 5%"
	now := t0.Add(5*time.Second + 500*time.Millisecond)

	p.fail.Store(true)
	if err := k.guardPass(context.Background(), now); err == nil {
		t.Fatal("a pass recorded its changes through a failing persister")
	}
	if s := k.openFailure(run.ID, key, expr, now.Add(time.Second)); s != 0 {
		t.Errorf("an unrecorded stretch is open for %.1f s", s)
	}
	p.fail.Store(false)
	if err := k.guardPass(context.Background(), now.Add(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	got := k.store.Read().Run(nil, run.ID)
	if len(got.LiveThresholds) != 1 || got.LiveThresholds[0].Failures != 1 || got.LiveThresholds[0].FailedSecs != 0 {
		t.Fatalf("live thresholds %+v", got.LiveThresholds)
	}
	if n := len(auditWith(k, "keeper", "api:x error_rate < 5%")); n != 1 {
		t.Errorf("%d audit entries of the failure", n)
	}
	if s := k.openFailure(run.ID, key, expr, now.Add(1100*time.Millisecond)); s < 0.9 || s > 1.1 {
		t.Errorf("the recorded stretch is open for %.1f s, want 1", s)
	}

	// The run stops 2 s into the stretch; the end's write fails.
	setRunState(t, k, run.ID, state.RunStopped, now.Add(2100*time.Millisecond))
	p.fail.Store(true)
	if err := k.guardPass(context.Background(), now.Add(3*time.Second)); err == nil {
		t.Fatal("a pass recorded its changes through a failing persister")
	}
	if s := k.openFailure(run.ID, key, expr, now.Add(2100*time.Millisecond)); s < 1.9 || s > 2.1 {
		t.Errorf("after the failed write the stretch is open for %.1f s, want 2", s)
	}
	p.fail.Store(false)
	if err := k.guardPass(context.Background(), now.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	got = k.store.Read().Run(nil, run.ID)
	if lt := got.LiveThresholds[0]; lt.Failures != 1 || lt.FailedSecs < 1.9 || lt.FailedSecs > 2.1 {
		t.Errorf("recorded %+v, want 1 failure of 2 s", lt)
	}
	if s := k.openFailure(run.ID, key, expr, now.Add(5*time.Second)); s != 0 {
		t.Errorf("a recorded stretch is still open for %.1f s", s)
	}
	k.guard.mu.Lock()
	_, tracked := k.guard.live[run.ID]
	k.guard.mu.Unlock()
	if tracked {
		t.Error("the stopped run's live state is kept")
	}
}

// Sheds never empty a running run: compounding stays below 100% (which
// ShedRun refuses) and a run with koi keeps at least one active.
func TestShedNeverEmptiesARun(t *testing.T) {
	p := 99.9999999
	c := compoundShed(p, p) // 100 − 1e-16: exactly 100 in float64
	for range 10 {
		c = compoundShed(c, p)
	}
	if c >= 100 || c < p {
		t.Errorf("compounded shed %v", c)
	}
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 1)
	n, err := k.ShedRun(context.Background(), "test", run.ID, 75)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.EffectiveKoi(); got != 1 {
		t.Errorf("1 koi shed 75%%: %d active", got)
	}
	if v := k.RunView(k.State(), run.ID); v.GuardView.EffectiveKoi != 1 {
		t.Errorf("view: %d effective koi", v.GuardView.EffectiveKoi)
	}
	if _, err := k.ShedRun(context.Background(), "test", run.ID, c); err != nil {
		t.Errorf("a compounded shed refused: %v", err)
	}
	stopped := state.Run{Koi: 1, ShedPercent: 75, State: state.RunStopped}
	if got := stopped.EffectiveKoi(); got != 0 {
		t.Errorf("a stopped run shed 75%% of 1 koi: %d active", got)
	}
}
