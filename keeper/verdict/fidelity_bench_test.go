package verdict

import (
	"fmt"
	"testing"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// BenchmarkJudgeFidelity judges a run of 50 and of 500 behaviors (the
// most metric keys a run keeps), with 20 launches: the run view is polled
// every second while a CLI waits on a run, so the verdict must stay cheap.
func BenchmarkJudgeFidelity(b *testing.B) {
	for _, n := range []int{50, 500} {
		b.Run(fmt.Sprintf("behaviors=%d", n), func(b *testing.B) { benchJudge(b, n) })
	}
}

func benchJudge(b *testing.B, behaviors int) {
	in := FidelityInput{Koi: 5000, Elapsed: 3600, TimeScale: 1,
		Snapshot: &metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{}, Exposure: &metrics.Exposure{}}}
	for h := range 24 {
		in.Snapshot.Exposure.Add(h, 1, 12500)
	}
	for i := range behaviors {
		key := fmt.Sprintf("behavior:b%d", i)
		in.Behaviors = append(in.Behaviors, FidelitySpec{Name: fmt.Sprintf("b%d", i), Key: key, Frequency: 0.01,
			HaltReasons: []string{"no current channel"}})
		ss := &metrics.SeriesSnapshot{}
		ss.Counts[metrics.OK], ss.Counts[metrics.Halted] = 2900, 100
		in.Snapshot.Series[key] = ss
	}
	for i := range 20 {
		l := &state.Launch{ID: fmt.Sprintf("l%d", i), BeginWithinMS: 60000, Count: 640, Started: 640}
		offsets := make([]uint32, wire.LaunchOffsetBins)
		for j := range offsets {
			offsets[j] = 10
		}
		l.Shares = []state.Share{{School: "s", Count: 640, Started: 640, Offsets: offsets}}
		in.Launches = append(in.Launches, l)
	}
	b.ReportAllocs()
	for b.Loop() {
		JudgeFidelity(in)
	}
}
