package keeper

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// scheduleLoop runs a scheduler pass every half poll interval (jittered)
// and whenever kicked, until the keeper closes. Half a poll interval keeps
// a dead school's koi moving within lease + one poll.
func (k *Keeper) scheduleLoop() {
	t := time.NewTimer(jitter(k.cfg.PollInterval / 2))
	defer t.Stop()
	for {
		select {
		case <-k.ctx.Done():
			k.checkpointOnClose()
			return
		case <-t.C:
		case <-k.kick:
		}
		if err := k.schedule(k.ctx); err != nil && k.ctx.Err() == nil {
			k.stats.reject(k.log, "scheduler: pass failed", err)
		}
		t.Reset(jitter(k.cfg.PollInterval / 2))
	}
}

// liveSchools returns the schools heard from within the lease, by id.
func (k *Keeper) liveSchools(r *state.Reader, now time.Time) []*state.School {
	var out []*state.School
	for _, s := range r.Schools(nil) {
		if now.Sub(s.LastSeen) <= k.cfg.Lease {
			out = append(out, s)
		}
	}
	return out
}

// schedule is one scheduler pass, in one write: assignments follow runs
// and live schools (once settled after a restart); runs past their
// duration stop; stops not confirmed within the lease flag their late
// schools; launches are planned, started and finished.
//
// No one run's record can fail the pass: every run record it changes is
// fitted under the NATS payload limit (putRun), and a run whose record
// cannot be is left out of the pass as it is (its koi stay where they
// are), counted and logged, while the pass is done again for the others.
func (k *Keeper) schedule(ctx context.Context) error {
	settled := k.settled(time.Now())
	var controls []wire.Control
	var short []shortRun
	var qs []quarantined
	r := k.store.Read()
	for _, l := range r.LaunchesIn(nil, state.LaunchPending) {
		if fm := r.Formation(nil, l.Formation); fm != nil {
			formFactsOf(fm) // parsed here, not in the write, for plan (parsed.go)
		}
	}
	skip := map[string]bool{} // runs whose record cannot be written
	pass := func(tx *state.Txn) error {
		controls, short, qs = nil, nil, nil
		now := tx.Now()
		live := k.liveSchools(&tx.Reader, now)
		// Runs past their duration stop first, so they free capacity.
		for _, run := range tx.ActiveRuns(nil) {
			if skip[run.ID] {
				continue
			}
			if run.DurationMS > 0 && now.Sub(run.StartedAt) >= time.Duration(run.DurationMS)*time.Millisecond {
				c, err := k.stopRun(tx, run, "keeper", "duration elapsed", live)
				if err != nil {
					return err
				}
				controls = append(controls, c)
			}
		}
		runs := tx.ActiveRuns(nil)
		if !settled {
			runs = nil // koi stay where they are until their schools are back
		}
		slices.SortFunc(runs, func(a, b *state.Run) int {
			return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
		})
		used := map[string]int{}
		active := map[string]bool{}
		for _, run := range runs {
			active[run.ID] = true
			cur := tx.AssignmentsOfRun(nil, run.ID)
			if skip[run.ID] { // as it is, taking what it holds
				for _, c := range cur {
					used[c.School] += c.Count()
				}
				continue
			}
			// Schools lost holding the run's koi count towards its
			// quarantine (which pauses it instead of moving it on).
			q, err := k.noteFailuresTx(tx, lostSchoolFailures(tx, run.ID, cur, live, now))
			if err != nil {
				return err
			}
			qs = append(qs, q...)
			refusing := k.refusing(run.ID, now)
			slots := make([]capSlot, 0, len(live))
			for _, s := range live {
				if _, no := refusing[s.ID]; !no {
					// Stored capacities may predate the wire bounds: clamp.
					slots = append(slots, capSlot{id: s.ID, free: max(0, min(s.Capacity, wire.MaxCapacity)-used[s.ID])})
				}
			}
			koi := run.EffectiveKoi() // less the shed share
			want := planRanges(koi, slots, cur)
			assigned := 0
			wantBy := map[string]*state.Assignment{}
			for i := range want {
				a := &want[i]
				a.Run = run.ID
				if koi > 0 && run.Ramp > 0 && !math.IsInf(run.Ramp, 0) {
					a.Ramp = run.Ramp * float64(a.Count()) / float64(koi)
				}
				used[a.School] += a.Count()
				assigned += a.Count()
				wantBy[a.School] = a
			}
			if assigned < koi {
				short = append(short, shortRun{run.ID, fmt.Sprintf("%s:%d/%d", run.ID, assigned, koi)})
			}
			for _, c := range cur {
				if wantBy[c.School] == nil {
					if err := tx.DeleteAssignment(c); err != nil {
						return err
					}
				}
			}
			for _, a := range wantBy {
				if c := tx.Assignment(nil, a.Run, a.School); c == nil || *c != *a {
					if err := tx.PutAssignment(a); err != nil {
						return err
					}
				}
			}
		}
		for _, a := range tx.Assignments(nil) {
			if settled && !active[a.Run] {
				if err := tx.DeleteAssignment(a); err != nil {
					return err
				}
			}
		}
		if err := k.flagLateStops(tx, now, skip); err != nil {
			return err
		}
		return k.advanceLaunches(tx, now, live)
	}
	err := k.store.Write(ctx, pass)
	for id := tooLargeRun(err); id != "" && !skip[id]; id = tooLargeRun(err) {
		skip[id] = true
		k.stats.reject(k.log, "scheduler: a run's record over the NATS payload limit, left out of the pass", err)
		err = k.store.Write(ctx, pass)
	}
	if err != nil {
		return err
	}
	k.afterQuarantine(qs)
	for _, c := range controls {
		k.publishControl(c)
	}
	if settled {
		k.notePartial(short, time.Now())
	}
	k.forgetOldSeries()
	if err := k.checkpointRuns(ctx); err != nil {
		return err
	}
	k.rollCheckpoints(ctx)
	return k.finishReports(ctx)
}

// forgetOldSeries drops the metrics of runs that ended longer ago than the
// coarse retention (or no longer exist).
func (k *Keeper) forgetOldSeries() {
	r := k.store.Read()
	for _, id := range k.agg.runIDs() {
		run := r.Run(nil, id)
		if run == nil || (!run.Active() && time.Since(run.EndedAt) > coarseSlots*time.Minute) {
			k.agg.forget(id)
		}
	}
}

// settled reports whether the scheduler may move koi: after a restart it
// waits until every school holding koi has polled again (or a lease has
// passed), so that schools that are merely reconnecting keep their koi.
func (k *Keeper) settled(now time.Time) bool {
	if now.Sub(k.opened) >= k.cfg.Lease {
		return true
	}
	r := k.store.Read()
	for _, s := range r.Schools(nil) {
		if s.Status == nil && len(r.AssignmentsOfSchool(nil, s.ID)) > 0 {
			return false
		}
	}
	return true
}

// shortRun is a run the scheduler could not place in full, and how the
// log says it ("run:assigned/wanted").
type shortRun struct{ id, text string }

// notePartial logs runs whose koi do not all fit, when that changes. A run
// counts as partial only once it has been short for a whole poll
// interval: a new run, a scale-up or a school just started is short until
// the schools have polled and taken the work, and that is no news (the
// demo's first scheduler pass ran before its school's first poll and
// warned "0/500").
func (k *Keeper) notePartial(short []shortRun, now time.Time) {
	k.mu.Lock()
	since := k.shortSince
	k.shortSince = make(map[string]time.Time, len(short))
	var partial []string
	for _, s := range short {
		at, ok := since[s.id]
		if !ok {
			at = now
		}
		k.shortSince[s.id] = at
		if now.Sub(at) >= k.cfg.PollInterval {
			partial = append(partial, s.text)
		}
	}
	slices.Sort(partial)
	changed := !slices.Equal(partial, k.partial)
	k.partial = partial
	k.mu.Unlock()
	if changed && len(partial) > 0 {
		k.log.Warn("runs started partially: not enough school capacity (run:assigned/wanted)", "runs", partial)
	} else if changed {
		k.log.Info("every run's koi are assigned")
	}
}

// partialRun reports whether the last scheduler pass could not assign
// all of a run's koi.
func (k *Keeper) partialRun(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.partial {
		if strings.HasPrefix(p, id+":") {
			return true
		}
	}
	return false
}

// capSlot is a live school's capacity free for one run.
type capSlot struct {
	id   string
	free int
}

// planRanges spreads n koi over schools in proportion to their free
// capacity (never more than it), one contiguous index range per school,
// laid out in [0, min(n, Σfree)). Schools keep their order along the index
// line; a school without a range is inserted where the most koi keep their
// school, so only as many koi move as the new shares require.
//
// Its arithmetic cannot overflow whatever a school claimed: n is clamped
// to [0, wire.MaxKoi], each free capacity to [0, wire.MaxCapacity], and
// sums saturate, so the products below stay far inside int64.
func planRanges(n int, slots []capSlot, cur []*state.Assignment) []state.Assignment {
	n = min(max(n, 0), wire.MaxKoi)
	slots = slices.Clone(slots)
	total := 0
	for i := range slots {
		slots[i].free = min(max(slots[i].free, 0), wire.MaxCapacity)
		total = satAdd(total, slots[i].free)
	}
	sum := total
	total = min(n, total)
	if total <= 0 {
		return nil
	}
	curBy := map[string]*state.Assignment{}
	for _, c := range cur {
		curBy[c.School] = c
	}
	// Largest remainder: quota_i = total × free_i / Σfree.
	target := map[string]int{}
	type rem struct {
		id   string
		r    int64
		have int
	}
	var rems []rem
	given := 0
	for _, s := range slots {
		q := int64(total) * int64(s.free) / int64(sum)
		target[s.id] = int(q)
		given += int(q)
		have := 0
		if c := curBy[s.id]; c != nil {
			have = c.Count()
		}
		rems = append(rems, rem{s.id, int64(total)*int64(s.free) - q*int64(sum), have})
	}
	slices.SortFunc(rems, func(a, b rem) int {
		return cmp.Or(cmp.Compare(b.r, a.r), cmp.Compare(b.have, a.have), cmp.Compare(a.id, b.id))
	})
	for i := 0; given < total; i = (i + 1) % len(rems) {
		target[rems[i].id]++
		given++
	}
	// Order along the index line: current holders by their From, then the
	// others inserted where they disturb least.
	var order, fresh []string
	for _, s := range slots {
		if target[s.id] == 0 {
			continue
		}
		if curBy[s.id] != nil {
			order = append(order, s.id)
		} else {
			fresh = append(fresh, s.id)
		}
	}
	slices.SortFunc(order, func(a, b string) int { return cmp.Compare(curBy[a].From, curBy[b].From) })
	kept := func(order []string) int {
		pos, sum := 0, 0
		for _, id := range order {
			t := target[id]
			if c := curBy[id]; c != nil {
				sum += max(0, min(pos+t, c.To)-max(pos, c.From))
			}
			pos += t
		}
		return sum
	}
	for _, id := range fresh {
		if len(order) == 0 || len(curBy) == 0 {
			order = append(order, id)
			continue
		}
		best, bestKept := len(order), -1
		for p := 0; p <= len(order); p++ {
			try := slices.Insert(slices.Clone(order), p, id)
			if kk := kept(try); kk > bestKept {
				best, bestKept = p, kk
			}
		}
		order = slices.Insert(order, best, id)
	}
	out := make([]state.Assignment, 0, len(order))
	pos := 0
	for _, id := range order {
		out = append(out, state.Assignment{School: id, From: pos, To: pos + target[id]})
		pos += target[id]
	}
	return out
}

// flagLateStops marks schools that have not confirmed a stop within the
// lease; runs in skip are left alone.
func (k *Keeper) flagLateStops(tx *state.Txn, now time.Time, skip map[string]bool) error {
	late := func(t *state.StopTrack) *state.StopTrack {
		if t == nil || t.Complete() || len(t.Late) > 0 || now.Sub(t.RequestedAt) < k.cfg.Lease {
			return nil
		}
		n := *t
		for _, s := range t.Expected {
			if _, ok := t.Acks[s]; !ok {
				n.Late = append(n.Late, s)
			}
		}
		return &n
	}
	if g := tx.Switch(nil); g.State == wire.Stopped {
		if t := late(g.Stop); t != nil {
			n := *g
			n.Stop = t
			k.log.Warn("schools did not confirm the global stop within the lease", "schools", t.Late)
			if err := tx.PutSwitch(&n); err != nil {
				return err
			}
		}
	}
	for _, run := range tx.RunsIn(nil, state.RunStopped) {
		if t := late(run.Stop); t != nil && !skip[run.ID] {
			n := *run
			n.Stop = t
			if err := k.putRun(tx, &n); err != nil {
				return err
			}
			k.log.Warn("schools did not confirm a run's stop within the lease", "run", run.ID, "schools", t.Late)
		}
	}
	return nil
}

// satAdd adds two non-negative ints, saturating at math.MaxInt instead of
// wrapping.
func satAdd(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}
