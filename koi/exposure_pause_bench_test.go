package koi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

// BenchmarkStopPausesWithExposure is what a global stop costs a school
// of 5,000 running koi before any socket closes: each koi paused in turn
// (School.stopAllLocked), its schedule span ended into the runtime's
// exposure (endExposureLocked), then the school's next report folding
// them all. The figure per op is the whole school's, to set beside the
// stop's one-second promise.
func BenchmarkStopPausesWithExposure(b *testing.B) {
	const n = 5000
	set := parseSet(b, `{"behaviors": {"q": {"frequency": 0, "steps": [{"request": {"type": "api", "method": "q"}}]}}}`)
	rt := newRuntime(b, koi.RuntimeConfig{Set: set, TimeScale: 60, APIBase: "http://127.0.0.1:1/api"})
	kois := make([]*koi.Koi, n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range kois {
		kois[i] = rt.New(behaviors.Identity{Index: i}, 1.5)
		wg.Go(func() { kois[i].Run(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()
	for _, k := range kois { // every schedule running
		for k.MinuteOrigin().IsZero() {
			time.Sleep(time.Millisecond)
		}
	}
	var e metrics.Exposure
	for b.Loop() {
		for _, k := range kois {
			k.Pause()
		}
		rt.TakeExposure(&e)
		for _, k := range kois {
			k.FoldExposure(&e)
		}
		b.StopTimer()
		for _, k := range kois {
			k.Resume()
		}
		b.StartTimer()
	}
	if e.KoiMinutes() <= 0 {
		b.Fatalf("no exposure accounted: %v", e.Minutes)
	}
}
