package koi_test

import (
	"context"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// exclusiveSet has two behaviors of one "exclusive" group (a, b) and one
// outside it (c); each calls <name>.start, waits, then calls <name>.end.
func exclusiveSet(t testing.TB, freq string, holdMS int) *behaviors.Set {
	t.Helper()
	beh := func(name, excl string) string {
		e := ""
		if excl != "" {
			e = `"exclusive": "` + excl + `", `
		}
		return `"` + name + `": {"frequency": ` + freq + `, ` + e + `"steps": [
		  {"request": {"type": "api", "method": "` + name + `.start"}, "delay_after_ms": ` + itoa(holdMS) + `},
		  {"request": {"type": "api", "method": "` + name + `.end"}}]}`
	}
	return parseSet(t, `{"behaviors": {`+beh("a", "session")+`, `+beh("b", "session")+`, `+beh("c", "")+`}}`)
}

// overlapReport walks the server's calls in arrival order, per token.
type overlapReport struct {
	groupStarts  int // a.start + b.start
	groupOverlap int // a group start while another group run was open
	cStarts      int
	cOverlap     int // c started while another run (c, a or b) was open on its koi
}

func (s *chatServer) overlaps() overlapReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r overlapReport
	group := map[string]string{} // token → open group run ("a" or "b")
	open := map[string]int{}     // token → open c runs
	for _, c := range s.calls {
		name, phase, _ := strings.Cut(c.Method, ".")
		switch {
		case name == "c" && phase == "start":
			r.cStarts++
			if open[c.Token] > 0 || group[c.Token] != "" {
				r.cOverlap++
			}
			open[c.Token]++
		case name == "c":
			open[c.Token]--
		case phase == "start":
			r.groupStarts++
			if group[c.Token] != "" {
				r.groupOverlap++
			}
			group[c.Token] = name
		case group[c.Token] == name:
			group[c.Token] = ""
		}
	}
	return r
}

// Two behaviors of one exclusive group never run at once on a koi, while a
// behavior outside the group still overlaps them; a firing that comes while
// the group is busy waits and runs after, so the group's runs match the
// planned count (within 4 SE) instead of losing the overlapping share
// (about a quarter here). Runs in a synctest bubble (see
// TestHourlyProfileFollowed): the bubble also fails the test if any koi
// goroutine outlives Run.
func TestExclusiveGroupRunsOneAtATime(t *testing.T) {
	srv := newChatServer(t)
	const f, hold = 0.4, 20_000 // per-minute frequency, a run lasts 20 s (a third of a minute)
	set := exclusiveSet(t, "0.4", hold)
	const n = 20
	const run = 5 * time.Second // 100 behavior minutes at 1200×
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 1200,
			HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		kois := make([]*koi.Koi, n)
		for i := range n {
			k := rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, 1)
			kois[i] = k
			wg.Add(1)
			go func() { defer wg.Done(); k.Run(ctx) }()
		}
		time.Sleep(run)
		stopAt := time.Now()
		cancel()
		wg.Wait()

		var minutes float64 // koi-minutes the schedule ran
		var dropped int64
		for _, k := range kois {
			minutes += float64(stopAt.Sub(k.MinuteOrigin())) / float64(rt.Minute())
			dropped += k.Stats().ExclusiveDropped
		}
		r := srv.overlaps()
		want := 2 * f * minutes
		se := math.Sqrt(2 * f * (1 - f) * minutes)
		t.Logf("koi-minutes %.0f: group runs %d (planned %.0f ± %.0f), dropped %d, overlaps %d; c runs %d, overlapping %d",
			minutes, r.groupStarts, want, se, dropped, r.groupOverlap, r.cStarts, r.cOverlap)
		if r.groupOverlap != 0 {
			t.Errorf("%d group runs started while another of the group ran on the same koi", r.groupOverlap)
		}
		if r.cOverlap == 0 {
			t.Errorf("c (not exclusive) never overlapped another run in %d runs", r.cStarts)
		}
		if z := (float64(r.groupStarts) - want) / se; math.Abs(z) > 4 {
			t.Errorf("group runs %d, planned %.0f: z = %.1f, beyond 4 SE (deferred firings lost?)", r.groupStarts, want, z)
		}
	})
}

// When firings come faster than the group can run them, at most
// koi.MaxExclusivePending wait and the rest are dropped and counted; a pause
// ends the running one and discards those waiting: nothing starts while
// paused, nor at the instant of the resume.
func TestExclusiveGroupBoundedAndPaused(t *testing.T) {
	srv := newChatServer(t)
	set := exclusiveSet(t, "1", 50_000) // two group firings a minute, each run 50 s
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 1200,
			HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		k := rt.New(behaviors.Identity{Index: 1, Token: tokenOf(1)}, 1)
		done := make(chan struct{})
		go func() { defer close(done); k.Run(ctx) }()
		time.Sleep(30 * rt.Minute())
		// 60 firings, about 36 runs: the queue is full most of the time.
		// Every minute fires a and b (frequency 1): each firing due so
		// far has started, been dropped or waits, at most 4 of them.
		synctest.Wait() // every run started has made its first call
		st := k.Stats()
		started := int64(len(srv.callsOf("a.start")) + len(srv.callsOf("b.start")))
		if st.ExclusiveDropped == 0 {
			t.Errorf("no firing dropped with the group overloaded 1.7×")
		}
		if seen, due := started+st.ExclusiveDropped, 2*(st.Minutes-1); seen < due-koi.MaxExclusivePending || seen > due+2 {
			t.Errorf("%d started + %d dropped of about %d firings due: more than %d wait", started, st.ExclusiveDropped, due, koi.MaxExclusivePending)
		}
		if n := runningBehaviors(); n == 0 {
			t.Errorf("no behavior goroutine runs on an overloaded koi")
		}
		k.Pause()
		synctest.Wait()
		if n := runningBehaviors(); n != 0 {
			t.Errorf("%d behavior goroutines still run after the pause", n)
		}
		before := len(srv.callsOf("a.start")) + len(srv.callsOf("b.start"))
		time.Sleep(10 * rt.Minute())
		if got := len(srv.callsOf("a.start")) + len(srv.callsOf("b.start")); got != before {
			t.Errorf("%d group runs started while paused", got-before)
		}
		k.Resume()
		synctest.Wait()
		if got := len(srv.callsOf("a.start")) + len(srv.callsOf("b.start")); got != before {
			t.Errorf("%d group runs started at the resume instant: firings pending at the pause were kept", got-before)
		}
		r := srv.overlaps()
		if r.groupOverlap != 0 {
			t.Errorf("%d overlapping group runs", r.groupOverlap)
		}
		cancel()
		<-done
		if n := runningBehaviors(); n != 0 {
			t.Errorf("%d behavior goroutines outlive Run", n)
		}
		t.Logf("group runs %d, dropped %d", r.groupStarts, k.Stats().ExclusiveDropped)
	})
}

// runningBehaviors counts the goroutines running a koi behavior.
func runningBehaviors() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "koi.(*Koi).runBehavior(")
		}
		buf = make([]byte, 2*len(buf))
	}
}
