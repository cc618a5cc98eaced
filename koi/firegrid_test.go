package koi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

// gridArrivals runs n koi firing one api call a behavior minute (10 s at
// time scale 6) for d with the given FireGranularity, and returns the
// call arrival times at the server.
func gridArrivals(t *testing.T, n int, d, granularity time.Duration) []time.Time {
	t.Helper()
	var mu sync.Mutex
	var at []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		at = append(at, now)
		mu.Unlock()
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	set := parseSet(t, `{"behaviors": {"ping": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "ping"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api", TimeScale: 6, FireGranularity: granularity})
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		k := rt.New(behaviors.Identity{Index: i}, 1)
		wg.Go(func() { _ = k.Run(ctx) })
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return append([]time.Time(nil), at...)
}

// concentration is the largest share of arrivals whose phase modulo step
// falls in one window of width w (wrapping around).
func concentration(at []time.Time, step, w time.Duration) float64 {
	const bins = 100
	var h [bins]int
	for _, a := range at {
		h[int(time.Duration(a.UnixNano())%step*bins/step)]++
	}
	width := int(w * bins / step)
	best := 0
	for i := range bins {
		c := 0
		for j := range width {
			c += h[(i+j)%bins]
		}
		best = max(best, c)
	}
	return float64(best) / float64(len(at))
}

// Background firings start on the runtime's grid: with a 100 ms step, the
// calls' arrival times modulo 100 ms bunch into one narrow window, where
// firings at their own times spread over the whole step. Both runs share
// the machine's scheduling delays, so the bound is on their difference.
func TestFiringsStartOnTheGrid(t *testing.T) {
	const n, step, window = 300, 100 * time.Millisecond, 30 * time.Millisecond
	run := 5 * time.Second // 300 koi, one call each per 10 s: ~150 calls
	grid := gridArrivals(t, n, run, step)
	exact := gridArrivals(t, n, run, -1)
	if len(grid) < 80 || len(exact) < 80 {
		t.Fatalf("%d and %d calls, want ≥ 80 each", len(grid), len(exact))
	}
	cg, ce := concentration(grid, step, window), concentration(exact, step, window)
	t.Logf("share of calls in the densest %v of each %v: grid %.2f (%d calls), exact %.2f (%d calls)", window, step, cg, len(grid), ce, len(exact))
	// Uniform phases put 0.30 in a window, and the densest of 100 windows
	// of ~140 calls stays under 0.50; on the grid nearly all are in one.
	if ce > 0.5 {
		t.Errorf("exact firings: %.2f of calls in one %v window of the step, want spread (≤ 0.5)", ce, window)
	}
	if cg < ce+0.3 {
		t.Errorf("grid firings: %.2f of calls in one %v window, want ≥ %.2f (exact: %.2f)", cg, window, ce+0.3, ce)
	}
}

// Many koi reading replies at once each see their own: reply buffers are
// recycled, never shared while a koi still reads one.
func TestRecycledReplyBuffersAreNotShared(t *testing.T) {
	pad := strings.Repeat("p", 3000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		fmt.Fprintf(w, `{"ok":true,"pad":%q,"echo":%q}`, pad[:len(pad)-len(r.Form.Get("x"))], r.Form.Get("x"))
	}))
	t.Cleanup(srv.Close)
	set := parseSet(t, `{"behaviors": {"echo": {"frequency": 1, "steps": [{
	  "pre_actions": ["{{ set \"n\" (randAlphaNum 24) }}"],
	  "request": {"type": "api", "method": "echo", "args": {"x": "{{ get \"n\" }}"},
	    "post_actions": ["{{ if ne .echo (get \"n\") }}{{ fail \"another koi's reply\" }}{{ end }}"]}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api", TimeScale: 600})
	tot := newTotals(rt)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 100 {
		k := rt.New(behaviors.Identity{Index: i}, 1)
		wg.Go(func() { _ = k.Run(ctx) })
	}
	wg.Wait()
	s := tot.series(t, "behavior:echo")
	if s.Counts[metrics.OK] < 200 {
		t.Fatalf("echo = %+v, want ≥ 200 calls", s)
	}
	// A reply that was not the koi's fails its post_action (Error); the
	// calls in flight when the run ends time out and do not count.
	if bad := s.Counts[metrics.Error]; bad != 0 {
		t.Errorf("%d of %d calls read a reply that was not theirs: %+v", bad, s.Total(), s)
	}
	if n := rt.ReplyBytesInFlight(); n != 0 {
		t.Errorf("%d reply bytes still reserved after the run", n)
	}
}
