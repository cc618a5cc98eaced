package koi_test

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

// Heavy koi of a frequent behavior fire it every minute: with activity
// spread wide (lognormal, sigma 1) a behavior of frequency 0.6 has p =
// min(1, activity × 0.6) clipped for about one koi in six. The exposure
// still predicts its runs within 4 SE (Expected treats each activity
// class on its own); the hour sums alone, which ignore the clip, would
// be off by many SE.
func TestExposurePredictsClippedRuns(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {
  "heavy": {"frequency": 0.6, "steps": [{"request": {"type": "api", "method": "heavy"}}]},
  "light": {"frequency": 0.05, "steps": [{"request": {"type": "api", "method": "light"}}]}}}`)
	const n = 150
	bt := newBubbleTransport(t, 32)
	var (
		got  metrics.Exposure
		snap *metrics.Snapshot
	)
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 60, HTTPClient: &http.Client{Transport: bt}})
		rng := rand.New(rand.NewPCG(29, 3))
		act := behaviors.Activity{Sigma: 1}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		f := &exposureFolder{rt: rt, kois: make([]*koi.Koi, n)}
		for i := range n {
			f.kois[i] = rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, act.Draw(rng))
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * rt.Minute() / n)
				f.kois[i].Run(ctx)
			}()
		}
		time.Sleep(40*time.Second + 300*time.Millisecond)
		cancel()
		wg.Wait()
		f.fold()
		got = f.sum
		snap = rt.Metrics().Snapshot()
	})
	for _, b := range set.Behaviors {
		ss := snap.Series[b.Key]
		if ss == nil {
			t.Fatalf("%s: never ran", b.Key)
		}
		obs := float64(ss.Total())
		mean, variance := got.Expected(b.Frequency, b.Hourly)
		z := (obs - mean) / math.Sqrt(variance)
		var unclipped float64 // the hour sums alone: f × Σ activity × minutes
		for h := range 24 {
			unclipped += b.Frequency * got.Weighted[h]
		}
		zSums := (obs - unclipped) / math.Sqrt(variance)
		t.Logf("%s: observed %.0f runs, expected %.1f (SE %.1f): z = %+.2f; from the hour sums alone %.1f: z = %+.2f",
			b.Key, obs, mean, math.Sqrt(variance), z, unclipped, zSums)
		if math.Abs(z) > 4 {
			t.Errorf("%s: observed %.0f runs, expected %.1f ± %.1f: z = %.2f, beyond 4 SE", b.Key, obs, mean, math.Sqrt(variance), z)
		}
		if b.Name == "heavy" && math.Abs(zSums) < 4 {
			t.Errorf("heavy: the hour sums alone pass too (z = %.2f): the test has no power", zSums)
		}
	}
}
