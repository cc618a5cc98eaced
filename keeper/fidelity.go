package keeper

import (
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/metrics"
)

// judgeFidelity builds the fidelity verdict's input from what the keeper
// holds of a run — its behavior set's frequencies, its merged snapshot,
// its launches and what guardrails did — and judges it. to is the end of
// the span the snapshot covers (the run's end, or now).
func judgeFidelity(r *state.Reader, run *state.Run, snap *metrics.Snapshot, to time.Time) *state.Fidelity {
	in := verdict.FidelityInput{Snapshot: snap, Launches: r.LaunchesOfRun(nil, run.ID),
		Koi: run.Koi, TimeScale: run.TimeScale, Ramp: run.Ramp, ShedPercent: run.ShedPercent,
		GuardActions: run.GuardActions, Paused: run.State == state.RunPaused}
	if run.ShedPercent > 0 {
		in.Koi = int(float64(run.Koi) * (1 - run.ShedPercent/100))
	}
	if !run.StartedAt.IsZero() {
		in.Elapsed = max(0, to.Sub(run.StartedAt).Seconds())
	}
	in.Behaviors = fidelitySpecs(r.BehaviorSet(nil, run.BehaviorSet))
	return verdict.JudgeFidelity(in)
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
	snap, _, _ := k.agg.total(run.ID)
	to := time.Now()
	if !run.EndedAt.IsZero() {
		to = run.EndedAt
	}
	return judgeFidelity(r, run, snap, to)
}

// specCache keeps the fidelity specs of the behavior sets judged lately,
// by content hash (a stored set never changes): the run view is polled
// every second while a CLI waits on a run, and parsing a large set each
// time would cost more than the verdict. Bounded by maxSpecCache.
var specCache struct {
	sync.Mutex
	m map[string][]verdict.FidelitySpec
}

const maxSpecCache = 32

// fidelitySpecs returns a stored set's background behaviors (frequency
// and steps) as the koi schedule them (behaviors.ScheduleOf), with the
// literal reasons their halt calls give. A set that no longer parses has
// none.
func fidelitySpecs(set *state.BehaviorSet) []verdict.FidelitySpec {
	if set == nil {
		return nil
	}
	specCache.Lock()
	specs, ok := specCache.m[set.Hash]
	specCache.Unlock()
	if ok {
		return specs
	}
	files := make([]behaviors.File, len(set.Files))
	for i, f := range set.Files {
		files[i] = behaviors.File{Name: f.Name, Data: []byte(f.Content)}
	}
	s, _ := behaviors.Parse(files...)
	if s == nil {
		return nil
	}
	specs = []verdict.FidelitySpec{}
	for _, b := range s.Behaviors {
		if !b.HasFrequency || b.Sequence == nil {
			continue
		}
		specs = append(specs, verdict.FidelitySpec{Name: b.Name, Key: b.Key, Frequency: b.Frequency, Hourly: b.Hourly,
			HaltReasons: haltReasons(b.Sequence)})
	}
	specCache.Lock()
	if specCache.m == nil || len(specCache.m) >= maxSpecCache {
		specCache.m = map[string][]verdict.FidelitySpec{}
	}
	specCache.m[set.Hash] = specs
	specCache.Unlock()
	return specs
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
