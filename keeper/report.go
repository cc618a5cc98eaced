package keeper

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
)

// reportSettle is how long after a run's stop is confirmed (or given up
// on) the keeper waits for the schools' last metrics before it writes the
// final report: two default metrics intervals.
const reportSettle = 2 * time.Second

// buildReport makes a run's report from everything merged for it, at
// keeper time now.
func (k *Keeper) buildReport(r *state.Reader, run *state.Run, now time.Time) *state.Report {
	snap, _, _ := k.agg.total(run.ID)
	to := now
	if !run.EndedAt.IsZero() {
		to = run.EndedAt
	}
	rep := &state.Report{Run: run.ID, Name: run.Name, State: run.State, CreatedAt: now, From: run.StartedAt, To: to,
		DurationSecs: max(0, to.Sub(run.StartedAt).Seconds()), EndReason: run.EndReason, Koi: run.Koi,
		Keys: []state.ReportKey{}, Launches: []state.ReportLaunch{}, Websocket: state.ReportWebsocket{Closes: map[string]uint64{}}}
	secs := max(rep.DurationSecs, 1e-9)
	for _, key := range snap.Keys() {
		ss := snap.Series[key]
		rk := state.ReportKey{Key: key, Count: ss.Total(), Failures: ss.Failures(), Samples: ss.Samples(), Outcomes: map[string]uint64{},
			Reasons: reasonsOf(ss)}
		rk.Rate = float64(rk.Count) / secs
		if rk.Count > 0 {
			rk.ErrorRate = float64(rk.Failures) / float64(rk.Count)
		}
		for o, c := range ss.Counts {
			if c > 0 {
				rk.Outcomes[metrics.Outcome(o).String()] = c
			}
		}
		for _, q := range []struct {
			p   float64
			dst **float64
		}{{0.5, &rk.P50}, {0.9, &rk.P90}, {0.95, &rk.P95}, {0.99, &rk.P99}, {1, &rk.Max}} {
			if d, ok := ss.Quantile(q.p); ok {
				ms := float64(d) / float64(time.Millisecond)
				*q.dst = &ms
			}
		}
		rep.Keys = append(rep.Keys, rk)
		switch {
		case key == "ws:connect":
			rep.Websocket.Connects = ss.Counts[metrics.OK]
			rep.Websocket.ConnectFailures = rk.Count - ss.Counts[metrics.OK]
			rep.Websocket.ConnectP95 = rk.P95
		case key == "ws:disconnect":
			rep.Websocket.Drops = rk.Count
		case strings.HasPrefix(key, "ws:close:"):
			rep.Websocket.Closes[strings.TrimPrefix(key, "ws:close:")] = rk.Count
		}
	}
	rep.Websocket.Reconnects = min(rep.Websocket.Drops, rep.Websocket.Connects)
	for _, l := range r.LaunchesOfRun(nil, run.ID) {
		rl := state.ReportLaunch{ID: l.ID, Name: l.Name, State: l.State, Start: l.Start, Planned: l.Count, Started: l.Started,
			Finished: l.Finished, Failed: l.Failed, Cancelled: l.Cancelled,
			Connected: l.Connected, Outcome: l.Outcome, Schools: []state.ReportShare{}, Key: l.SequenceKey()}
		for _, rk := range rep.Keys {
			if l.OwnsKey(rk.Key) {
				rl.Steps = append(rl.Steps, rk)
			}
		}
		if !l.FirstStart.IsZero() {
			rl.SpreadMS = ms(l.LastStart.Sub(l.FirstStart))
			rl.FirstDelayMS = ms(l.FirstStart.Sub(l.Start))
		}
		for _, sh := range l.Shares {
			s := state.ReportShare{School: sh.School, Planned: sh.Count, Started: sh.Started, Finished: sh.Finished,
				Failed: sh.Failed, Cancelled: sh.Cancelled, Error: sh.Error}
			if !sh.FirstStart.IsZero() {
				s.SpreadMS = ms(sh.LastStart.Sub(sh.FirstStart))
			}
			rl.Schools = append(rl.Schools, s)
		}
		rep.Launches = append(rep.Launches, rl)
	}
	sort.Slice(rep.Launches, func(i, j int) bool { return rep.Launches[i].Start.Before(rep.Launches[j].Start) })
	rep.Fidelity = judgeFidelity(r, run, snap, to)
	if len(run.Thresholds) > 0 {
		keys := map[string]*state.ReportKey{}
		for i := range rep.Keys {
			keys[rep.Keys[i].Key] = &rep.Keys[i]
		}
		ts, _ := parseThresholds(run.Thresholds) // checked when the run was created
		passed := true
		for _, t := range ts {
			var res state.ThresholdResult
			if t.IsFidelity() {
				res = t.EvaluateFidelity(rep.Fidelity)
			} else {
				res = t.Evaluate(keys[t.Key], snap.Series[t.Key])
			}
			for _, lt := range run.LiveThresholds {
				if lt.Key == t.Key && lt.Expr == t.Expr {
					res.LiveFailures, res.LiveFailedSecs = lt.Failures, lt.FailedSecs
				}
			}
			res.LiveFailedSecs += k.openFailure(run.ID, t.Key, t.Expr, to) // a stretch the guard loop has not closed yet
			passed = passed && res.Passed
			rep.Thresholds = append(rep.Thresholds, res)
		}
		rep.Passed = &passed
	}
	rep.Capacity, rep.GuardActions, rep.ShedPercent = run.CapacityResult, run.GuardActions, run.ShedPercent
	if enc, err := snap.MarshalBinaryWithin(state.MaxReportSnapshot); err == nil && len(enc) <= state.MaxReportSnapshot {
		rep.Snapshot = enc
	}
	return rep
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// RunReport returns a run's report: the persisted final one once the run
// has ended and settled, else one built now (Final false).
func (k *Keeper) RunReport(id string) (*state.Report, error) {
	r := k.store.Read()
	if rep := r.Report(nil, id); rep != nil {
		return rep, nil
	}
	run := r.Run(nil, id)
	if run == nil {
		return nil, notFound("id", "no run %q", id)
	}
	return k.buildReport(r, run, time.Now()), nil
}

// reportDue reports whether a stopped run's final report may be written
// at now: its stop confirmed (or given up on) and reportSettle passed for
// the schools' last metrics.
func (k *Keeper) reportDue(run *state.Run, now time.Time) bool {
	if run.State != state.RunStopped || run.EndedAt.IsZero() {
		return false
	}
	settled := run.EndedAt
	switch {
	case run.Stop == nil:
	case run.Stop.Complete():
		settled = run.Stop.CompleteAt
	case len(run.Stop.Late) > 0 || now.Sub(run.EndedAt) > 2*k.cfg.Lease:
		settled = run.EndedAt.Add(k.cfg.Lease)
	default:
		return false
	}
	return now.Sub(settled) >= reportSettle
}

// finishReports writes the final report of every stopped run that has
// settled and has none yet: runs that ended while this keeper ran, and
// older ones it holds metrics of or with thresholds. Runs ended longer ago
// than the coarse retention are left.
func (k *Keeper) finishReports(ctx context.Context) error {
	r := k.store.Read()
	now := time.Now()
	var due []*state.Run
	for _, run := range r.RunsIn(nil, state.RunStopped) {
		if r.Report(nil, run.ID) != nil || !k.reportDue(run, now) || now.Sub(run.EndedAt) > coarseSlots*time.Minute {
			continue
		}
		// Runs that ended before this keeper opened get a report only if
		// there is something to say (metrics merged, thresholds to judge).
		if _, _, has := k.agg.total(run.ID); !has && len(run.Thresholds) == 0 && run.EndedAt.Before(k.opened) {
			continue
		}
		due = append(due, run)
	}
	for _, run := range due {
		rep := k.buildReport(r, run, now)
		rep.Final = true
		err := k.write(ctx, "storing the run report", func(tx *state.Txn) error {
			if tx.Report(nil, run.ID) != nil {
				return nil
			}
			if err := tx.PutReport(rep); err != nil {
				return err
			}
			if err := tx.DeleteCheckpoint(run.ID); err != nil {
				return err
			}
			verdict := "no thresholds"
			if rep.Passed != nil && *rep.Passed {
				verdict = "thresholds passed"
			} else if rep.Passed != nil {
				verdict = "THRESHOLDS FAILED"
			}
			return tx.Audit("keeper", "report run", run.ID, fmt.Sprintf("%d metric keys over %.0f s; %s", len(rep.Keys), rep.DurationSecs, verdict))
		})
		if err != nil {
			return err
		}
		k.notify(notify.RunEndedNotice(run, rep))
	}
	return nil
}
