package koi_test

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

// exposureSet has three behaviors of known frequency, one with an hourly
// profile (low at even hours, high at odd ones; mean 1). With the koi's
// activities (lognormal, sigma 0.4: at most about 4) no probability is
// clipped at 1, so Exposure.Expected is exact.
func exposureSet() string {
	hourly := make([]string, 24)
	for h := range hourly {
		hourly[h] = map[bool]string{true: "0.4", false: "1.6"}[h%2 == 0]
	}
	return `{"behaviors": {
  "a": {"frequency": 0.15, "steps": [{"request": {"type": "api", "method": "a"}}]},
  "b": {"frequency": 0.05, "steps": [{"request": {"type": "api", "method": "b"}}]},
  "c": {"frequency": 0.1, "hourly": [` + strings.Join(hourly, ",") + `], "steps": [{"request": {"type": "api", "method": "c"}}]}}}`
}

// exposureFolder sums a swarm's exposure the way a school does: the
// runtime's ended spans plus every koi's running span, folded
// periodically.
type exposureFolder struct {
	rt   *koi.Runtime
	kois []*koi.Koi
	sum  metrics.Exposure
}

func (f *exposureFolder) fold() {
	f.rt.TakeExposure(&f.sum)
	for _, k := range f.kois {
		k.FoldExposure(&f.sum)
	}
}

// The statistical test of exposure accounting: N koi with spread
// activities run a set of known frequencies (one with an hourly profile)
// for over two behavior hours at time scale 60, are paused across an hour
// boundary, resumed and stopped; the exposure the runtime and the koi
// report, folded every second as a school does, predicts every
// behavior's observed number of runs (every outcome) within 4 standard
// errors, and its koi-minutes are exactly the time the schedules ran.
// Counting the paused span would be off by far more than 4 SE.
//
// The koi run in a synctest bubble over real sockets (bubbleTransport), so
// a busy machine makes the test slower, never wrong.
func TestExposurePredictsRuns(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, exposureSet())
	const n = 150
	bt := newBubbleTransport(t, 32)
	var (
		got        metrics.Exposure
		snap       *metrics.Snapshot
		minute     time.Duration
		ran, pause time.Duration // summed over the koi: schedule time, paused time
	)
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 60, HTTPClient: &http.Client{Transport: bt}})
		minute = rt.Minute()
		rng := rand.New(rand.NewPCG(18, 1))
		act := behaviors.Activity{Sigma: 0.4}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		f := &exposureFolder{rt: rt, kois: make([]*koi.Koi, n)}
		start := time.Now()
		starts := make([]time.Time, n)
		for i := range n {
			f.kois[i] = rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, act.Draw(rng))
			starts[i] = start.Add(time.Duration(i) * minute / n) // grids spread over a minute
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Until(starts[i]))
				f.kois[i].Run(ctx)
			}()
		}
		folds, done := make(chan struct{}), make(chan struct{})
		go func() { // the school's periodic fold
			defer close(folds)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					f.fold()
				}
			}
		}()
		time.Sleep(150*time.Second + 300*time.Millisecond) // hours 0, 1 and into 2
		pauseFrom := time.Now()
		for _, k := range f.kois {
			k.Pause()
		}
		time.Sleep(47 * time.Second) // across the boundary of hours 2 and 3
		resumeAt := time.Now()
		for _, k := range f.kois {
			k.Resume()
		}
		time.Sleep(50*time.Second + 700*time.Millisecond)
		stop := time.Now()
		cancel()
		wg.Wait()
		close(done)
		<-folds
		f.fold()
		got = f.sum
		snap = rt.Metrics().Snapshot()
		for _, s := range starts {
			ran += pauseFrom.Sub(s) + stop.Sub(resumeAt)
		}
		pause = time.Duration(n) * resumeAt.Sub(pauseFrom)
	})

	wantMinutes := float64(ran) / float64(minute)
	t.Logf("exposure: %.3f koi-minutes (schedules ran %.3f), by hour %.1f", got.KoiMinutes(), wantMinutes, got.Minutes[:6])
	if d := math.Abs(got.KoiMinutes() - wantMinutes); d > 1e-6*wantMinutes {
		t.Errorf("exposure %.6f koi-minutes, the schedules ran %.6f", got.KoiMinutes(), wantMinutes)
	}
	for h := 5; h < 24; h++ {
		if got.Minutes[h] != 0 {
			t.Fatalf("exposure in hour %d, which the run never reached: %+v", h, got.Minutes)
		}
	}
	// The paused span (hours 2–3) counted: every behavior's mean grows by
	// about pause/ran.
	wrong := 1 + float64(pause)/float64(ran)
	for _, b := range set.Behaviors {
		ss := snap.Series[b.Key]
		if ss == nil {
			t.Fatalf("%s: never ran", b.Key)
		}
		obs := float64(ss.Total())
		mean, variance := got.Expected(b.Frequency, b.Hourly)
		z := (obs - mean) / math.Sqrt(variance)
		zWrong := (obs - mean*wrong) / math.Sqrt(variance*wrong)
		t.Logf("%s: observed %d runs, expected %.1f (SE %.1f): z = %+.2f; with the pause counted z would be %+.2f",
			b.Key, ss.Total(), mean, math.Sqrt(variance), z, zWrong)
		if math.Abs(z) > 4 {
			t.Errorf("%s: observed %d runs, expected %.1f ± %.1f: z = %.2f, beyond 4 SE", b.Key, ss.Total(), mean, math.Sqrt(variance), z)
		}
		if math.Abs(zWrong) < 4 {
			t.Errorf("%s: counting the pause would still pass (z = %.2f): the test has no power", b.Key, zWrong)
		}
	}
}

// Exposure at a koi's boundaries: booting contributes nothing, a stop
// mid-minute contributes the fraction run, a pause nothing, and the
// hours follow the koi's minute grid at a high time scale.
func TestExposureBoundaries(t *testing.T) {
	// A set whose only behavior never fires: the schedule runs, nothing is
	// sent. Boot takes one behavior minute (one second at scale 60).
	const quiet = `{"behaviors": {"q": {"frequency": 0, "steps": [{"request": {"type": "api", "method": "q"}}]}},
  "boot": {"steps": [{"pre_actions": ["{{ set \"booted\" true }}"], "delay_after_ms": 60000}]}}`
	minutes := func(e *metrics.Exposure) float64 { return e.KoiMinutes() }
	tests := []struct {
		name  string
		scale float64
		run   func(t *testing.T, k *koi.Koi, fold func() *metrics.Exposure) // with the koi running from time 0
		check func(t *testing.T, e *metrics.Exposure)
	}{
		// Booting (1 s): nothing; then 2.5 s of schedule, stopped
		// mid-minute: 2.5 minutes.
		{"boot then stop mid-minute", 60, func(t *testing.T, k *koi.Koi, fold func() *metrics.Exposure) {
			time.Sleep(900 * time.Millisecond)
			if e := fold(); minutes(e) != 0 {
				t.Errorf("booting koi accrued %v minutes", minutes(e))
			}
			time.Sleep(2600 * time.Millisecond)
		}, func(t *testing.T, e *metrics.Exposure) {
			if got := minutes(e); math.Abs(got-2.5) > 1e-9 {
				t.Fatalf("%v koi-minutes, want 2.5", got)
			}
		}},
		// Paused at 1.25 s for 10 s, resumed for 0.5 s, stopped: 0.75 min.
		{"pause", 60, func(t *testing.T, k *koi.Koi, _ func() *metrics.Exposure) {
			time.Sleep(1250 * time.Millisecond)
			k.Pause()
			time.Sleep(10 * time.Second)
			k.Resume()
			time.Sleep(500 * time.Millisecond)
		}, func(t *testing.T, e *metrics.Exposure) {
			if got := minutes(e); math.Abs(got-0.75) > 1e-9 {
				t.Fatalf("%v koi-minutes, want 0.75", got)
			}
		}},
		// Scale 1000: a behavior minute is 60 ms, an hour 3.6 s. Boot
		// ends at behavior time 00:01, where the koi's minute grid starts;
		// 180.5 minutes later (03:01:30) it stops: hour 0 has the minutes
		// starting 00:01–00:59, hours 1 and 2 sixty each, hour 3 one and a
		// half.
		{"hours at scale 1000", 1000, func(t *testing.T, k *koi.Koi, _ func() *metrics.Exposure) {
			time.Sleep(60*time.Millisecond + 10830*time.Millisecond)
		}, func(t *testing.T, e *metrics.Exposure) {
			want := []float64{59, 60, 60, 1.5, 0}
			for h, w := range want {
				if math.Abs(e.Minutes[h]-w) > 1e-9 {
					t.Fatalf("hour %d: %v minutes, want %v (all: %v)", h, e.Minutes[h], w, e.Minutes[:5])
				}
				if e.Weighted[h] != 2*e.Minutes[h] || e.Squared[h] != 4*e.Minutes[h] {
					t.Fatalf("hour %d: weighted %v, squared %v for activity 2", h, e.Weighted[h], e.Squared[h])
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := parseSet(t, quiet)
			var got metrics.Exposure
			synctest.Test(t, func(t *testing.T) {
				rt := newRuntime(t, koi.RuntimeConfig{Set: set, TimeScale: tt.scale})
				k := rt.New(behaviors.Identity{Index: 1}, 2)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); k.Run(ctx) }()
				f := &exposureFolder{rt: rt, kois: []*koi.Koi{k}}
				tt.run(t, k, func() *metrics.Exposure { f.fold(); return &f.sum })
				cancel()
				<-done
				f.fold()
				got = f.sum
			})
			tt.check(t, &got)
		})
	}
}
