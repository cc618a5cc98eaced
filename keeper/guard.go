package keeper

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// Live evaluation: every second the guard loop evaluates, for each running
// run, its thresholds over a sliding window (live thresholds) and its own
// and the global guardrails, and acts on the guardrails that fire.
//
// Guardrail semantics. A rule {key, when, for, action, min_count} FIRES
// when its condition (`when`, threshold syntax) is TRUE — the opposite of
// a threshold, which passes when its condition is true. Each second, for
// each running run (the run running and the global switch running), the
// condition is evaluated over the window [now−for, now) of the run's
// merged metrics of every key matching `key` (a path.Match glob), in whole
// ended seconds (liveWindow: it ends where the current, partly reported
// second begins, and a rate divides by the seconds it covers; ratios and
// quantiles — error_rate, success_rate, pN — also take that current
// second, the newest news, see Threshold.windowEnd), but only
// once that window lies wholly after the rule's armedAt: the latest of the
// run's last start (create or resume), the global switch's last change,
// the keeper's start (metrics are not persisted) and the rule's last
// firing on the run; until then the rule is arming. So a target failing
// from the start trips the rule `for` (plus up to two seconds) after
// start; failures starting mid-run trip it within `for` (plus the second
// being reported and the schools' metrics interval). Live thresholds use
// the same windows and arming, but evaluate a window not yet whole over
// the seconds it has (see liveThresholds). With fewer than min_count
// observations in the window the rule does not fire. Actions: pause and
// stop switch the run (actor guardrail:<name>), exactly as a person would;
// a global rule's pause or stop moves the global switch instead; "shed N%"
// holds back N% of the run's active koi (compounding: 50% twice is 75%),
// a global rule sheds every running run. Every action is audited with the
// rule and the observed value, recorded on the run and notified.

// Limits and defaults of live evaluation.
const (
	defaultThresholdWindow = 30   // seconds
	maxThresholdWindow     = 3600 // seconds
	guardTick              = time.Second
)

// matching merges the series of snap whose key matches pattern (a glob
// or a plain key) into one; nil when none match.
func matching(snap *metrics.Snapshot, pattern string) *metrics.SeriesSnapshot {
	return pick(snap, selector(pattern, false))
}

// Live states of a threshold or guardrail.
const (
	LivePass   = "pass"      // the threshold holds
	LiveFail   = "fail"      // the threshold does not hold
	LiveNoData = "no_data"   // nothing observed in the window
	LiveArming = "arming"    // the window is not yet whole (see liveThresholds)
	LiveLow    = "low_count" // a guardrail saw fewer than min_count observations
	LiveOK     = "ok"        // a guardrail's condition is false
	LiveFiring = "firing"    // a guardrail's condition is true: it acted
	LiveIdle   = "idle"      // the run is not running
)

// LiveThresholdView is a threshold's latest live evaluation.
type LiveThresholdView struct {
	Key        string   `json:"key"`
	Expr       string   `json:"expr"`
	State      string   `json:"state"`
	Observed   *float64 `json:"observed,omitempty"`
	Unit       string   `json:"unit"`
	Count      uint64   `json:"count"`
	WindowSecs int      `json:"window_secs"`
	// FailingSince is when the current failing stretch began.
	FailingSince time.Time `json:"failing_since,omitzero"`
	FailingSecs  float64   `json:"failing_secs,omitempty"`
}

// GuardrailView is a guardrail's latest evaluation on a run.
type GuardrailView struct {
	Name      string   `json:"name"`
	Scope     string   `json:"scope"`
	Condition string   `json:"condition"`
	For       string   `json:"for"`
	Action    string   `json:"action"`
	State     string   `json:"state"`
	Observed  *float64 `json:"observed,omitempty"`
	Unit      string   `json:"unit"`
	Count     uint64   `json:"count"`
	// ArmedAt is the start of the rule's current arming (see the
	// guardrail semantics above).
	ArmedAt time.Time `json:"armed_at,omitzero"`
}

// GuardView is what a run view shows of live evaluation and partial
// shutdown.
type GuardView struct {
	// EffectiveKoi is Koi less the shed share: what schools run.
	EffectiveKoi int                 `json:"effective_koi"`
	LiveNow      []LiveThresholdView `json:"live_thresholds_now,omitempty"`
	GuardNow     []GuardrailView     `json:"guardrails_now,omitempty"`
}

// liveState is a threshold's in-memory live state.
type liveState struct {
	view LiveThresholdView
}

// guard is the in-memory side of live evaluation. Its lock is a leaf.
type guard struct {
	mu    sync.Mutex
	live  map[string]map[string]*liveState // run → key\x00expr →
	views map[string][]GuardrailView       // run → rules
	fired map[string]map[string]time.Time  // run → scope\x00name → last firing
}

func newGuard() *guard {
	return &guard{live: map[string]map[string]*liveState{}, views: map[string][]GuardrailView{}, fired: map[string]map[string]time.Time{}}
}

func liveID(key, expr string) string { return key + "\x00" + expr }

// guardView returns a run's live view.
func (k *Keeper) guardView(run *state.Run) GuardView {
	v := GuardView{EffectiveKoi: run.EffectiveKoi()}
	k.guard.mu.Lock()
	defer k.guard.mu.Unlock()
	ts, _ := parseThresholds(run.Thresholds)
	for _, t := range ts {
		if ls := k.guard.live[run.ID][liveID(t.Key, t.Expr)]; ls != nil {
			v.LiveNow = append(v.LiveNow, ls.view)
		}
	}
	v.GuardNow = slices.Clone(k.guard.views[run.ID])
	return v
}

// openFailure returns how long a threshold has been failing in a stretch
// not yet recorded on the run, up to end.
func (k *Keeper) openFailure(run, key, expr string, end time.Time) float64 {
	k.guard.mu.Lock()
	defer k.guard.mu.Unlock()
	ls := k.guard.live[run][liveID(key, expr)]
	if ls == nil || ls.view.FailingSince.IsZero() {
		return 0
	}
	return max(0, end.Sub(ls.view.FailingSince).Seconds())
}

// guardLoop evaluates live thresholds and guardrails every second until
// the keeper closes.
func (k *Keeper) guardLoop() {
	t := time.NewTicker(guardTick)
	defer t.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case now := <-t.C:
			if err := k.guardPass(k.ctx, now); err != nil && k.ctx.Err() == nil {
				k.stats.reject(k.log, "guard: pass failed", err)
			}
		}
	}
}

// liveChange is a live threshold starting or ending a failing stretch.
type liveChange struct {
	run      *state.Run
	key      string
	expr     string
	start    bool      // started failing (else: the stretch ended)
	secs     float64   // the ended stretch's length
	at       time.Time // when it started
	observed string
}

// firing is a guardrail whose condition held over its window.
type firing struct {
	g        *verdict.Guardrail
	run      *state.Run
	observed float64
	count    uint64
	window   time.Duration
}

// guardPass is one evaluation at now: live thresholds of every running
// run, then the guardrails that fire, each acted on in its own write.
// Failing stretches that start or end change the in-memory live state only
// once their write commits (applyLive): a failed write leaves the state as
// it was, so the next pass finds the same changes and retries them.
func (k *Keeper) guardPass(ctx context.Context, now time.Time) error {
	r := k.store.Read()
	sw := r.Switch(nil)
	global, _ := parseGuardrails("guardrails", "global", r.Guardrails(nil).Rules) // stored valid
	var changes []liveChange
	var fires []firing
	var forget []string // stopped runs whose live state goes once recorded
	running := map[string]bool{}
	for _, run := range r.Runs(nil) {
		isRunning := run.State == state.RunRunning && sw.State == wire.Running
		k.guard.mu.Lock()
		_, tracked := k.guard.live[run.ID]
		k.guard.mu.Unlock()
		if run.State == state.RunStopped {
			k.guard.mu.Lock()
			delete(k.guard.fired, run.ID)
			k.guard.mu.Unlock()
		}
		if !isRunning {
			if tracked {
				changes = append(changes, k.idleRun(run, now)...)
				if run.State == state.RunStopped {
					forget = append(forget, run.ID)
				}
			}
			continue
		}
		running[run.ID] = true
		armed := latest(run.StartedAt, run.Switch.At, k.opened)
		if sw.Epoch > 0 {
			armed = latest(armed, sw.At)
		}
		changes = append(changes, k.liveThresholds(run, armed, now)...)
		own, _ := parseGuardrails("guardrails", "run", run.Guardrails) // stored valid
		var views []GuardrailView
		for _, g := range append(own, global...) {
			v, f := k.evalGuardrail(g, run, armed, now)
			views = append(views, v)
			if f != nil {
				fires = append(fires, *f)
			}
		}
		k.guard.mu.Lock()
		k.guard.views[run.ID] = views
		k.guard.mu.Unlock()
	}
	k.guard.mu.Lock()
	for id := range k.guard.views {
		if !running[id] {
			delete(k.guard.views, id)
		}
	}
	k.guard.mu.Unlock()
	if err := k.recordLive(ctx, changes); err != nil {
		return err
	}
	k.applyLive(changes, forget, now)
	k.windows.endPass(running)
	globalDone := map[string]bool{} // a global rule acts once per pass
	for _, f := range fires {
		if f.g.Scope == "global" {
			if globalDone[f.g.Rule.Name] {
				continue
			}
			globalDone[f.g.Rule.Name] = true
		}
		if err := k.act(ctx, f, now); err != nil {
			return err
		}
	}
	return k.capacityPass(ctx, now)
}

// evalGuardrail evaluates one rule on a running run armed at armed; it
// returns the rule's view and, when it fires, the firing.
func (k *Keeper) evalGuardrail(g *verdict.Guardrail, run *state.Run, armed, now time.Time) (GuardrailView, *firing) {
	v := GuardrailView{Name: g.Rule.Name, Scope: g.Scope, Condition: g.Condition(), For: g.Rule.For, Action: g.Rule.Action, Unit: g.Cond.Unit()}
	k.guard.mu.Lock()
	armed = latest(armed, k.guard.fired[run.ID][g.Scope+"\x00"+g.Rule.Name])
	k.guard.mu.Unlock()
	v.ArmedAt = armed
	// The window's buckets are whole settled seconds after armed.
	from, to, secs, whole := liveWindow(now, armed, g.Dur)
	if !whole {
		v.State = LiveArming
		return v, nil
	}
	ss := k.series(run.ID, selector(g.Rule.Key, false), from, g.Cond.WindowEnd(to))
	if ss != nil {
		v.Count = ss.Total()
	}
	val, ok := g.Cond.Observe(ss, secs)
	if ok {
		v.Observed = &val
	}
	switch {
	case !ok:
		v.State = LiveNoData
	case v.Count < uint64(g.Rule.MinCount):
		v.State = LiveLow
	case !g.Cond.Holds(val):
		v.State = LiveOK
	default:
		v.State = LiveFiring
		return v, &firing{g: g, run: run, observed: val, count: v.Count, window: to.Sub(from)}
	}
	return v, nil
}

// act takes a firing rule's action in one write: the switch or the shed,
// the record on the run(s) and the audit entry; then it publishes and
// notifies. A run that is no longer running is left alone.
func (k *Keeper) act(ctx context.Context, f firing, now time.Time) error {
	g := f.g
	actor := "guardrail:" + g.Rule.Name
	unit := g.Cond.Unit()
	opWord := strings.Fields(g.Cond.Expr)
	text := fmt.Sprintf("guardrail %q: %s of %s was %s %s %s over %s (%d observations) → %s", g.Rule.Name, opWord[0], g.Rule.Key,
		verdict.FormatValue(f.observed, unit), opWord[1], opWord[2], g.Rule.For, f.count, g.Rule.Action)
	if g.Scope == "global" {
		text += " (global rule)"
	}
	var controls []wire.Control
	var shedRuns []string
	acted := false
	err := k.writeFirst(ctx, "acting on a guardrail", func(tx *state.Txn) error {
		controls, shedRuns, acted = nil, nil, false
		cur := tx.Run(nil, f.run.ID)
		if cur == nil || cur.State != state.RunRunning || tx.Switch(nil).State != wire.Running {
			return nil // someone (or another rule) got there first
		}
		acted = true
		rec := state.GuardAction{At: tx.Now(), Rule: g.Rule.Name, Scope: g.Scope, Condition: g.Condition() + " for " + g.Rule.For,
			Observed: f.observed, Unit: unit, Count: f.count, WindowSecs: f.window.Seconds(), Action: g.Rule.Action}
		record := func(id, detail string) error {
			run := tx.Run(nil, id)
			n := *run
			r := rec
			r.Detail = detail
			n.AddGuardAction(r)
			return k.putRun(tx, &n)
		}
		switch {
		case g.Action == "shed":
			targets := []*state.Run{cur}
			if g.Scope == "global" {
				targets = tx.RunsIn(nil, state.RunRunning)
			}
			for _, t := range targets {
				n := *t
				n.ShedPercent = compoundShed(t.ShedPercent, g.Shed)
				detail := fmt.Sprintf("shed %s → %s: %d → %d active koi", pct(t.ShedPercent), pct(n.ShedPercent), t.EffectiveKoi(), n.EffectiveKoi())
				if err := k.putRun(tx, &n); err != nil {
					if tooLargeRun(err) != "" && g.Scope == "global" { // the other runs shed
						k.stats.reject(k.log, "guardrail: a run's record over the NATS payload limit", err)
						continue
					}
					return err
				}
				if err := record(t.ID, detail); err != nil {
					return err
				}
				if err := tx.Audit(actor, "shed run", t.ID, detail); err != nil {
					return err
				}
				shedRuns = append(shedRuns, t.ID)
			}
		case g.Scope == "global":
			st := wire.Paused
			if g.Action == "stop" {
				st = wire.Stopped
			}
			sw, err := k.setSwitchTx(tx, actor, st)
			if err != nil {
				return err
			}
			controls = append(controls, control(sw.Switch, ""))
			if err := record(cur.ID, fmt.Sprintf("global switch %s at epoch %d", st, sw.Epoch)); err != nil {
				return err
			}
		default:
			st := wire.Paused
			if g.Action == "stop" {
				st = wire.Stopped
			}
			c, _, err := k.setRunStateTx(tx, actor, cur.ID, st)
			if err != nil {
				return err
			}
			controls = append(controls, c)
			if err := record(cur.ID, fmt.Sprintf("run %s at epoch %d", st, c.Epoch)); err != nil {
				return err
			}
		}
		return tx.Audit(actor, "guardrail", cur.ID, text)
	})
	if err != nil || !acted {
		return err
	}
	k.guard.mu.Lock()
	for _, id := range append(shedRuns, f.run.ID) {
		if k.guard.fired[id] == nil {
			k.guard.fired[id] = map[string]time.Time{}
		}
		k.guard.fired[id][g.Scope+"\x00"+g.Rule.Name] = now
	}
	k.guard.mu.Unlock()
	for _, c := range controls {
		k.publishControl(c)
	}
	k.Kick()
	k.log.Warn("guardrail fired", "rule", g.Rule.Name, "scope", g.Scope, "run", f.run.ID, "action", g.Rule.Action, "observed", verdict.FormatValue(f.observed, unit))
	k.notify(notify.Notice{Kind: notify.NoticeGuardrail, At: now, Run: f.run.ID, RunName: f.run.Name, Actor: actor,
		Title: fmt.Sprintf("guardrail %q → %s on run %s", g.Rule.Name, g.Rule.Action, f.run.Name), Text: text,
		Fields: map[string]string{"rule": g.Rule.Name, "scope": g.Scope, "action": g.Rule.Action, "observed": verdict.FormatValue(f.observed, unit),
			"condition": g.Condition() + " for " + g.Rule.For}})
	return nil
}

// compoundShed sheds p% of what is still active after old% was shed:
// 50% twice is 75%. The result stays below 100%, as ShedRun requires,
// however often rules compound (in floating point they reach 100).
func compoundShed(old, p float64) float64 {
	return min(100-(100-old)*(100-p)/100, math.Nextafter(100, 0))
}

func pct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}
