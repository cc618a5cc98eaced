package verdict

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// The p-value follows the Kolmogorov distribution: at a large n the
// corrected λ is √n·d, and Q(λ) has these published values.
func TestKSPValueKnownValues(t *testing.T) {
	const n = 1e10
	for _, c := range []struct {
		lambda, want float64
	}{
		{0.5, 0.9639}, // nearly every uniform sample is this far off
		{1.0, 0.2700},
		{1.36, 0.0494}, // the classic 5% critical value
		{1.63, 0.0098}, // 1%
		{1.95, 0.0010}, // 0.1%: the clumped threshold
		{3.0, 3.05e-8},
	} {
		got := KSPValue(c.lambda/math.Sqrt(n), n)
		if math.Abs(got-c.want) > 0.01*c.want+1e-4*c.want {
			t.Errorf("Q(%.2f) = %.4g, want %.4g", c.lambda, got, c.want)
		}
	}
	if p := KSPValue(0, 100); p != 1 {
		t.Errorf("d 0: p %v, want 1", p)
	}
	if p := KSPValue(0.5, 0); p != 1 {
		t.Errorf("no samples: p %v, want 1", p)
	}
}

// binUniform bins n offsets drawn from dist (a fraction of the window
// each, clipped into the last bin) into wire.LaunchOffsetBins bins.
func binUniform(r *rand.Rand, n int, dist func() float64) []uint32 {
	bins := make([]uint32, wire.LaunchOffsetBins)
	for range n {
		i := min(wire.LaunchOffsetBins-1, int(dist()*wire.LaunchOffsetBins))
		bins[i]++
	}
	return bins
}

func launchWith(bins ...[]uint32) *state.Launch {
	l := &state.Launch{ID: "l1", Name: "herd", BeginWithinMS: 60_000}
	for _, b := range bins {
		n := 0
		for _, c := range b {
			n += int(c)
		}
		l.Shares = append(l.Shares, state.Share{School: "s", Count: n, Started: n, Finished: n, Offsets: b})
		l.Count += n
		l.Started += n
		l.Finished += n
	}
	return l
}

// Uniform starts pass the uniformity test (at α = 0.001, and the binned
// statistic errs towards passing: at most a few of 400 launches may
// fail), while starts clumped in the first 5% of the window, or half of
// them there, fail every time.
func TestLaunchUniformity(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const trials = 400
	failed := 0
	for range trials {
		fl := judgeLaunch(launchWith(binUniform(r, 150, r.Float64), binUniform(r, 150, r.Float64)), 1)
		if fl.Uniformity != state.FidelityUniform {
			failed++
			t.Logf("uniform launch judged %s: %s", fl.Uniformity, fl.Note)
		}
		if fl.Starts != 300 {
			t.Fatalf("starts %d, want 300", fl.Starts)
		}
	}
	if failed > 3 {
		t.Errorf("%d of %d uniform launches failed the test at α %g", failed, trials, FidelityAlpha)
	}
	for _, c := range []struct {
		name string
		dist func() float64
	}{
		{"all in the first 5%", func() float64 { return 0.05 * r.Float64() }},
		{"half in the first 5%", func() float64 {
			if r.IntN(2) == 0 {
				return 0.05 * r.Float64()
			}
			return r.Float64()
		}},
	} {
		for range 50 {
			fl := judgeLaunch(launchWith(binUniform(r, 200, c.dist)), 1)
			if fl.Uniformity != state.FidelityClumped || fl.P == nil || *fl.P >= FidelityAlpha {
				t.Fatalf("%s: judged %s (%s), want clumped", c.name, fl.Uniformity, fl.Note)
			}
		}
	}
}

// Launches that cannot be tested say why; offsets of the wrong length (a
// lying school) are ignored, not indexed.
func TestLaunchUntestable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	few := launchWith(binUniform(r, 19, r.Float64))
	if fl := judgeLaunch(few, 1); fl.Uniformity != state.FidelityTooFew || !strings.Contains(fl.Note, "too few starts to test") {
		t.Errorf("19 starts: %s %q", fl.Uniformity, fl.Note)
	}
	now := launchWith(binUniform(r, 100, func() float64 { return 0 }))
	now.BeginWithinMS = 0
	if fl := judgeLaunch(now, 1); fl.Uniformity != state.FidelityNoWindow {
		t.Errorf("begin_within 0: %s", fl.Uniformity)
	}
	bad := &state.Launch{ID: "l2", BeginWithinMS: 1000, Started: 100, Count: 100,
		Shares: []state.Share{{School: "liar", Count: 100, Started: 100, Offsets: []uint32{100, 1 << 31, 7}}}}
	if fl := judgeLaunch(bad, 1); fl.Uniformity != state.FidelityNoOffsets || fl.Starts != 0 {
		t.Errorf("offsets of length 3: %s, %d starts", fl.Uniformity, fl.Starts)
	}
	mixed := launchWith(binUniform(r, 100, r.Float64))
	mixed.Shares = append(mixed.Shares, state.Share{School: "old", Count: 10, Started: 10})
	if fl := judgeLaunch(mixed, 1); fl.Uniformity != state.FidelityUniform || !strings.Contains(fl.Note, "without offsets") {
		t.Errorf("a school without offsets: %s %q", fl.Uniformity, fl.Note)
	}
}

// simRun simulates a run the way koi schedule: koi koi of lognormal
// activity (σ 0.4, capped so no p clips at 1) over the hours given, one
// Bernoulli trial per behavior per koi-minute of p = activity × f ×
// hourly[h]. It returns the exposure and each behavior's runs.
func simRun(r *rand.Rand, koi int, hours []int, specs []FidelitySpec) (*metrics.Exposure, []uint64) {
	e := &metrics.Exposure{}
	runs := make([]uint64, len(specs))
	for range koi {
		a := min(3, math.Exp(0.4*r.NormFloat64()-0.08))
		for _, h := range hours {
			e.Add(h, a, 60)
			for i, sp := range specs {
				p := a * sp.Frequency
				if sp.Hourly != nil {
					p *= sp.Hourly[h]
				}
				for range 60 {
					if r.Float64() < p {
						runs[i]++
					}
				}
			}
		}
	}
	return e, runs
}

func simSpecs() []FidelitySpec {
	hourly := make([]float64, 24)
	for h := range hourly {
		hourly[h] = 1
	}
	hourly[10], hourly[11] = 0.5, 1.5
	return []FidelitySpec{
		{Name: "history", Key: "behavior:history", Frequency: 0.05},
		{Name: "post", Key: "behavior:post", Frequency: 0.2},
		{Name: "react", Key: "behavior:react", Frequency: 0.02, Hourly: hourly},
	}
}

// snapshotOf builds a run snapshot: each behavior's runs split between
// outcomes by split (which returns OK, Halted and failed counts).
func snapshotOf(e *metrics.Exposure, specs []FidelitySpec, runs []uint64, split func(uint64) (ok, halted, failed uint64)) *metrics.Snapshot {
	s := &metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{}, Exposure: e}
	for i, sp := range specs {
		ss := &metrics.SeriesSnapshot{}
		ok, halted, failed := split(runs[i])
		ss.Counts[metrics.OK], ss.Counts[metrics.Halted], ss.Counts[metrics.Error] = ok, halted, failed
		if failed > 0 {
			ss.Reasons = []metrics.Reason{{Reason: "not_authed", Count: failed}}
		}
		s.Series[sp.Key] = ss
	}
	return s
}

// Matched data (Bernoulli draws per koi-minute, as koi make them) is
// judged within 4 SE nearly always (the chance of |z| > 4 is 6e-5 per
// behavior: at most 2 of 600 judgements may miss), and halved data — half
// the runs halted — is under every time, with the halts named.
func TestFidelityProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	specs := simSpecs()
	specs[1].HaltReasons = []string{"no current channel"}
	const trials = 200
	missed := 0
	var worst float64
	for range trials {
		e, runs := simRun(r, 100, []int{10, 11}, specs)
		f := JudgeFidelity(FidelityInput{Behaviors: specs, Koi: 100, Elapsed: 7200, TimeScale: 1,
			Snapshot: snapshotOf(e, specs, runs, func(n uint64) (uint64, uint64, uint64) { return n, 0, 0 })})
		for _, b := range f.Behaviors {
			if b.Z == nil {
				t.Fatalf("%s: not judged (%s), expected %.1f", b.Behavior, b.Verdict, b.Expected)
			}
			worst = max(worst, math.Abs(*b.Z))
			if b.Verdict != state.FidelityWithin {
				missed++
				t.Logf("%s judged %s: z %.2f", b.Behavior, b.Verdict, *b.Z)
			}
		}
		if missed == 0 && (f.Verdict != state.FidelityMatched || f.Summary != "the load matched its spec") {
			t.Fatalf("matched data: verdict %s, summary %q", f.Verdict, f.Summary)
		}

		halved := JudgeFidelity(FidelityInput{Behaviors: specs, Koi: 100, Elapsed: 7200, TimeScale: 1,
			Snapshot: snapshotOf(e, specs, runs, func(n uint64) (uint64, uint64, uint64) { return n - n/2, n / 2, 0 })})
		for _, b := range halved.Behaviors {
			if b.Verdict != state.FidelityUnder {
				t.Fatalf("halved %s: %s (z %.2f), want under", b.Behavior, b.Verdict, *b.Z)
			}
			if !strings.Contains(b.Cause, "50% halted") {
				t.Fatalf("halved %s: cause %q does not name the halts", b.Behavior, b.Cause)
			}
		}
		if halved.Verdict != state.FidelityNotMatched || !strings.Contains(halved.Summary, "behavior post under: 50% halted (no current channel)") {
			t.Fatalf("halved: %s %q", halved.Verdict, halved.Summary)
		}
	}
	t.Logf("matched data: %d of %d judgements missed; the largest |z| %.2f", missed, trials*len(specs), worst)
	if missed > 2 {
		t.Errorf("%d of %d judgements of matched data were not within 4 SE", missed, trials*len(specs))
	}
}

// The verdict names failures by reason, what it could not judge, and
// why the koi-minutes fell short of the plan.
func TestFidelityCases(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	specs := simSpecs()
	e, runs := simRun(r, 100, []int{10, 11}, specs)
	all := func(n uint64) (uint64, uint64, uint64) { return n, 0, 0 }

	// A failing target: 30% of one behavior's runs failed.
	fail := snapshotOf(e, specs, runs, func(n uint64) (uint64, uint64, uint64) { return n - 3*n/10, 0, 3 * n / 10 })
	f := JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: fail, Koi: 100, Elapsed: 7200})
	if b := f.Behaviors[1]; b.Verdict != state.FidelityUnder || !strings.Contains(b.Cause, "30% failed (not_authed ×") {
		t.Errorf("failing target: %s %q", b.Verdict, b.Cause)
	}
	if b := f.Behaviors[1]; b.ZStarted == nil || math.Abs(*b.ZStarted) > FidelitySE {
		t.Errorf("failing target: the starts were as scheduled, z_started %v", b.ZStarted)
	}

	// Starts short of the schedule: a third of the runs never began.
	short := snapshotOf(e, specs, runs, func(n uint64) (uint64, uint64, uint64) { return 2 * n / 3, 0, 0 })
	f = JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: short, Koi: 100, Elapsed: 7200})
	if b := f.Behaviors[1]; b.Verdict != state.FidelityUnder || !strings.Contains(b.Cause, "fired it less often than scheduled") {
		t.Errorf("starts short: %s %q", b.Verdict, b.Cause)
	}

	// Too many runs: over.
	over := snapshotOf(e, specs, runs, func(n uint64) (uint64, uint64, uint64) { return n + n/3, 0, 0 })
	f = JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: over, Koi: 100, Elapsed: 7200})
	if b := f.Behaviors[1]; b.Verdict != state.FidelityOver {
		t.Errorf("too many runs: %s", b.Verdict)
	}

	// A rare behavior over a short exposure: too little to judge, and the
	// run (with nothing else) is unjudged.
	rare := []FidelitySpec{{Name: "rare", Key: "behavior:rare", Frequency: 0.001}}
	small := &metrics.Exposure{}
	small.Add(3, 1, 500)
	f = JudgeFidelity(FidelityInput{Behaviors: rare, Snapshot: &metrics.Snapshot{Exposure: small}})
	if b := f.Behaviors[0]; b.Verdict != state.FidelityTooLittle || b.Z != nil {
		t.Errorf("rare: %s", b.Verdict)
	}
	if f.Verdict != state.FidelityUnjudged || f.Summary != "too little exposure to judge" {
		t.Errorf("rare: %s %q", f.Verdict, f.Summary)
	}

	// No exposure (schools that do not report it): unmeasured.
	f = JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: &metrics.Snapshot{}})
	if f.Verdict != state.FidelityUnjudged || f.Behaviors[0].Verdict != state.FidelityUnmeasured || !strings.Contains(f.Summary, "no exposure") {
		t.Errorf("no exposure: %s %q", f.Verdict, f.Summary)
	}

	// A lying school's exposure (non-finite) is ignored, not judged on.
	nan := &metrics.Exposure{}
	nan.Minutes[4], nan.Weighted[4] = math.Inf(1), math.NaN()
	f = JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: &metrics.Snapshot{Exposure: nan}})
	if f.Verdict != state.FidelityUnjudged || f.KoiMinutes != 0 || len(f.Notes) == 0 || !strings.Contains(f.Notes[0], "not a finite") {
		t.Errorf("non-finite exposure: %s %v %q", f.Verdict, f.KoiMinutes, f.Notes)
	}

	// Koi-minutes short of the plan are explained, the verdict still
	// counts only the minutes the koi ran.
	f = JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: snapshotOf(e, specs, runs, all), Koi: 200, Elapsed: 7200, Ramp: 0.02,
		GuardActions: []state.GuardAction{{Rule: "health", Action: "pause", At: time.Unix(0, 0)}}})
	if f.Verdict != state.FidelityMatched {
		t.Errorf("half the planned koi: %s %q", f.Verdict, f.Summary)
	}
	if len(f.Notes) < 2 || !strings.Contains(f.Notes[0], "of the planned 24000 koi-minutes (50%): ") || !strings.Contains(f.Notes[0], "ramp took") ||
		!strings.Contains(f.Notes[0], "paused 1× by guardrails") || !strings.Contains(f.Notes[1], `guardrail "health" → pause`) {
		t.Errorf("half the planned koi: notes %q", f.Notes)
	}

	// A clumped launch makes the run not matched even when every
	// behavior is within.
	clumped := launchWith(binUniform(r, 100, func() float64 { return 0.01 * r.Float64() }))
	f = JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: snapshotOf(e, specs, runs, all), Launches: []*state.Launch{clumped}})
	if f.Verdict != state.FidelityNotMatched || !strings.Contains(f.Summary, `launch l1 "herd" clumped (KS p`) {
		t.Errorf("clumped launch: %s %q", f.Verdict, f.Summary)
	}
}

// A huge set cannot make a report record too large for its bucket: at
// most 500 behaviors are judged, text is clipped, and the verdict's JSON
// stays within MaxFidelityJSON, keeping the behaviors that were under.
func TestFidelityBounded(t *testing.T) {
	long := strings.Repeat("n", 5000)
	var specs []FidelitySpec
	snap := &metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{}, Exposure: &metrics.Exposure{}}
	snap.Exposure.Add(12, 1, 1e6)
	for i := range 5000 {
		key := fmt.Sprintf("behavior:%s%d", long, i)
		specs = append(specs, FidelitySpec{Name: long + fmt.Sprint(i), Key: key, Frequency: 0.001,
			HaltReasons: []string{strings.Repeat("h", 64), strings.Repeat("i", 64), strings.Repeat("j", 64)}})
		ss := &metrics.SeriesSnapshot{}
		ss.Counts[metrics.Halted], ss.Counts[metrics.Error] = 400, 300 // of 1000 expected: under
		ss.Reasons = []metrics.Reason{{Reason: strings.Repeat("r", 64), Count: 300, Sample: strings.Repeat("s", 256)}}
		snap.Series[key] = ss
	}
	f := JudgeFidelity(FidelityInput{Behaviors: specs, Snapshot: snap})
	b, _ := json.Marshal(f)
	t.Logf("%d specs: %d behaviors kept, %d bytes of JSON, notes %q", len(specs), len(f.Behaviors), len(b), f.Notes)
	if len(b) > MaxFidelityJSON {
		t.Errorf("the verdict is %d bytes of JSON, over %d", len(b), MaxFidelityJSON)
	}
	if len(f.Behaviors) == 0 || f.Behaviors[0].Verdict != state.FidelityUnder || len(f.Behaviors[0].Behavior) > maxNameLen ||
		len(f.Behaviors[0].Cause) > maxCauseLen || len(f.Summary) > maxSummaryLen {
		t.Errorf("first behavior %+v, summary %d bytes", f.Behaviors[0], len(f.Summary))
	}
	if f.Verdict != state.FidelityNotMatched || !strings.Contains(f.Notes[0], "only the first 500 are judged") {
		t.Errorf("verdict %s, notes %q", f.Verdict, f.Notes)
	}
}

// The size bound that spares encoding the verdict is an upper bound, even
// for names JSON escapes sixfold.
func TestFidelitySizeBound(t *testing.T) {
	z := 1.5
	f := &state.Fidelity{Verdict: state.FidelityNotMatched, Summary: strings.Repeat("<", 900), MaxAbsZ: &z, Notes: []string{"\x01\x02"}}
	for i := range 50 {
		f.Behaviors = append(f.Behaviors, state.FidelityBehavior{Behavior: strings.Repeat("\x7f<&", 60) + fmt.Sprint(i), Key: "behavior:" + strings.Repeat(">", 190),
			Expected: 1e300, SE: -1e-300, Started: math.MaxUint64, Completed: math.MaxUint64, Halted: math.MaxUint64, Failed: math.MaxUint64,
			Canceled: math.MaxUint64, Z: &z, ZStarted: &z, Verdict: state.FidelityUnder, Cause: strings.Repeat("\x00", 400), Frequency: 1e-300,
			HaltReasons: []string{"<>"}, Reasons: []state.Reason{{Reason: "&&", Count: math.MaxUint64, Sample: "<<"}}})
		f.Launches = append(f.Launches, state.FidelityLaunch{ID: strings.Repeat("<", 200), Name: "n", Planned: math.MaxInt, Started: math.MaxInt,
			Completed: math.MaxInt, Failed: math.MaxInt, Cancelled: math.MaxInt, Starts: math.MaxInt, KS: &z, P: &z, Uniformity: "clumped", Note: "<"})
	}
	b, _ := json.Marshal(f)
	if bound := fidelitySizeBound(f); bound < len(b) {
		t.Errorf("bound %d under the real %d bytes", bound, len(b))
	}
}
