package keeper

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// maxLaunchKeys bounds the metric keys a run's launches may add (each
// launch with its own keys adds one for the sequence and one per step),
// well under the aggregator's maxKeys per run. A launch past the budget
// is measured under its formation's shared keys instead.
const maxLaunchKeys = 200

// LaunchSpec is what a caller gives to launch a formation.
type LaunchSpec struct {
	// Formation is a content hash, or a name for its latest version.
	Formation string            `json:"formation"`
	Run       string            `json:"run"`
	Params    map[string]string `json:"params,omitempty"`
	// At is the launch instant; zero means now (in practice three poll
	// intervals from now, so every school hears of it first).
	At time.Time `json:"at,omitzero"`
}

// Launch schedules a formation over a run's connected koi. The per-school
// counts are fixed shortly before the start (immediately when it is
// close) from the koi each school reports connected. The parameters are
// checked against the ones the formation declares (a missing required or
// an undeclared one is refused, naming it; defaults fill in) before
// anything is stored.
func (k *Keeper) Launch(ctx context.Context, actor string, spec LaunchSpec) (*state.Launch, error) {
	start, serr := k.launchStart(spec, time.Now())
	if serr != nil {
		return nil, serr
	}
	if fm := findFormation(k.store.Read(), spec.Formation); fm != nil {
		formFactsOf(fm) // parsed here, not in the write (parsed.go)
	}
	var out *state.Launch
	err := k.write(ctx, "storing the launch", func(tx *state.Txn) error {
		var err error
		out, err = k.launchTx(tx, actor, spec, start)
		return err
	})
	if err != nil {
		return nil, err
	}
	k.Kick()
	return out, nil
}

// launchStart checks what a launch spec says by itself (formation and run
// given, parameters bounded, start time in range) and returns its start.
func (k *Keeper) launchStart(spec LaunchSpec, now time.Time) (time.Time, *Error) {
	if spec.Formation == "" {
		return time.Time{}, invalid("formation", "give a formation hash or name")
	}
	if spec.Run == "" {
		return time.Time{}, invalid("run", "give a run id")
	}
	if len(spec.Params) > formations.MaxParams {
		// bounded here, not only at the schools: a poll reply carrying a
		// launch over their limit would be refused whole by every school
		return time.Time{}, invalid("params", "%d parameters; at most %d", len(spec.Params), formations.MaxParams)
	}
	for key, v := range spec.Params {
		if err := checkName("params", key); err != nil {
			return time.Time{}, err
		}
		if len(v) > 4096 {
			return time.Time{}, invalid("params."+key, "longer than 4096 bytes")
		}
	}
	start := spec.At
	if start.IsZero() {
		start = now.Add(3 * k.cfg.PollInterval)
	}
	switch {
	case start.Before(now.Add(-LaunchGrace)):
		return time.Time{}, invalid("at", "%s is in the past (now %s)", start.Format(time.RFC3339), now.Format(time.RFC3339))
	case start.After(now.Add(MaxLaunchAhead)):
		return time.Time{}, invalid("at", "%s is more than %v ahead", start.Format(time.RFC3339), MaxLaunchAhead)
	}
	return start, nil
}

// launchDoable checks what a launch needs of the state: its formation
// (which must parse, and declare the parameters given), an active run
// with target.api_base if the formation sends api requests, the global
// switch not stopped, and room for adding more open launches. It returns
// the formation, the run and the resolved parameters. It parses the
// formation (formFactsOf) if that was not done yet: called on a read
// before the write, the same call in the write finds it parsed.
func launchDoable(r *state.Reader, spec LaunchSpec, adding int) (*state.Formation, *state.Run, map[string]string, error) {
	fm := findFormation(r, spec.Formation)
	if fm == nil {
		return nil, nil, nil, notFound("formation", "no formation with hash or name %q", spec.Formation)
	}
	run := r.Run(nil, spec.Run)
	if run == nil {
		return nil, nil, nil, notFound("run", "no run %q", spec.Run)
	}
	if !run.Active() {
		return nil, nil, nil, conflict("run %s is %s; launch over a running run", run.ID, run.State)
	}
	if g := r.Switch(nil); g != nil && g.State == wire.Stopped {
		return nil, nil, nil, conflict("everything is stopped (the global switch, by %s); resume before launching", g.By)
	}
	if err := checkLaunchAPIBase(run, fm); err != nil {
		return nil, nil, nil, err
	}
	if open := len(r.LaunchesIn(nil, state.LaunchPending)) + len(r.LaunchesIn(nil, state.LaunchRunning)) + adding; open >= wire.MaxLaunchesPerMessage {
		// Each open launch travels in every poll reply to its
		// schools, and a reply holds at most this many.
		return nil, nil, nil, conflict("%d launches are pending or running, the most the keeper holds at once; cancel some or wait for them to end", open)
	}
	ff := formFactsOf(fm)
	if ff.lite == nil {
		return nil, nil, nil, fmt.Errorf("formation %s no longer parses: %w", fm.Hash, ff.err)
	}
	params, err := ff.lite.ResolveParams(spec.Params)
	if err != nil {
		field := "params"
		var pe *formations.ParamError
		if errors.As(err, &pe) {
			if names := slices.Concat(pe.Missing, pe.Unknown); len(names) > 0 {
				field += "." + names[0] // the first one named; the message names all
			}
		}
		e := invalid(field, "%s", err.Error())
		e.Err = err
		return nil, nil, nil, e
	}
	return fm, run, params, nil
}

// launchTx stores a launch inside a write, refusing what launchDoable
// refuses; start is launchStart's.
func (k *Keeper) launchTx(tx *state.Txn, actor string, spec LaunchSpec, start time.Time) (*state.Launch, error) {
	fm, run, params, err := launchDoable(&tx.Reader, spec, 0)
	if err != nil {
		return nil, err
	}
	l := &state.Launch{ID: newID("launch"), Run: run.ID, Formation: fm.Hash, Name: fm.Name, Params: params,
		Start: start, BeginWithinMS: fm.BeginWithinMS, State: state.LaunchPending, CreatedAt: tx.Now(), CreatedBy: actor}
	l.MetricKey = launchMetricKey(tx, l, fm.Steps)
	if start.Sub(tx.Now()) <= k.planLead() {
		if err := k.plan(tx, l, tx.Now(), k.liveSchools(&tx.Reader, tx.Now())); err != nil {
			return nil, err
		}
	}
	if err := tx.PutLaunch(l); err != nil {
		return nil, err
	}
	return l, tx.Audit(actor, "launch", l.ID, fmt.Sprintf("formation %q (%s) over run %s at %s", fm.Name, fm.Hash, run.ID, start.Format(time.RFC3339Nano)))
}

// CancelLaunch cancels a pending or running launch. Schools that already
// started their koi let those finish their sequence.
func (k *Keeper) CancelLaunch(ctx context.Context, actor, id string) (*state.Launch, error) {
	var out *state.Launch
	err := k.write(ctx, "cancelling the launch", func(tx *state.Txn) error {
		old := tx.Launch(nil, id)
		if old == nil {
			return notFound("id", "no launch %q", id)
		}
		if old.State != state.LaunchPending && old.State != state.LaunchRunning {
			return conflict("launch %s is %s", id, old.State)
		}
		n := *old
		n.State, n.EndedAt, n.Outcome = state.LaunchCancelled, tx.Now(), "cancelled by "+actor
		out = &n
		if err := tx.PutLaunch(&n); err != nil {
			return err
		}
		return tx.Audit(actor, "cancel launch", id, "")
	})
	return out, err
}

// launchMetricKey chooses the key a new launch's sequence is measured
// under: its own, "formation:<name>#<id>", while the run's launches have
// used fewer than maxLaunchKeys keys, else the formation's shared one.
func launchMetricKey(tx *state.Txn, l *state.Launch, steps int) string {
	used := 0
	for _, o := range tx.LaunchesOfRun(nil, l.Run) {
		if o.MetricKey == "" || !strings.Contains(o.MetricKey, "#") {
			continue
		}
		n := 1
		if fm := tx.Formation(nil, o.Formation); fm != nil {
			n += fm.Steps
		}
		used += n
	}
	if used+1+steps > maxLaunchKeys {
		return "formation:" + l.Name
	}
	return "formation:" + l.Name + "#" + l.ID
}

// planLead is how long before its start a launch's per-school counts are
// fixed: as late as possible (the counts follow the koi connected then)
// while leaving every school a poll to hear of it. The scheduler runs every
// half poll, so planning happens between 2 and 1.5 polls before the start.
func (k *Keeper) planLead() time.Duration { return 2 * k.cfg.PollInterval }

// shareSettled reports whether every koi of a share has ended.
func shareSettled(sh state.Share) bool {
	return sh.Count == 0 || (sh.Reported && satAdd(satAdd(sh.Finished, sh.Failed), sh.Cancelled) >= sh.Count)
}

// advanceLaunches plans pending launches that are due, starts them at
// their instant, ends them when every koi has ended (or their schools
// went silent), and cancels those of runs that stopped.
func (k *Keeper) advanceLaunches(tx *state.Txn, now time.Time, live []*state.School) error {
	stopped := false
	if g := tx.Switch(nil); g != nil && g.State == wire.Stopped {
		stopped = true
	}
	for _, st := range []state.LaunchState{state.LaunchPending, state.LaunchRunning} {
		for _, l := range tx.LaunchesIn(nil, st) {
			run := tx.Run(nil, l.Run)
			switch {
			case run == nil || !run.Active():
				if err := cancelLaunchTx(tx, l, now, "the run stopped"); err != nil {
					return err
				}
			case stopped:
				if err := cancelLaunchTx(tx, l, now, "everything was stopped"); err != nil {
					return err
				}
			}
		}
	}
	for _, l := range tx.LaunchesIn(nil, state.LaunchPending) {
		n := *l
		changed := false
		if !n.Planned() && n.Start.Sub(now) <= k.planLead() {
			if err := k.plan(tx, &n, now, live); err != nil {
				return err
			}
			changed = true
		}
		if n.State == state.LaunchPending && n.Planned() && !now.Before(n.Start) {
			n.State = state.LaunchRunning
			changed = true
		}
		if changed {
			if err := tx.PutLaunch(&n); err != nil {
				return err
			}
		}
	}
	alive := make(map[string]bool, len(live))
	for _, s := range live {
		alive[s.ID] = true
	}
	for _, l := range tx.LaunchesIn(nil, state.LaunchRunning) {
		run := tx.Run(nil, l.Run)
		window := time.Duration(l.BeginWithinMS) * time.Millisecond
		if run != nil && run.TimeScale > 0 {
			window = time.Duration(float64(window) / run.TimeScale)
		}
		end := l.Start.Add(window)
		if now.Before(end) {
			continue
		}
		// After the window: a share is over when all its koi ended; a
		// school that never reported within a lease, or that went
		// silent, has its remaining koi counted as cancelled.
		n := *l
		n.Shares = append([]state.Share(nil), l.Shares...)
		var lost []string
		over := true
		for i := range n.Shares {
			sh := &n.Shares[i]
			if shareSettled(*sh) {
				continue
			}
			if (!sh.Reported && !now.Before(end.Add(k.cfg.Lease))) || (sh.Reported && !alive[sh.School]) {
				lost = append(lost, sh.School)
				sh.Cancelled = max(0, sh.Count-sh.Finished-sh.Failed)
				continue
			}
			over = false
		}
		if !over {
			continue
		}
		sumLaunch(&n)
		n.State, n.EndedAt = state.LaunchDone, now
		n.Outcome = launchOutcome(&n)
		if len(lost) > 0 {
			n.Outcome += "; schools " + strings.Join(lost, ", ") + " stopped reporting (their unfinished koi count as cancelled)"
		}
		if err := tx.PutLaunch(&n); err != nil {
			return err
		}
	}
	return nil
}

// launchOutcome sums a launch up in one line.
func launchOutcome(l *state.Launch) string {
	s := fmt.Sprintf("started %d of %d planned koi: %d finished, %d failed, %d cancelled", l.Started, l.Count, l.Finished, l.Failed, l.Cancelled)
	if !l.FirstStart.IsZero() {
		s += fmt.Sprintf("; first %+dms from the launch instant, spread over %v",
			l.FirstStart.Sub(l.Start).Milliseconds(), l.LastStart.Sub(l.FirstStart).Round(time.Millisecond))
	}
	return s
}

// cancelLaunchTx ends a pending or running launch as cancelled because
// its run (or everything) stopped: stopping aborts every sequence, so the
// counts are final at once, every koi that had not finished or failed
// counting as cancelled. Schools' later reports may only move koi from
// cancelled to finished or failed (recordLaunchStatus).
func cancelLaunchTx(tx *state.Txn, l *state.Launch, now time.Time, why string) error {
	if l.State != state.LaunchPending && l.State != state.LaunchRunning {
		return nil
	}
	n := *l
	n.Shares = append([]state.Share(nil), l.Shares...)
	for i := range n.Shares {
		sh := &n.Shares[i]
		sh.Cancelled = max(0, sh.Count-sh.Finished-sh.Failed)
	}
	sumLaunch(&n)
	n.State, n.EndedAt = state.LaunchCancelled, now
	if n.Planned() {
		n.Outcome = "cancelled: " + why + "; " + launchOutcome(&n)
	} else {
		n.Outcome = "cancelled before it was planned: " + why
	}
	return tx.PutLaunch(&n)
}

// cancelRunLaunchesTx cancels the pending and running launches of a run
// (all runs when run is empty) inside the write that stops it, so every
// view shows them ended the moment the stop is.
func cancelRunLaunchesTx(tx *state.Txn, run string, now time.Time, why string) error {
	for _, st := range []state.LaunchState{state.LaunchPending, state.LaunchRunning} {
		for _, l := range tx.LaunchesIn(nil, st) {
			if run != "" && l.Run != run {
				continue
			}
			if err := cancelLaunchTx(tx, l, now, why); err != nil {
				return err
			}
		}
	}
	return nil
}

// sumLaunch recomputes a launch's totals and start span from its shares.
func sumLaunch(n *state.Launch) {
	n.Started, n.Finished, n.Failed, n.Cancelled = 0, 0, 0, 0
	n.FirstStart, n.LastStart = time.Time{}, time.Time{}
	for _, s := range n.Shares {
		n.Started = satAdd(n.Started, s.Started)
		n.Finished = satAdd(n.Finished, s.Finished)
		n.Failed = satAdd(n.Failed, s.Failed)
		n.Cancelled = satAdd(n.Cancelled, s.Cancelled)
		if !s.FirstStart.IsZero() && (n.FirstStart.IsZero() || s.FirstStart.Before(n.FirstStart)) {
			n.FirstStart = s.FirstStart
		}
		if s.LastStart.After(n.LastStart) {
			n.LastStart = s.LastStart
		}
	}
}

// errLaunchCounts is why a school's launch report is refused.
var errLaunchCounts = errors.New("impossible launch counts")

// checkLaunchStatus refuses counts a school cannot have: more koi than
// its share planned, more ended than started plus cancelled, or (once the
// launch has ended) fewer koi accounted for than the keeper already has;
// and start-offset bins the poll check refuses too (wire.CheckLaunchOffsets),
// whatever let them through.
func checkLaunchStatus(ls *wire.LaunchStatus, sh *state.Share, ended bool) error {
	done := satAdd(ls.Finished, ls.Failed)
	switch {
	case ls.Started > sh.Count:
		return fmt.Errorf("%w: %d started of %d planned", errLaunchCounts, ls.Started, sh.Count)
	case satAdd(done, ls.Cancelled) > sh.Count:
		return fmt.Errorf("%w: %d finished + %d failed + %d cancelled of %d planned", errLaunchCounts, ls.Finished, ls.Failed, ls.Cancelled, sh.Count)
	case done > ls.Started:
		return fmt.Errorf("%w: %d finished or failed but %d started", errLaunchCounts, done, ls.Started)
	case ended && satAdd(done, ls.Cancelled) < satAdd(satAdd(sh.Finished, sh.Failed), sh.Cancelled):
		return fmt.Errorf("%w: the launch has ended with %d koi accounted for, the report has %d", errLaunchCounts,
			satAdd(satAdd(sh.Finished, sh.Failed), sh.Cancelled), satAdd(done, ls.Cancelled))
	}
	if err := wire.CheckLaunchOffsets(ls.Offsets, ls.Started); err != nil {
		return fmt.Errorf("%w: start offsets: %w", errLaunchCounts, err)
	}
	return nil
}

// recordLaunchStatus stores what a school says it did with its launches.
// Counts it cannot have are refused (the share keeps its last good counts
// and says why in its error); a report on an ended launch may only settle
// more koi, never reopen them.
func recordLaunchStatus(tx *state.Txn, req *wire.PollRequest) error {
	for _, ls := range req.Launches {
		l := tx.Launch(nil, ls.Launch)
		if l == nil {
			continue
		}
		for i, sh := range l.Shares {
			if sh.School != req.School {
				continue
			}
			ended := l.State != state.LaunchPending && l.State != state.LaunchRunning
			nsh := sh
			if err := checkLaunchStatus(&ls, &sh, ended); err != nil {
				if ended {
					continue // a report from before the school heard of the stop
				}
				nsh.Error = notify.Cut(err.Error(), wire.MaxText)
			} else {
				nsh.Started, nsh.Finished, nsh.Failed, nsh.Cancelled = ls.Started, ls.Finished, ls.Failed, ls.Cancelled
				nsh.Error, nsh.Reported = ls.Error, true
				nsh.FirstStart, nsh.LastStart = ls.FirstStart, ls.LastStart
				nsh.Offsets = ls.Offsets
			}
			if sameShare(nsh, sh) {
				continue
			}
			n := *l
			n.Shares = append([]state.Share(nil), l.Shares...)
			n.Shares[i] = nsh
			sumLaunch(&n)
			if ended && n.Planned() {
				n.Outcome = recount(n.Outcome, &n)
			}
			if err := tx.PutLaunch(&n); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameShare compares shares, times by instant (a decoded time may carry
// another location than the stored one).
func sameShare(a, b state.Share) bool {
	return a.School == b.School && a.Count == b.Count && a.Started == b.Started && a.Finished == b.Finished &&
		a.Failed == b.Failed && a.Cancelled == b.Cancelled && a.Reported == b.Reported && a.Error == b.Error &&
		a.FirstStart.Equal(b.FirstStart) && a.LastStart.Equal(b.LastStart) && slices.Equal(a.Offsets, b.Offsets)
}

// recount replaces the counts in an ended launch's outcome, keeping why
// it ended.
func recount(outcome string, l *state.Launch) string {
	if strings.HasPrefix(outcome, "started ") {
		return launchOutcome(l)
	}
	why, _, _ := strings.Cut(outcome, "; started ")
	return why + "; " + launchOutcome(l)
}

// plan fixes a launch's per-school counts from the connected koi of its
// run on live schools.
func (k *Keeper) plan(tx *state.Txn, l *state.Launch, now time.Time, live []*state.School) error {
	fm := tx.Formation(nil, l.Formation)
	if fm == nil {
		return fmt.Errorf("launch %s: formation %s is gone", l.ID, l.Formation)
	}
	ff := formFactsOf(fm)
	if ff.lite == nil {
		return fmt.Errorf("launch %s: stored formation no longer parses: %w", l.ID, ff.err)
	}
	var schools []formations.School
	for _, s := range live {
		a := tx.Assignment(nil, l.Run, s.ID)
		if s.Status == nil || a == nil {
			continue
		}
		for _, rs := range s.Status.Runs {
			if rs.Run == l.Run && rs.Koi.Connected > 0 {
				// What a school says it has connected counts up to what it
				// holds: one claiming a run it holds none of, or more koi
				// than its share, would take the launch's count (and
				// the other schools' shares) with it.
				schools = append(schools, formations.School{ID: s.ID, Connected: min(rs.Koi.Connected, a.Count())})
			}
		}
	}
	p := ff.lite.PlanLaunch(schools)
	l.PlannedAt, l.Connected, l.Count, l.Shares = now, p.Total, p.Count, nil
	for _, sh := range p.Shares {
		if sh.Count > 0 {
			l.Shares = append(l.Shares, state.Share{School: sh.School, Count: sh.Count})
		}
	}
	if l.Count == 0 {
		l.State, l.EndedAt, l.Outcome = state.LaunchDone, now, "no connected koi in the run: nothing to start"
	}
	return nil
}
