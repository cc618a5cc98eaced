package keeper

import (
	"context"
	"fmt"
	"math"
	"path"
	"slices"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/wire"
)

// Capacity search: a run with a capacity spec starts at Start koi and,
// every StepSecs of running, looks back over the step. The step HELD when
// no guardrail (the run's or a global one) acted on the run during it, no
// live threshold failed during it and, with Flatten, the key's rate grew
// by at least MinGain × (the first step's rate per koi) per added koi.
// A step that held raises koi by Step (the scale path: audited, schools
// ramp) up to Max; reaching Max with a step that held ends the search, as
// does a step that did not hold or the run stopping. The run's
// CapacityResult records every step (koi, window, rate, error rate, p95,
// held or why not) and Sustained, the largest koi count that held. Then
// the keeper stops the run (then "stop", the default) or scales it back to
// Sustained (then "hold"; a run a guardrail paused stays paused). A step
// in which the run, or the global switch, was paused restarts when it
// resumes. The search evaluates steps in the guard loop, so every step
// should outlast the longest guardrail window by a few seconds (warned at
// creation).

// Limits of a capacity search.
const (
	maxCapacityStepSecs = 24 * 3600
	maxCapacitySteps    = 1000 // keeps the run record small
	capacityActor       = "capacity"
)

// checkCapacity checks a capacity spec; tokens are the target's tokens
// (koi may not exceed them).
func checkCapacity(c *state.CapacitySpec, tokens []string) *Error {
	switch {
	case c.Start < 1:
		return invalid("capacity.start", "%d koi: start with at least 1", c.Start)
	case c.Step < 1:
		return invalid("capacity.step", "%d koi: step by at least 1", c.Step)
	case c.StepSecs < 1 || c.StepSecs > maxCapacityStepSecs:
		return invalid("capacity.step_secs", "%d is outside 1..%d", c.StepSecs, maxCapacityStepSecs)
	case c.Max < c.Start:
		return invalid("capacity.max", "%d is below start (%d)", c.Max, c.Start)
	case c.Then != "" && c.Then != "hold" && c.Then != "stop":
		return invalid("capacity.then", "%q is not hold or stop", c.Then)
	}
	if err := checkKoi("capacity.max", c.Max, tokens); err != nil {
		return err
	}
	if n := (c.Max-c.Start)/c.Step + 1; n > maxCapacitySteps {
		return invalid("capacity.step", "%d koi at a time from %d to %d is %d steps; at most %d", c.Step, c.Start, c.Max, n, maxCapacitySteps)
	}
	if f := c.Flatten; f != nil {
		if err := checkName("capacity.flatten.key", f.Key); err != nil {
			return err
		}
		if _, err := path.Match(f.Key, ""); err != nil {
			return invalid("capacity.flatten.key", "%q is not a valid glob: %v", f.Key, err)
		}
		if math.IsNaN(f.MinGain) || f.MinGain <= 0 || f.MinGain > 1 {
			return invalid("capacity.flatten.min_gain", "%g is outside (0, 1]", f.MinGain)
		}
	}
	return nil
}

// capacityWarnings warns of guardrails whose window is too long for the
// steps to see them fire.
func capacityWarnings(c *state.CapacitySpec, rules []state.GuardrailRule) []string {
	if c == nil {
		return nil
	}
	var out []string
	for i, r := range rules {
		if d, err := time.ParseDuration(r.For); err == nil && d+2*time.Second > time.Duration(c.StepSecs)*time.Second {
			out = append(out, fmt.Sprintf("guardrails[%d]: its window (%s) plus 2 s is longer than a capacity step (%ds): a step may end before it can fire", i, r.For, c.StepSecs))
		}
	}
	return out
}

// capacityKey is the key a step's rate and latency are measured on.
func capacityKey(c *state.CapacitySpec) string {
	if c.Flatten != nil {
		return c.Flatten.Key
	}
	return "api:*"
}

// flattened reports whether a step at koi with rate adds less than
// minGain × the first step's rate per koi per added koi, and says so.
func flattened(steps []state.CapacityStep, koi int, rate, minGain float64) (bool, string) {
	if len(steps) == 0 || steps[0].Koi == 0 {
		return false, ""
	}
	prev := steps[len(steps)-1]
	if koi <= prev.Koi {
		return false, ""
	}
	base := steps[0].Rate / float64(steps[0].Koi)
	gain := (rate - prev.Rate) / float64(koi-prev.Koi)
	if gain >= minGain*base {
		return false, ""
	}
	return true, fmt.Sprintf("flattened: %.3f/s per added koi < %g × %.3f/s per koi of the first step", gain, minGain, base)
}

// capacityPass advances the capacity search of every run that has one
// still going; now is the guard loop's tick.
func (k *Keeper) capacityPass(ctx context.Context, now time.Time) error {
	for _, run := range k.store.Read().Runs(nil) {
		if run.Capacity == nil || run.CapacityResult == nil || run.CapacityResult.Done {
			continue
		}
		if err := k.capacityRun(ctx, run, now); err != nil {
			return err
		}
	}
	return nil
}

// capacityRun looks at one run's current step.
func (k *Keeper) capacityRun(ctx context.Context, run *state.Run, now time.Time) error {
	c, res := run.Capacity, run.CapacityResult
	var broke *state.GuardAction
	for i := range run.GuardActions {
		if a := &run.GuardActions[i]; !a.At.Before(res.StepFrom) {
			broke = a
		}
	}
	sw := k.store.Read().Switch(nil)
	globalOn := sw.State == wire.Running
	// The step's running began at the latest of the run's switch and, once
	// moved, the global switch: a global pause (a person's or a global
	// guardrail's on another run) leaves the run's switch as it was.
	resumed := run.Switch.At
	if sw.Epoch > 0 {
		resumed = latest(resumed, sw.At)
	}
	switch {
	case run.State == state.RunStopped:
		reason := "the run stopped: " + run.EndReason
		if broke != nil {
			reason = guardReason(broke)
		}
		return k.endCapacity(ctx, run, now, reason, false)
	case broke != nil:
		return k.endCapacity(ctx, run, now, guardReason(broke), true)
	case run.State != state.RunRunning || !globalOn:
		return nil // paused (the run or everything): the step restarts on resume
	case resumed.After(res.StepFrom):
		// Resumed after a pause within the step (of the run or of
		// everything): start the step over.
		return k.write(ctx, "restarting a capacity step", func(tx *state.Txn) error {
			cur := tx.Run(nil, run.ID)
			if cur == nil || cur.CapacityResult == nil || cur.CapacityResult.Done {
				return nil
			}
			n := *cur
			r := *cur.CapacityResult
			r.StepFrom = cur.Switch.At
			if gs := tx.Switch(nil); gs.Epoch > 0 {
				r.StepFrom = latest(r.StepFrom, gs.At)
			}
			n.CapacityResult = &r
			return k.putRun(tx, &n)
		})
	case now.Sub(res.StepFrom) < time.Duration(c.StepSecs)*time.Second:
		return nil
	}
	step := k.measureStep(run, now)
	if why := k.failingLive(run, res.StepFrom); why != "" {
		step.Reason = why
	} else if c.Flatten != nil {
		if flat, why := flattened(heldSteps(res.Steps), step.Koi, step.Rate, c.Flatten.MinGain); flat {
			step.Reason = why
		}
	}
	step.Held = step.Reason == ""
	if !step.Held {
		return k.finishCapacity(ctx, run, now, step)
	}
	if run.Koi >= c.Max {
		step.Reason = fmt.Sprintf("reached max (%d koi)", c.Max)
		return k.finishCapacity(ctx, run, now, step)
	}
	next := min(run.Koi+c.Step, c.Max)
	err := k.write(ctx, "raising a capacity step", func(tx *state.Txn) error {
		cur := tx.Run(nil, run.ID)
		if cur == nil || cur.State != state.RunRunning || cur.CapacityResult == nil || cur.CapacityResult.Done {
			return nil
		}
		n := *cur
		r := *cur.CapacityResult
		r.Steps = append(slices.Clone(r.Steps), step)
		r.Sustained, r.StepFrom = step.Koi, tx.Now()
		n.CapacityResult, n.Koi = &r, next
		if err := k.putRun(tx, &n); err != nil {
			return err
		}
		return tx.Audit(capacityActor, "scale run", run.ID, fmt.Sprintf("capacity search: %d koi held (%.1f/s on %s, %.2f%% errors); koi %d → %d",
			step.Koi, step.Rate, step.Key, 100*step.ErrorRate, cur.Koi, next))
	})
	if err != nil {
		return err
	}
	k.Kick()
	return nil
}

// heldSteps returns the steps that held.
func heldSteps(steps []state.CapacityStep) []state.CapacityStep {
	var out []state.CapacityStep
	for _, s := range steps {
		if s.Held {
			out = append(out, s)
		}
	}
	return out
}

func guardReason(a *state.GuardAction) string {
	return fmt.Sprintf("guardrail %q: %s was %s → %s", a.Rule, a.Condition, verdict.FormatValue(a.Observed, a.Unit), a.Action)
}

// measureStep measures the current step of a run up to now.
func (k *Keeper) measureStep(run *state.Run, now time.Time) state.CapacityStep {
	res := run.CapacityResult
	key := capacityKey(run.Capacity)
	step := state.CapacityStep{Koi: run.Koi, From: res.StepFrom, To: now, Key: key}
	// Whole seconds after the step began (the first is the ramp's).
	from := res.StepFrom.Truncate(time.Second).Add(time.Second)
	to := now.Truncate(time.Second)
	if !to.After(from) {
		to = from.Add(time.Second)
	}
	snap, _ := k.agg.window(run.ID, from, to)
	if ss := matching(snap, key); ss != nil {
		step.Count = ss.Total()
		step.Rate = float64(step.Count) / to.Sub(from).Seconds()
		if step.Count > 0 {
			step.ErrorRate = float64(ss.Failures()) / float64(step.Count)
		}
		if d, ok := ss.Quantile(0.95); ok {
			p := ms(d)
			step.P95 = &p
		}
	}
	return step
}

// failingLive names a live threshold of run failing now or since from.
func (k *Keeper) failingLive(run *state.Run, from time.Time) string {
	for _, lt := range run.LiveThresholds {
		if !lt.LastFailedAt.Before(from) {
			return fmt.Sprintf("threshold %s %s failed live", lt.Key, lt.Expr)
		}
	}
	k.guard.mu.Lock()
	defer k.guard.mu.Unlock()
	for _, ls := range k.guard.live[run.ID] {
		if ls.view.State == LiveFail && ls.view.Observed != nil {
			return fmt.Sprintf("threshold %s %s failing live: %s", ls.view.Key, ls.view.Expr, verdict.FormatValue(*ls.view.Observed, ls.view.Unit))
		}
	}
	return ""
}

// endCapacity ends a search whose current step broke (or whose run
// stopped) for reason.
func (k *Keeper) endCapacity(ctx context.Context, run *state.Run, now time.Time, reason string, act bool) error {
	step := k.measureStep(run, now)
	if run.State == state.RunStopped && !run.EndedAt.IsZero() {
		step.To = run.EndedAt
	}
	step.Reason = reason
	if !act {
		return k.finishCapacityAs(ctx, run, now, step, false)
	}
	return k.finishCapacity(ctx, run, now, step)
}

// finishCapacity records the last step and the result, then stops the
// run or holds it at the sustained count.
func (k *Keeper) finishCapacity(ctx context.Context, run *state.Run, now time.Time, step state.CapacityStep) error {
	return k.finishCapacityAs(ctx, run, now, step, true)
}

func (k *Keeper) finishCapacityAs(ctx context.Context, run *state.Run, now time.Time, step state.CapacityStep, act bool) error {
	var ctl *wire.Control
	var res state.CapacityResult
	done := false
	err := k.write(ctx, "ending a capacity search", func(tx *state.Txn) error {
		ctl, done = nil, false
		cur := tx.Run(nil, run.ID)
		if cur == nil || cur.CapacityResult == nil || cur.CapacityResult.Done {
			return nil
		}
		done = true
		n := *cur
		res = *cur.CapacityResult
		res.Steps = append(slices.Clone(res.Steps), step)
		if step.Held {
			res.Sustained = step.Koi
		}
		res.Done, res.Reason = true, step.Reason
		n.CapacityResult = &res
		then := cur.Capacity.Then
		detail := fmt.Sprintf("capacity search done: %d koi sustained; step of %d koi: %s", res.Sustained, step.Koi, step.Reason)
		switch {
		case !act || !cur.Active():
		case then == "hold" && res.Sustained > 0:
			detail += fmt.Sprintf("; holding at %d koi", res.Sustained)
			n.Koi = res.Sustained
		default:
			detail += "; stopping the run"
			c, err := k.stopRun(tx, &n, capacityActor, fmt.Sprintf("capacity search done: %d koi sustained", res.Sustained), k.liveSchools(&tx.Reader, tx.Now()))
			if err != nil {
				return err
			}
			ctl = &c
			return tx.Audit(capacityActor, "capacity search", run.ID, detail)
		}
		if err := k.putRun(tx, &n); err != nil {
			return err
		}
		return tx.Audit(capacityActor, "capacity search", run.ID, detail)
	})
	if err != nil || !done {
		return err
	}
	if ctl != nil {
		k.publishControl(*ctl)
	}
	k.Kick()
	k.notify(notify.Notice{Kind: notify.NoticeCapacity, At: now, Run: run.ID, RunName: run.Name, Actor: capacityActor,
		Title:  fmt.Sprintf("capacity search on run %s: %d koi sustained", run.Name, res.Sustained),
		Text:   fmt.Sprintf("%d steps; the last (%d koi): %s", len(res.Steps), step.Koi, step.Reason),
		Fields: map[string]string{"sustained": fmt.Sprint(res.Sustained), "reason": step.Reason}})
	return nil
}
