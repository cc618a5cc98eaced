package verdict

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// Fidelity judging constants.
const (
	// FidelitySE is how many standard errors a behavior's completed runs
	// may stray from the expected before it is under or over.
	FidelitySE = 4
	// FidelityMinExpected is the fewest expected runs a behavior is
	// judged on: below it a 4 SE band says nothing ("too little exposure
	// to judge").
	FidelityMinExpected = 10
	// FidelityMinStarts is the fewest binned starts a launch's uniformity
	// is tested on, and FidelityAlpha the KS p-value below which its
	// starts are clumped.
	FidelityMinStarts = 20
	FidelityAlpha     = 0.001
	// maxFidelityBehaviors and maxFidelityLaunches bound what a report
	// holds (a run keeps at most 500 metric keys; launches beyond the
	// newest 200 are left out), and MaxFidelityJSON its encoded size: the
	// report record must stay well under NATS's 1 MiB message beside the
	// keys and the snapshot, so a larger verdict drops its reasons, then
	// the behaviors that were within (boundFidelity).
	maxFidelityBehaviors = 500
	maxFidelityLaunches  = 200
	MaxFidelityJSON      = 128 << 10
	// maxNameLen, maxCauseLen and maxSummaryLen clip the text kept.
	maxNameLen    = 200
	maxCauseLen   = 400
	maxSummaryLen = 1000
	// maxSummaryItems is how many problems the summary line names.
	maxSummaryItems = 3
	// maxCauseReasons is how many failure reasons a cause names.
	maxCauseReasons = 3
	// maxHaltReasons is how many halt reasons a behavior keeps.
	maxHaltReasons = 5
)

// FidelityInput is what the fidelity verdict is computed from: the run's
// spec per behavior, its merged metrics, its launches and what the keeper
// knows about the run's life.
type FidelityInput struct {
	// Behaviors are the set's background behaviors (those with a
	// frequency and steps), as the koi schedule them.
	Behaviors []FidelitySpec
	// Snapshot is the run's merged metrics (nil: none); its Exposure the
	// koi-minutes the koi scheduled (nil: not reported).
	Snapshot *metrics.Snapshot
	// KeysFull says the run's metric keys reached the keeper's cap, so a
	// behavior without a series may have run with its key dropped.
	KeysFull bool
	// Launches are the run's launches.
	Launches []*state.Launch
	// Koi is the run's koi (after shedding, if any), Elapsed the seconds
	// the run has run (its duration once ended), TimeScale its time
	// scale (0: 1) and Ramp its koi per second (0: all at once).
	Koi       int
	Elapsed   float64
	TimeScale float64
	Ramp      float64
	// ShedPercent is the share of koi held back at the end; GuardActions
	// what guardrails did to the run; Paused whether the run is paused
	// now.
	ShedPercent  float64
	GuardActions []state.GuardAction
	Paused       bool
}

// FidelitySpec is one background behavior as the spec gives it.
type FidelitySpec struct {
	Name string
	// Key is its metric key (behaviors.Behavior.Key).
	Key       string
	Frequency float64
	// Hourly are its 24 hour-of-day multipliers (nil: flat).
	Hourly []float64
	// HaltReasons are the reasons its steps' halt calls give, when they
	// are literal.
	HaltReasons []string
}

// JudgeFidelity computes a run's fidelity verdict. It is pure: every
// value it reads is bounded or checked here (non-finite exposure is
// treated as unmeasured, offset bins of the wrong length are ignored).
func JudgeFidelity(in FidelityInput) *state.Fidelity {
	f := &state.Fidelity{Behaviors: []state.FidelityBehavior{}}
	var exp *metrics.Exposure
	if in.Snapshot != nil {
		exp = in.Snapshot.Exposure
	}
	if exp != nil {
		f.KoiMinutes = exp.KoiMinutes()
		if !finite(f.KoiMinutes) || f.KoiMinutes < 0 {
			exp, f.KoiMinutes = nil, 0
			f.Notes = append(f.Notes, "the exposure the schools reported is not a finite number of koi-minutes: ignored")
		}
	}
	scale := in.TimeScale
	if !(scale > 0) || !finite(scale) {
		scale = 1
	}
	if in.Koi > 0 && in.Elapsed > 0 && finite(in.Elapsed) {
		f.PlannedKoiMinutes = float64(in.Koi) * in.Elapsed / 60 * scale
	}
	specs := in.Behaviors
	if len(specs) > maxFidelityBehaviors {
		f.Notes = append(f.Notes, fmt.Sprintf("%d behaviors; only the first %d are judged", len(specs), maxFidelityBehaviors))
		specs = specs[:maxFidelityBehaviors]
	}
	dropped := 0
	for _, sp := range specs {
		if in.KeysFull && exp != nil && in.Snapshot.Series[sp.Key] == nil { // exp: a snapshot
			dropped++
		}
		f.Behaviors = append(f.Behaviors, judgeBehavior(sp, in, exp))
	}
	if dropped > 0 {
		f.Notes = append(f.Notes, fmt.Sprintf("%d behaviors have no metric key: the run's keys are at the keeper's cap, so their runs may have been dropped; unmeasured", dropped))
	}
	launches := in.Launches
	if len(launches) > maxFidelityLaunches {
		launches = launches[len(launches)-maxFidelityLaunches:]
	}
	for _, l := range launches {
		if l != nil {
			f.Launches = append(f.Launches, judgeLaunch(l, scale))
		}
	}
	f.Notes = append(f.Notes, runNotes(in, f)...)
	summarize(f, exp != nil)
	for i := range f.Behaviors {
		f.Behaviors[i].Cause = clip(f.Behaviors[i].Cause, maxCauseLen)
	}
	f.Summary = clip(f.Summary, maxSummaryLen)
	boundFidelity(f, MaxFidelityJSON)
	return f
}

// boundFidelity keeps f's JSON within limit bytes: first without the
// behaviors' reasons (their causes still name them), then listing only
// the behaviors that were not within, with a note of how many were.
func boundFidelity(f *state.Fidelity, limit int) {
	if fidelitySizeBound(f) <= limit {
		return // the common case: no encoding needed to know
	}
	size := func() int { b, _ := json.Marshal(f); return len(b) }
	if size() <= limit {
		return
	}
	for i := range f.Behaviors {
		f.Behaviors[i].Reasons, f.Behaviors[i].HaltReasons = nil, nil
	}
	if size() <= limit {
		return
	}
	total := len(f.Behaviors)
	kept := f.Behaviors[:0]
	for _, b := range f.Behaviors {
		if b.Verdict == state.FidelityUnder || b.Verdict == state.FidelityOver {
			kept = append(kept, b)
		}
	}
	f.Behaviors = kept
	for size() > limit-200 && len(f.Behaviors) > 0 { // room for the note
		f.Behaviors = f.Behaviors[:len(f.Behaviors)/2]
	}
	f.Notes = append(f.Notes, fmt.Sprintf("%d of %d behaviors are not listed, to bound the verdict's size; those listed were under or over", total-len(f.Behaviors), total))
}

// fidelitySizeBound is an upper bound of f's JSON size: 400 bytes of
// field names and numbers per behavior, launch and the whole, plus every
// string at 6 bytes a byte (JSON escapes a byte as \u00XX at worst).
func fidelitySizeBound(f *state.Fidelity) int {
	n := 400 + 6*len(f.Summary) + 6*len(f.Verdict)
	for _, s := range f.Notes {
		n += 8 + 6*len(s)
	}
	for _, b := range f.Behaviors {
		n += 400 + 6*(len(b.Behavior)+len(b.Key)+len(b.Verdict)+len(b.Cause))
		for _, r := range b.HaltReasons {
			n += 8 + 6*len(r)
		}
		for _, r := range b.Reasons {
			n += 60 + 6*(len(r.Reason)+len(r.Sample))
		}
	}
	for _, l := range f.Launches {
		n += 400 + 6*(len(l.ID)+len(l.Name)+len(l.Uniformity)+len(l.Note))
	}
	return n
}

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// judgeBehavior compares one behavior's runs with its expected number.
func judgeBehavior(sp FidelitySpec, in FidelityInput, exp *metrics.Exposure) state.FidelityBehavior {
	b := state.FidelityBehavior{Behavior: clip(sp.Name, maxNameLen), Key: clip(sp.Key, maxNameLen), Frequency: sp.Frequency}
	if len(sp.HaltReasons) > 0 {
		b.HaltReasons = sp.HaltReasons[:min(len(sp.HaltReasons), maxHaltReasons)]
	}
	var ss *metrics.SeriesSnapshot
	if in.Snapshot != nil {
		ss = in.Snapshot.Series[sp.Key]
	}
	if ss != nil {
		b.Started = ss.Total()
		b.Completed = ss.Counts[metrics.OK]
		b.Halted = ss.Counts[metrics.Halted]
		b.Canceled = ss.Counts[metrics.Canceled]
		b.Failed = ss.Failures()
		for _, r := range ss.Reasons {
			b.Reasons = append(b.Reasons, state.Reason{Reason: r.Reason, Count: r.Count}) // samples: in the report's keys
			if len(b.Reasons) == maxCauseReasons {
				break
			}
		}
	}
	if exp == nil || (ss == nil && in.KeysFull) {
		b.Verdict = state.FidelityUnmeasured
		return b
	}
	hourly := sp.Hourly
	if len(hourly) != 24 {
		hourly = nil
	}
	mean, variance := exp.Expected(sp.Frequency, hourly)
	if !finite(mean) || !finite(variance) || mean < 0 {
		b.Verdict = state.FidelityUnmeasured
		return b
	}
	variance += boundaryVariance(sp, in)
	b.Expected, b.SE = mean, math.Sqrt(variance)
	if mean < FidelityMinExpected {
		b.Verdict = state.FidelityTooLittle
		return b
	}
	se := max(b.SE, 1) // f = 1 has no Bernoulli variance; counting still has one run of slack
	z := (float64(b.Completed+b.Canceled) - mean) / se
	zs := (float64(b.Started) - mean) / se
	b.Z, b.ZStarted = &z, &zs
	switch {
	case z < -FidelitySE:
		b.Verdict = state.FidelityUnder
		b.Cause = underCause(&b)
	case z > FidelitySE:
		b.Verdict = state.FidelityOver
		b.Cause = fmt.Sprintf("started %d runs, %.0f expected (z %+.1f): more often than the spec asks", b.Started, mean, zs)
	default:
		b.Verdict = state.FidelityWithin
	}
	return b
}

// boundaryVariance is the variance Exposure.Expected leaves out: a koi
// that starts or stops within a minute ran a fraction u of it, and a
// firing in it is a Bernoulli trial of p·u whose variance exceeds the
// p·u − p²·u Expected adds by p²·u(1−u) ≤ p²/4. Each koi has two such
// boundaries (start, stop); pauses and reconnects add more, not counted.
func boundaryVariance(sp FidelitySpec, in FidelityInput) float64 {
	p := sp.Frequency
	if len(sp.Hourly) == 24 {
		m := 0.0
		for _, h := range sp.Hourly {
			m = max(m, h)
		}
		p *= m
	}
	p = min(1, max(0, p))
	if !finite(p) || in.Koi <= 0 {
		return 0
	}
	return float64(in.Koi) * p * p / 2
}

// underCause names why a behavior completed fewer runs than expected:
// its halts (with the reasons its steps halt with), its failures (by
// reason), and whether the koi started it less often than scheduled.
func underCause(b *state.FidelityBehavior) string {
	var parts []string
	type share struct {
		n    uint64
		text string
	}
	var shares []share
	if b.Started > 0 && b.Halted > 0 {
		t := fmt.Sprintf("%s halted", pct(b.Halted, b.Started))
		if len(b.HaltReasons) > 0 {
			t += " (" + strings.Join(b.HaltReasons, "; ") + ")"
		}
		shares = append(shares, share{b.Halted, t})
	}
	if b.Started > 0 && b.Failed > 0 {
		t := fmt.Sprintf("%s failed", pct(b.Failed, b.Started))
		var rs []string
		for _, r := range b.Reasons {
			rs = append(rs, fmt.Sprintf("%s ×%d", r.Reason, r.Count))
		}
		if len(rs) > 0 {
			t += " (" + strings.Join(rs, ", ") + ")"
		}
		shares = append(shares, share{b.Failed, t})
	}
	sort.SliceStable(shares, func(i, j int) bool { return shares[i].n > shares[j].n })
	for _, s := range shares {
		parts = append(parts, s.text)
	}
	if b.ZStarted != nil && *b.ZStarted < -FidelitySE {
		parts = append(parts, fmt.Sprintf("started only %d of %.0f expected (z %+.1f): the koi fired it less often than scheduled (schools short of CPU, or koi stuck in long sequences)",
			b.Started, b.Expected, *b.ZStarted))
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%d completed of %.0f expected", b.Completed+b.Canceled, b.Expected))
	}
	return strings.Join(parts, "; ")
}

// pct formats n/of as a whole percentage ("48%"), "<1%" for a small
// non-zero share.
func pct(n, of uint64) string {
	if of == 0 {
		return "0%"
	}
	p := 100 * float64(n) / float64(of)
	if p > 0 && p < 1 {
		return "<1%"
	}
	return fmt.Sprintf("%.0f%%", p)
}

// judgeLaunch compares a launch's started koi with planned and tests its
// binned start offsets for uniformity over the window (BeginWithinMS at
// time scale scale), once every start is in.
func judgeLaunch(l *state.Launch, scale float64) state.FidelityLaunch {
	fl := state.FidelityLaunch{ID: clip(l.ID, maxNameLen), Name: clip(l.Name, maxNameLen), Planned: l.Count, Started: l.Started, Completed: l.Finished,
		Failed: l.Failed, Cancelled: l.Cancelled}
	bins := make([]uint64, wire.LaunchOffsetBins)
	with, without := 0, 0
	for _, sh := range l.Shares {
		if len(sh.Offsets) != wire.LaunchOffsetBins {
			if sh.Started > 0 {
				without++
			}
			continue
		}
		with++
		for i, c := range sh.Offsets {
			bins[i] += uint64(c)
		}
	}
	var n uint64
	for _, c := range bins {
		n += c
	}
	fl.Starts = int(min(n, math.MaxInt32))
	switch {
	case l.BeginWithinMS <= 0:
		fl.Uniformity = state.FidelityNoWindow
		fl.Note = "begin_within 0: every koi starts at the instant"
		return fl
	case l.State == state.LaunchPending || l.State == state.LaunchRunning:
		fl.Uniformity = state.FidelityUnfinished
		fl.Note = "still starting its koi: the starts are tested once the launch is done"
		return fl
	case l.State == state.LaunchCancelled && l.EndedAt.Before(l.Start.Add(time.Duration(float64(l.BeginWithinMS)*float64(time.Millisecond)/scale))):
		fl.Uniformity = state.FidelityUnfinished
		fl.Note = "cancelled before its window closed: the starts cover part of it"
		return fl
	case with == 0:
		fl.Uniformity = state.FidelityNoOffsets
		if l.Started > 0 {
			fl.Note = "the schools reported no start offsets"
		}
		return fl
	case n < FidelityMinStarts:
		fl.Uniformity = state.FidelityTooFew
		fl.Note = fmt.Sprintf("too few starts to test (%d; at least %d)", n, FidelityMinStarts)
		return fl
	}
	d := KSUniformBinned(bins)
	p := KSPValue(d, float64(n))
	fl.KS, fl.P = &d, &p
	if p < FidelityAlpha {
		fl.Uniformity = state.FidelityClumped
		fl.Note = fmt.Sprintf("starts clumped: KS D %.3f over %d starts, p %.2g < %g", d, n, p, FidelityAlpha)
	} else {
		fl.Uniformity = state.FidelityUniform
	}
	if without > 0 {
		fl.Note = strings.TrimPrefix(fl.Note+fmt.Sprintf("; %d school(s) reported starts without offsets", without), "; ")
	}
	return fl
}

// KSUniformBinned is the Kolmogorov–Smirnov statistic of binned samples
// against the uniform distribution over the bins' range: the largest
// distance between the empirical and the uniform CDF at the bin edges.
// Within a bin the samples' places are unknown, so it is at most the
// statistic of the raw samples, and a p-value from it errs towards
// "uniform". Zero without samples.
func KSUniformBinned(bins []uint64) float64 {
	var n float64
	for _, c := range bins {
		n += float64(c)
	}
	if n == 0 || len(bins) == 0 {
		return 0
	}
	var cum, d float64
	for i, c := range bins {
		cum += float64(c)
		d = max(d, math.Abs(cum/n-float64(i+1)/float64(len(bins))))
	}
	return d
}

// KSPValue is the asymptotic p-value of a one-sample Kolmogorov–Smirnov
// statistic d over n samples, with Stephens' small-sample correction:
// Q(λ) = 2 Σ (−1)^(k−1) exp(−2k²λ²), λ = (√n + 0.12 + 0.11/√n)·d.
func KSPValue(d, n float64) float64 {
	if !(n > 0) || !(d > 0) {
		return 1
	}
	sn := math.Sqrt(n)
	lambda := (sn + 0.12 + 0.11/sn) * d
	if lambda < 0.2 {
		return 1 // the series has not converged yet; Q is 1 to 1e-9 here
	}
	var sum, prev float64
	sign := 1.0
	for k := 1; k <= 100; k++ {
		term := sign * 2 * math.Exp(-2*float64(k*k)*lambda*lambda)
		sum += term
		if math.Abs(term) <= 1e-3*prev || math.Abs(term) <= 1e-8*math.Abs(sum) { // Numerical Recipes' probks
			return min(1, max(0, sum))
		}
		prev = math.Abs(term)
		sign = -sign
	}
	return 1
}

// runNotes says how many of the planned koi-minutes the koi scheduled,
// names the run-wide causes of a shortfall (ramp, shedding, guardrail
// pauses, a pause; else boot, reconnects or koi short of the target) and
// lists the guardrails' actions.
func runNotes(in FidelityInput, f *state.Fidelity) []string {
	var notes []string
	if f.PlannedKoiMinutes > 0 && f.KoiMinutes > 0 {
		n := fmt.Sprintf("the koi scheduled %.0f of the planned %.0f koi-minutes (%.0f%%)", f.KoiMinutes, f.PlannedKoiMinutes, 100*f.KoiMinutes/f.PlannedKoiMinutes)
		if f.KoiMinutes < 0.9*f.PlannedKoiMinutes {
			var why []string
			if in.Ramp > 0 && in.Elapsed > 0 {
				if secs := float64(in.Koi) / in.Ramp; secs > 0.1*in.Elapsed {
					why = append(why, fmt.Sprintf("the ramp took %.0f s of %.0f s", min(secs, in.Elapsed), in.Elapsed))
				}
			}
			if in.ShedPercent > 0 {
				why = append(why, fmt.Sprintf("%g%% of the koi shed", in.ShedPercent))
			}
			pauses := 0
			for _, a := range in.GuardActions {
				if a.Action == "pause" {
					pauses++
				}
			}
			if pauses > 0 {
				why = append(why, fmt.Sprintf("paused %d× by guardrails", pauses))
			}
			if in.Paused {
				why = append(why, "the run is paused")
			}
			if len(why) == 0 {
				why = append(why, "boot, reconnects, pauses or koi short of the target")
			}
			n += ": " + strings.Join(why, ", ") + "; the expected runs count only the minutes the koi scheduled"
		}
		notes = append(notes, n)
	}
	for _, a := range in.GuardActions {
		if len(notes) >= 5 {
			break
		}
		notes = append(notes, fmt.Sprintf("guardrail %q → %s at %s", a.Rule, a.Action, a.At.UTC().Format("15:04:05")))
	}
	return notes
}

// summarize sets the verdict and the one summary line.
func summarize(f *state.Fidelity, measured bool) {
	var problems []string
	judged := 0
	maxZ := -1.0
	for _, b := range f.Behaviors {
		if b.Z != nil {
			judged++
			maxZ = max(maxZ, math.Abs(*b.Z))
		}
		switch b.Verdict {
		case state.FidelityUnder, state.FidelityOver:
			problems = append(problems, fmt.Sprintf("behavior %s %s: %s", b.Behavior, b.Verdict, b.Cause))
		}
	}
	for _, l := range f.Launches {
		if l.KS != nil {
			judged++
		}
		if l.Uniformity == state.FidelityClumped {
			problems = append(problems, fmt.Sprintf("launch %s %q clumped (KS p %.2g)", l.ID, l.Name, *l.P))
		}
	}
	if maxZ >= 0 {
		f.MaxAbsZ = &maxZ
	}
	switch {
	case len(problems) > 0:
		f.Verdict = state.FidelityNotMatched
		more := ""
		if len(problems) > maxSummaryItems {
			more = fmt.Sprintf("; and %d more", len(problems)-maxSummaryItems)
			problems = problems[:maxSummaryItems]
		}
		f.Summary = strings.Join(problems, "; ") + more
	case judged > 0:
		f.Verdict = state.FidelityMatched
		f.Summary = "the load matched its spec"
		var unjudged []string
		if n := countVerdict(f, state.FidelityTooLittle); n > 0 {
			unjudged = append(unjudged, behaviorsN(n, "had too little exposure to judge"))
		}
		if n := countVerdict(f, state.FidelityUnmeasured); n > 0 { // e.g. their metric keys dropped at the cap
			unjudged = append(unjudged, behaviorsN(n, "unmeasured"))
		}
		if len(unjudged) > 0 {
			f.Summary += " (" + strings.Join(unjudged, "; ") + ")"
		}
	case !measured && len(f.Behaviors) > 0:
		f.Verdict = state.FidelityUnjudged
		f.Summary = "no exposure reported: the expected runs cannot be computed"
	default:
		f.Verdict = state.FidelityUnjudged
		f.Summary = "too little exposure to judge"
	}
}

// behaviorsN says "1 behavior …" or "n behaviors …".
func behaviorsN(n int, what string) string {
	if n == 1 {
		return "1 behavior " + what
	}
	return fmt.Sprintf("%d behaviors %s", n, what)
}

func countVerdict(f *state.Fidelity, v string) int {
	n := 0
	for _, b := range f.Behaviors {
		if b.Verdict == v {
			n++
		}
	}
	return n
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
