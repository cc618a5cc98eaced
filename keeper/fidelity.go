package keeper

import (
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/metrics"
)

// judgeFidelity judges a run's fidelity over snap, its merged metrics;
// to is the end of the span snap covers (the run's end, or now).
func judgeFidelity(r *state.Reader, run *state.Run, snap *metrics.Snapshot, to time.Time) *state.Fidelity {
	in := fidelityInput(r, run, to)
	in.Snapshot, in.KeysFull = snap, keysAtCap(snap)
	return verdict.JudgeFidelity(in)
}

// keysAtCap says a run's total has as many metric keys as the aggregator
// keeps (maxKeys): a key it lacks may have been dropped.
func keysAtCap(total *metrics.Snapshot) bool { return total != nil && len(total.Series) >= maxKeys }

// fidelityInput builds the fidelity verdict's input, all but the
// snapshot, from what the keeper holds of a run: its behavior set's
// frequencies, its launches and what guardrails did.
func fidelityInput(r *state.Reader, run *state.Run, to time.Time) verdict.FidelityInput {
	in := verdict.FidelityInput{Launches: r.LaunchesOfRun(nil, run.ID),
		Koi: run.Koi, TimeScale: run.TimeScale, Ramp: run.Ramp, ShedPercent: run.ShedPercent,
		GuardActions: run.GuardActions, Paused: run.State == state.RunPaused}
	if run.ShedPercent > 0 {
		in.Koi = int(float64(run.Koi) * (1 - run.ShedPercent/100))
	}
	if !run.StartedAt.IsZero() {
		in.Elapsed = max(0, to.Sub(run.StartedAt).Seconds())
	}
	in.Behaviors = fidelitySpecs(r.BehaviorSet(nil, run.BehaviorSet))
	return in
}

// RunFidelity returns a run's fidelity verdict: the stored report's once
// the run has ended and settled (so it survives a restart), else one
// judged now from the merged metrics; nil for an unknown run.
func (k *Keeper) RunFidelity(id string) *state.Fidelity {
	r := k.store.Read()
	if rep := r.Report(nil, id); rep != nil && rep.Fidelity != nil {
		return rep.Fidelity
	}
	run := r.Run(nil, id)
	if run == nil {
		return nil
	}
	to := time.Now()
	if !run.EndedAt.IsZero() {
		to = run.EndedAt
	}
	in := fidelityInput(r, run, to)
	in.Snapshot, in.KeysFull = k.agg.fidelityTotals(run.ID, in.Behaviors)
	return verdict.JudgeFidelity(in)
}

// fidelityTotals returns what the fidelity verdict reads of a run's
// merged metrics: the behaviors' counts and reasons, without latency
// sketches, the exposure, and whether its keys are at the cap. The run view judges fidelity on every GET,
// every second while a CLI waits on a run; copying the whole total
// (total) would merge every key's sketch under the aggregator's lock.
func (a *aggregator) fidelityTotals(run string, specs []verdict.FidelitySpec) (*metrics.Snapshot, bool) {
	out := &metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{}}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil || rs.total == nil {
		return out, false
	}
	out.Exposure = rs.total.Exposure.Clone()
	for _, sp := range specs {
		if ss := rs.total.Series[sp.Key]; ss != nil {
			out.Series[sp.Key] = &metrics.SeriesSnapshot{Counts: ss.Counts, Reasons: slices.Clone(ss.Reasons)}
		}
	}
	return out, keysAtCap(rs.total)
}

// fidelitySpecs returns a stored set's background behaviors (frequency
// and steps) as the koi schedule them (behaviors.ScheduleOf), with the
// literal reasons their halt calls give. A set that no longer parses has
// none. They are parsed once per set (setFactsOf): the run view is polled
// every second while a CLI waits on a run.
func fidelitySpecs(set *state.BehaviorSet) []verdict.FidelitySpec {
	if set == nil {
		return nil
	}
	return setFactsOf(set).fidelity
}

// haltCall finds `halt "reason"` (or a raw-quoted reason) in a template's
// source.
var haltCall = regexp.MustCompile("\\bhalt\\s+(\"(?:[^\"\\\\]|\\\\.)*\"|`[^`]*`)")

// haltReasons lists the literal reasons a sequence's actions halt with,
// in step order, each once, each bounded like a metrics reason.
func haltReasons(seq *behaviors.Sequence) []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range seq.Steps {
		texts := append(append([]behaviors.Text{}, st.Pre...), st.Post...)
		for _, t := range texts {
			for _, m := range haltCall.FindAllStringSubmatch(t.Src, -1) {
				reason, err := strconv.Unquote(m[1])
				if err != nil {
					continue
				}
				reason = metrics.CleanReason(reason)
				if reason != "" && !seen[reason] {
					seen[reason] = true
					out = append(out, reason)
				}
			}
		}
	}
	return out
}
