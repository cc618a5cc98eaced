package koi_test

import (
	"context"
	"math"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// The aggregate rate of a swarm, second by second: from a run's first
// second and from the instant of a resume, the koi call at the spec rate.
// Both tests run the koi in a synctest bubble behind a bubbleTransport (see
// TestFrequencyOverRealSockets): each call carries the instant the koi's
// schedule planned it for, so a busy machine makes them slower, not wrong.
// Time scale 1: a behavior minute is a real minute of the bubble's clock.

// rateSet has two scheduled behaviors, one called in every koi-minute and
// one in half of them: together 1.5 calls per koi-minute.
const rateSet = `{"behaviors": {
  "always": {"frequency": 1,   "steps": [{"request": {"type": "api", "method": "always"}}]},
  "half":   {"frequency": 0.5, "steps": [{"request": {"type": "api", "method": "half"}}]}}}`

var rateFreqs = []float64{1, 0.5}

// rateBounds returns the mean number of calls n koi make in a window of d
// (at most a minute) that lies wholly after their schedules began, and its
// standard error. Each behavior of frequency f is called in the window with
// probability f·d/minute, independently per koi (one Bernoulli per koi, or
// two when the window straddles the koi's minute boundary); the variance is
// bounded by the mean, which the SE uses.
func rateBounds(n int, d, minute time.Duration) (mean, se float64) {
	for _, f := range rateFreqs {
		mean += float64(n) * f * float64(d) / float64(minute)
	}
	return mean, math.Sqrt(mean)
}

// callsIn counts the calls sent in [from, from+d).
func callsIn(calls []sentCall, from time.Time, d time.Duration) int {
	var c int
	for _, call := range calls {
		if !call.At.Before(from) && call.At.Before(from.Add(d)) {
			c++
		}
	}
	return c
}

// checkRate fails the test when the calls in [from, from+d) are more than
// 4 SE above the spec rate's mean or, with below set, more than 4 SE below.
func checkRate(t *testing.T, what string, calls []sentCall, from time.Time, d time.Duration, n int, minute time.Duration, below bool) {
	t.Helper()
	got := callsIn(calls, from, d)
	mean, se := rateBounds(n, d, minute)
	t.Logf("%s: %d calls in %v, spec rate %.1f ± %.1f (SE)", what, got, d, mean, se)
	if float64(got) > mean+4*se {
		t.Errorf("%s: %d calls in %v, more than 4 SE above the spec rate's %.1f (SE %.1f)", what, got, d, mean, se)
	}
	if below && float64(got) < mean-4*se {
		t.Errorf("%s: %d calls in %v, more than 4 SE below the spec rate's %.1f (SE %.1f)", what, got, d, mean, se)
	}
}

// A run's first ten seconds are at the spec rate, each second on its own:
// a koi's first behavior minute begins when its schedule starts (a warm
// start), not at a random phase up to a minute later.
func TestRateFromFirstSecond(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, rateSet)
	const n = 1000
	bt := newBubbleTransport(t, 64)
	var (
		start  time.Time
		minute time.Duration
	)
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), HTTPClient: &http.Client{Transport: bt}})
		minute = rt.Minute()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		start = time.Now()
		for i := range n {
			k := rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, 1)
			wg.Add(1)
			go func() { defer wg.Done(); k.Run(ctx) }()
		}
		time.Sleep(10 * time.Second)
		cancel()
		wg.Wait()
	})
	calls := bt.calls()
	for s := range 10 {
		checkRate(t, "second "+itoa(s+1), calls, start.Add(time.Duration(s)*time.Second), time.Second, n, minute, true)
	}
	checkRate(t, "first 10 s", calls, start, 10*time.Second, n, minute, true)
}

// Resume keeps each koi's minute grid: nothing is sent while paused, the
// firings planned for the pause are dropped (no burst at the resume), the
// rate is the spec rate from the resume's first second, and no koi calls a
// behavior twice in one of its minutes. Two pauses: one shorter than a
// minute (most koi resume in the minute they paused in, whose plan they
// keep) and one of 150 s (every koi resumes in a later minute and plans it
// afresh). The koi's schedules start spread over the first minute, so
// their grids do not line up.
func TestResumeKeepsPhase(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, rateSet)
	const n = 1000
	bt := newBubbleTransport(t, 64)
	type span struct{ from, to time.Time }
	var (
		minute  time.Duration
		start   time.Time
		pauses  []span
		stop    time.Time
		origins = make([]time.Time, n)
	)
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), HTTPClient: &http.Client{Transport: bt}})
		minute = rt.Minute()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		kois := make([]*koi.Koi, n)
		start = time.Now()
		for i := range kois {
			kois[i] = rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * minute / n)
				kois[i].Run(ctx)
			}()
		}
		pause := func(at time.Time, d time.Duration) {
			time.Sleep(time.Until(at))
			p := span{from: time.Now()}
			for _, k := range kois {
				k.Pause()
			}
			time.Sleep(d)
			p.to = time.Now()
			for _, k := range kois {
				k.Resume()
			}
			pauses = append(pauses, p)
		}
		pause(start.Add(100*time.Second+300*time.Millisecond), 20*time.Second)
		pause(time.Now().Add(30*time.Second+400*time.Millisecond), 150*time.Second)
		time.Sleep(70 * time.Second)
		stop = time.Now()
		cancel()
		wg.Wait()
		for i, k := range kois {
			origins[i] = k.MinuteOrigin()
		}
	})
	calls := bt.calls()

	for i, p := range pauses {
		what := "pause " + itoa(i+1)
		for _, c := range calls {
			if c.At.After(p.from) && c.At.Before(p.to) {
				t.Errorf("%s: %s called %v into the pause", what, c.Method, c.At.Sub(p.from))
			}
		}
		// A herd would land in the resume's first instants.
		checkRate(t, what+", first 250 ms after the resume", calls, p.to, 250*time.Millisecond, n, minute, false)
		checkRate(t, what+", first second after the resume", calls, p.to, time.Second, n, minute, true)
		checkRate(t, what+", first 5 s after the resume", calls, p.to, 5*time.Second, n, minute, true)
	}

	// Every koi's "always" calls on its own minute grid: one in each
	// minute outside the pauses, at most one in a minute a pause cut.
	token := make(map[string]int, n)
	for i := range n {
		token[tokenOf(i)] = i
	}
	perMinute := make([]map[int]int, n)
	for _, c := range calls {
		if c.Method != "always" {
			continue
		}
		i := token[c.Token]
		m := int(c.At.Sub(origins[i]) / minute)
		if c.At.Before(origins[i]) {
			t.Fatalf("koi %d called before its first minute", i)
		}
		if perMinute[i] == nil {
			perMinute[i] = map[int]int{}
		}
		perMinute[i][m]++
	}
	var whole, twice, missed int
	for i, origin := range origins {
		if origin.IsZero() {
			t.Fatalf("koi %d never started its schedule", i)
		}
		for m := 0; !origin.Add(time.Duration(m+1) * minute).After(stop); m++ {
			from, to := origin.Add(time.Duration(m)*minute), origin.Add(time.Duration(m+1)*minute)
			cut := false
			for _, p := range pauses {
				cut = cut || (from.Before(p.to) && to.After(p.from))
			}
			switch c := perMinute[i][m]; {
			case c > 1:
				twice++
			case c == 0 && !cut:
				missed++
			}
			if !cut {
				whole++
			}
		}
	}
	t.Logf("%d whole koi-minutes outside the pauses", whole)
	if twice > 0 || missed > 0 {
		t.Errorf("f=1: %d koi-minutes with two calls or more, %d whole koi-minutes without a call (of %d); want one in each", twice, missed, whole)
	}
}
