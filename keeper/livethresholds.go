package keeper

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/metrics"
)

// liveWindow is the window of a live threshold or guardrail of length win
// evaluated at now: whole seconds that have ended only (reports are filed
// under their end on the keeper's clock, so an ended second takes at most
// the reports still in flight), so it ends at the start of the current,
// partly reported second; and it starts no earlier than the first whole
// second after armed. whole says whether it spans all of win (rounded up
// to whole seconds); secs is the span it covers, at most 0 when no whole
// second since armed has ended.
func liveWindow(now, armed time.Time, win time.Duration) (from, to time.Time, secs float64, whole bool) {
	to = now.Truncate(time.Second)
	from = to.Add(-win).Truncate(time.Second)
	first := armed.Truncate(time.Second)
	if first.Before(armed) {
		first = first.Add(time.Second)
	}
	whole = !from.Before(first)
	if !whole {
		from = first
	}
	return from, to, to.Sub(from).Seconds(), whole
}

// liveThresholds evaluates a running run's thresholds over its window and
// returns the failing stretches that start or end; it updates the
// thresholds' views but not their failing stretches (see applyLive).
//
// The window is liveWindow's: the last ThresholdWindowSecs whole seconds,
// none before the run's arming (armed: the latest of its last start, the
// global switch's last change and the keeper's start). Until it is whole a
// threshold is evaluated over the seconds it has — a rate over the span
// they cover — except count and errors, totals over the window that read
// low over part of it: they stay arming. Before a whole second has ended
// every threshold is arming. An arming threshold is not failing.
func (k *Keeper) liveThresholds(run *state.Run, armed, now time.Time) []liveChange {
	ts, _ := parseThresholds(run.Thresholds) // checked at creation
	// A fidelity threshold is judged over the whole run, in its report.
	ts = slices.DeleteFunc(ts, (*verdict.Threshold).IsFidelity)
	if len(ts) == 0 {
		return nil
	}
	win := run.ThresholdWindowSecs
	if win == 0 {
		win = defaultThresholdWindow
	}
	from, to, secs, whole := liveWindow(now, armed, time.Duration(win)*time.Second)
	series := make([]*metrics.SeriesSnapshot, len(ts))
	if secs > 0 {
		for i, t := range ts {
			series[i] = k.series(run.ID, selector(t.Key, true), from, t.WindowEnd(to))
		}
	}
	var out []liveChange
	k.guard.mu.Lock()
	defer k.guard.mu.Unlock()
	m := k.guard.live[run.ID]
	if m == nil {
		m = map[string]*liveState{}
		k.guard.live[run.ID] = m
	}
	for i, t := range ts {
		id := liveID(t.Key, t.Expr)
		ls := m[id]
		if ls == nil {
			ls = &liveState{view: LiveThresholdView{Key: t.Key, Expr: t.Expr, Unit: t.Unit()}}
			m[id] = ls
		}
		ss := series[i]
		ls.view.WindowSecs, ls.view.Observed, ls.view.Count = win, nil, 0
		if ss != nil {
			ls.view.Count = ss.Total()
		}
		failing := false
		var v float64
		switch {
		case secs <= 0 || (!whole && (t.Stat == "count" || t.Stat == "errors")):
			ls.view.State = LiveArming
		default:
			var ok bool
			v, ok = t.Observe(ss, secs)
			switch {
			case !ok:
				ls.view.State = LiveNoData
			case t.Holds(v):
				ls.view.State = LivePass
			default:
				ls.view.State, failing = LiveFail, true
			}
			if ok {
				ls.view.Observed = &v
			}
		}
		switch {
		case failing && ls.view.FailingSince.IsZero():
			out = append(out, liveChange{run: run, key: t.Key, expr: t.Expr, start: true, at: now, observed: verdict.FormatValue(v, t.Unit())})
		case !failing && !ls.view.FailingSince.IsZero():
			out = append(out, liveChange{run: run, key: t.Key, expr: t.Expr, secs: now.Sub(ls.view.FailingSince).Seconds(), at: ls.view.FailingSince})
		}
		ls.view.FailingSecs = 0
		if !ls.view.FailingSince.IsZero() {
			ls.view.FailingSecs = now.Sub(ls.view.FailingSince).Seconds()
		}
	}
	return out
}

// idleRun returns the ends of the failing stretches of a run that stopped
// running (at its end for a stopped run) and marks its thresholds idle;
// the stretches stay open until recorded (applyLive), so a report built
// meanwhile still counts them (openFailure).
func (k *Keeper) idleRun(run *state.Run, now time.Time) []liveChange {
	end := now
	if run.State == state.RunStopped && !run.EndedAt.IsZero() {
		end = run.EndedAt
	}
	var out []liveChange
	k.guard.mu.Lock()
	defer k.guard.mu.Unlock()
	for _, ls := range k.guard.live[run.ID] {
		if !ls.view.FailingSince.IsZero() {
			out = append(out, liveChange{run: run, key: ls.view.Key, expr: ls.view.Expr,
				secs: max(0, end.Sub(ls.view.FailingSince).Seconds()), at: ls.view.FailingSince})
		}
		ls.view.State = LiveIdle
	}
	return out
}

// applyLive applies recorded changes to the in-memory live state: a
// started stretch opens, an ended one closes; then it forgets the live
// state of the stopped runs in forget. Called only after recordLive
// committed the changes.
//
// A report (finishReports) adds openFailure's open stretch to the run's
// recorded seconds, so a stretch stays open here until its end is
// recorded: a report built before the commit counts it as open, one built
// after applyLive as recorded. A report whose store read and openFailure
// straddle the commit and applyLive (microseconds apart) can still count
// it twice (read after the commit, openFailure before applyLive) or miss
// it (read before the commit, openFailure after applyLive).
func (k *Keeper) applyLive(changes []liveChange, forget []string, now time.Time) {
	k.guard.mu.Lock()
	defer k.guard.mu.Unlock()
	for _, c := range changes {
		ls := k.guard.live[c.run.ID][liveID(c.key, c.expr)]
		if ls == nil {
			continue
		}
		switch {
		case c.start:
			ls.view.FailingSince = c.at
			ls.view.FailingSecs = max(0, now.Sub(c.at).Seconds())
		case ls.view.FailingSince.Equal(c.at):
			ls.view.FailingSince, ls.view.FailingSecs = time.Time{}, 0
		}
	}
	for _, id := range forget {
		delete(k.guard.live, id)
	}
}

// recordLive writes the live threshold changes of a pass on their runs
// (one write), audits the failures that start, and notifies them once
// each, after the commit.
func (k *Keeper) recordLive(ctx context.Context, changes []liveChange) error {
	if len(changes) == 0 {
		return nil
	}
	err := k.write(ctx, "recording live thresholds", func(tx *state.Txn) error {
		byRun := map[string]*state.Run{}
		for _, c := range changes {
			n := byRun[c.run.ID]
			if n == nil {
				cur := tx.Run(nil, c.run.ID)
				if cur == nil {
					continue
				}
				cp := *cur
				cp.LiveThresholds = slices.Clone(cur.LiveThresholds)
				n, byRun[c.run.ID] = &cp, &cp
			}
			i := slices.IndexFunc(n.LiveThresholds, func(l state.LiveThreshold) bool { return l.Key == c.key && l.Expr == c.expr })
			if i < 0 {
				n.LiveThresholds = append(n.LiveThresholds, state.LiveThreshold{Key: c.key, Expr: c.expr})
				i = len(n.LiveThresholds) - 1
			}
			lt := &n.LiveThresholds[i]
			if c.start {
				lt.Failures++
				lt.LastFailedAt = c.at
				if err := tx.Audit("keeper", "threshold failing", c.run.ID, fmt.Sprintf("%s %s: %s over the last %ds", c.key, c.expr, c.observed, windowOf(n))); err != nil {
					return err
				}
			} else {
				lt.FailedSecs += c.secs
			}
		}
		for _, n := range byRun {
			// A record that cannot change leaves the other runs' to.
			if _, err := k.putRunOrSkip(tx, n, "live thresholds: a run's record over the NATS payload limit"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.start {
			k.notify(notify.Notice{Kind: notify.NoticeThresholdFailed, At: c.at, Run: c.run.ID, RunName: c.run.Name, Actor: "keeper",
				Title:  fmt.Sprintf("threshold failing on run %s: %s %s", c.run.Name, c.key, c.expr),
				Text:   fmt.Sprintf("observed %s over the last %ds", c.observed, windowOf(c.run)),
				Fields: map[string]string{"key": c.key, "threshold": c.expr, "observed": c.observed}})
		}
	}
	return nil
}

func windowOf(run *state.Run) int {
	if run.ThresholdWindowSecs == 0 {
		return defaultThresholdWindow
	}
	return run.ThresholdWindowSecs
}
