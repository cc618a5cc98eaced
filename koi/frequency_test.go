package koi_test

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// 2,000 real koi calling a real server under time scale 60 (a behavior
// minute lasts 1 s): the share of koi-minutes with a call, counted from
// the calls the server received, lies within 4 standard errors of the
// seed's f = 0.2393. A behavior with f = 1 is called in every koi-minute
// and one with f = 0 never.
func TestFrequencyOverRealSockets(t *testing.T) {
	if raceEnabled {
		// The race detector slows the in-process server below the 2,480
		// requests/s this test needs; make test runs it in its non-race
		// load pass (see the Makefile), so it is never left out.
		t.Skip("load-sized: runs in make test's non-race pass")
	}
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {
	  "history": {"frequency": 0.2393, "steps": [{"request": {"type": "api", "method": "conversations.history"}}]},
	  "always":  {"frequency": 1, "steps": [{"request": {"type": "api", "method": "always"}}]},
	  "never":   {"frequency": 0, "steps": [{"request": {"type": "api", "method": "never"}}]}}}`)
	const n = 2000
	const scale = 60.0
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: scale,
		HTTPClient: koi.NewHTTPClient(64)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	kois := make([]*koi.Koi, n)
	for i := range kois {
		kois[i] = rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, 1)
		wg.Add(1)
		go func() { defer wg.Done(); kois[i].Run(ctx) }()
	}
	minute := rt.Minute()
	time.Sleep(9 * minute)
	stop := time.Now()
	cancel()
	wg.Wait()

	// Count, per koi, the whole minutes between its origin and the stop,
	// leaving out the first and the last (requests near the edges may be
	// in flight).
	byToken := map[string][]time.Time{}
	always := map[string][]time.Time{}
	for _, c := range srv.callsOf("conversations.history") {
		byToken[c.Token] = append(byToken[c.Token], c.At)
	}
	for _, c := range srv.callsOf("always") {
		always[c.Token] = append(always[c.Token], c.At)
	}
	var koiMinutes, hits, alwaysHits int
	for i, k := range kois {
		origin := k.MinuteOrigin()
		if origin.IsZero() {
			t.Fatalf("koi %d never started its schedule", i)
		}
		first, last := 1, int(stop.Sub(origin)/minute)-1
		if last <= first {
			continue
		}
		in := func(at time.Time) bool {
			m := int(math.Floor(float64(at.Sub(origin)) / float64(minute)))
			return m >= first && m < last
		}
		koiMinutes += last - first
		for _, at := range byToken[tokenOf(i)] {
			if in(at) {
				hits++
			}
		}
		for _, at := range always[tokenOf(i)] {
			if in(at) {
				alwaysHits++
			}
		}
	}
	if koiMinutes < 10000 {
		t.Fatalf("only %d koi-minutes observed", koiMinutes)
	}
	f := 0.2393
	share := float64(hits) / float64(koiMinutes)
	se := math.Sqrt(f * (1 - f) / float64(koiMinutes))
	t.Logf("f=0.2393: %d calls in %d koi-minutes: share %.4f (SE %.4f)", hits, koiMinutes, share, se)
	if math.Abs(share-f) > 4*se {
		t.Errorf("share %.4f is more than 4 SE (%.4f) from %.4f", share, 4*se, f)
	}
	// f = 1: one call per koi-minute; allow calls that crossed a minute
	// boundary in flight (a few ms of a 1 s minute).
	if d := math.Abs(float64(alwaysHits-koiMinutes)) / float64(koiMinutes); d > 0.01 {
		t.Errorf("f=1: %d calls in %d koi-minutes", alwaysHits, koiMinutes)
	}
	if c := len(srv.callsOf("never")); c != 0 {
		t.Errorf("f=0 was called %d times", c)
	}
}

func tokenOf(i int) string { return "xoxp-test-" + itoa(i) }

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// Always-on koi follow a set's daily curve: a behavior whose hourly
// profile is 1 in even hours and 0 in odd hours (of behavior time) is called
// in every koi-minute of an even hour and in no minute of an odd hour.
//
// The koi run in a synctest bubble: their clock (timers, time.Now, the
// runtime's behavior-time anchor) only advances once every koi has done
// what was due, so a busy machine makes the test take longer but cannot
// make a call late. (On the wall clock a CPU-starved race-instrumented
// process sent calls up to 2.2 s — most of a 3 s behavior hour — after
// their minute, and the server saw them in the next hour.) Requests still
// go over real sockets to a real server outside the bubble; connections
// are not kept alive, since a goroutine blocked on an idle socket would
// stop the bubble's clock.
func TestHourlyProfileFollowed(t *testing.T) {
	srv := newChatServer(t)
	prof := make([]string, 24)
	for h := range prof {
		prof[h] = strconv.Itoa(1 - h%2)
	}
	set := parseSet(t, `{"timezone": "UTC", "behaviors": {"day": {"frequency": 1, "hourly": [`+strings.Join(prof, ",")+`],
	  "steps": [{"request": {"type": "api", "method": "day"}}]}}}`)
	const n = 10
	const run = 7 * time.Second // an hour lasts 3 s: hours 0, 1 and a third of 2
	synctest.Test(t, func(t *testing.T) {
		tr := &sentAt{base: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 1200, // a minute in 50 ms
			HTTPClient: &http.Client{Transport: tr}})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range n {
			k := rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, 1)
			wg.Add(1)
			go func() { defer wg.Done(); k.Run(ctx) }()
		}
		time.Sleep(run)
		cancel()
		wg.Wait()

		var even, odd int
		for _, at := range tr.times() {
			if rt.BehaviorTime(at).UTC().Hour()%2 == 0 {
				even++
			} else {
				odd++
			}
		}
		t.Logf("calls in even hours %d, odd hours %d", even, odd)
		if got := len(srv.callsOf("day")); got != even+odd {
			t.Errorf("the server received %d calls, the koi sent %d", got, even+odd)
		}
		// The bubble starts at midnight UTC: hours 0 and 2 are even, 4 s
		// of the 7, so 80 minutes per koi; its first and last minute may
		// be cut by the start (random phase) and the end.
		if start := rt.BehaviorTime(time.Now().Add(-run)).UTC(); start.Hour() != 0 || start.Minute() != 0 {
			t.Fatalf("the bubble's behavior time began at %v, not midnight", start)
		}
		if min := n * (80 - 2); even < min {
			t.Errorf("even hours: %d calls, want one per koi-minute (at least %d)", even, min)
		}
		// A koi's minute may straddle the hour boundary at 3 s (its
		// minutes have a random phase): at most one call per koi spills
		// into hour 1.
		if odd > n {
			t.Errorf("odd hours: %d calls, want at most %d (one minute per koi straddling 01:00)", odd, n)
		}
	})
}

// sentAt is an HTTP transport that notes when each request was sent, on
// the caller's clock.
type sentAt struct {
	base http.RoundTripper
	mu   sync.Mutex
	at   []time.Time
}

func (s *sentAt) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	return s.base.RoundTrip(r)
}

func (s *sentAt) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.at)
}
