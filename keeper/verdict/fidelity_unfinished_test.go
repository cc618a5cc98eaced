package verdict

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
)

// A launch's starts are tested against uniform over its window only once
// every start is in: while the launch is still starting its koi (the run
// view, polled during the window) or when it was cancelled before its
// window closed, the starts so far fill only the window's first part,
// which is no clumping. A launch cancelled after its window closed (time
// scale applied) has all its starts, and is tested.
func TestLaunchUnfinishedNotTested(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	start := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	half := func(st state.LaunchState, ended time.Duration) *state.Launch {
		l := launchWith(binUniform(r, 300, func() float64 { return r.Float64() / 2 })) // the first 30 s of 60
		l.Start, l.State = start, st
		if ended > 0 {
			l.EndedAt = start.Add(ended)
		}
		return l
	}
	for _, c := range []struct {
		name  string
		l     *state.Launch
		scale float64
		want  string
	}{
		{"running, half way through its window", half(state.LaunchRunning, 0), 1, state.FidelityUnfinished},
		{"cancelled half way through its window", half(state.LaunchCancelled, 30*time.Second), 1, state.FidelityUnfinished},
		// the run stopped after the window (1 s at time scale 60) closed:
		// every start was in, and half the window had none
		{"cancelled after its scaled window", half(state.LaunchCancelled, 2*time.Second), 60, state.FidelityClumped},
		{"done", half(state.LaunchDone, 70*time.Second), 1, state.FidelityClumped},
	} {
		f := JudgeFidelity(FidelityInput{Launches: []*state.Launch{c.l}, TimeScale: c.scale})
		if got := f.Launches[0].Uniformity; got != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, got, f.Launches[0].Note, c.want)
		}
		if c.want == state.FidelityUnfinished && f.Verdict == state.FidelityNotMatched {
			t.Errorf("%s: the run is %s: %s", c.name, f.Verdict, f.Summary)
		}
	}
}
