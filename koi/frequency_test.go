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

// 2,000 real koi calling a real server over real sockets under time scale
// 60 (a behavior minute lasts 1 s): the share of koi-minutes with a call
// lies within 4 standard errors of the seed's f = 0.2393; a behavior with
// f = 1 is called exactly once in every koi-minute and one with f = 0
// never.
//
// The koi run in a synctest bubble and send through a bubbleTransport: the
// bubble's clock only moves once every koi has sent what was due and had
// its reply, so each call carries the time the koi's schedule planned it
// for, and a koi-minute is counted only once the koi has had the whole of
// it. On the wall clock a starved process (load 15–20 on 2 cores) fell
// behind by most of its minutes: calls reached the server minutes after
// the minute they were planned in, and counting minutes by wall time made
// f = 1 look like f = 0.43. Here a busy machine makes the test slower, not
// wrong.
func TestFrequencyOverRealSockets(t *testing.T) {
	if raceEnabled {
		// Some 22,000 requests through the race detector take minutes;
		// make test runs this in its non-race load pass (see the
		// Makefile), so it is never left out.
		t.Skip("load-sized: runs in make test's non-race pass")
	}
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {
	  "history": {"frequency": 0.2393, "steps": [{"request": {"type": "api", "method": "conversations.history"}}]},
	  "always":  {"frequency": 1, "steps": [{"request": {"type": "api", "method": "always"}}]},
	  "never":   {"frequency": 0, "steps": [{"request": {"type": "api", "method": "never"}}]}}}`)
	const n = 2000
	const scale = 60.0
	const run = 9 * time.Second // 9 behavior minutes
	bt := newBubbleTransport(t, 64)
	var (
		minute  time.Duration
		origins = make([]time.Time, n)
		planned = make([]int64, n) // Stats.Minutes at the stop
		stop    time.Time
	)
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: scale,
			HTTPClient: &http.Client{Transport: bt}})
		minute = rt.Minute()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		kois := make([]*koi.Koi, n)
		for i := range kois {
			kois[i] = rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, 1)
			wg.Add(1)
			go func() { defer wg.Done(); kois[i].Run(ctx) }()
		}
		time.Sleep(run)
		stop = time.Now()
		cancel()
		wg.Wait()
		for i, k := range kois {
			origins[i], planned[i] = k.MinuteOrigin(), k.Stats().Minutes
		}
	})

	// Minute m of koi i spans [origin + m·minute, origin + (m+1)·minute);
	// the minutes that ended by the stop are whole: every firing in them
	// was sent (the clock cannot pass a firing before it is sent).
	whole := make([]int, n)
	token := make(map[string]int, n)
	var koiMinutes int
	for i, origin := range origins {
		if origin.IsZero() {
			t.Fatalf("koi %d never started its schedule", i)
		}
		whole[i] = int(stop.Sub(origin) / minute)
		if planned[i] < int64(whole[i]) {
			t.Errorf("koi %d planned %d minutes, but %d had passed by the stop", i, planned[i], whole[i])
		}
		koiMinutes += whole[i]
		token[tokenOf(i)] = i
	}
	perMinute := map[string]map[[2]int]int{} // method → (koi, minute) → calls
	sent := map[string]int{}
	for _, c := range bt.calls() {
		sent[c.Method]++
		i, ok := token[c.Token]
		if !ok {
			t.Fatalf("a %s call with an unknown token %q", c.Method, c.Token)
		}
		m := int(math.Floor(float64(c.At.Sub(origins[i])) / float64(minute)))
		if m < 0 {
			t.Errorf("koi %d called %s %v before its first minute", i, c.Method, origins[i].Sub(c.At))
		}
		if m < 0 || m >= whole[i] {
			continue
		}
		if perMinute[c.Method] == nil {
			perMinute[c.Method] = map[[2]int]int{}
		}
		perMinute[c.Method][[2]int{i, m}]++
	}
	bt.finish() // requests cut by the stop still reach the server
	for method, want := range sent {
		if got := len(srv.callsOf(method)); got != want {
			t.Errorf("%s: the server received %d calls, the koi sent %d", method, got, want)
		}
	}
	if koiMinutes < 10000 {
		t.Fatalf("only %d koi-minutes observed", koiMinutes)
	}

	// At most one call per behavior and koi-minute (each behavior fires
	// at most once a minute).
	count := func(method string) (minutes, twice int) {
		for _, c := range perMinute[method] {
			minutes++
			if c > 1 {
				twice++
			}
		}
		return minutes, twice
	}
	hits, twice := count("conversations.history")
	if twice > 0 {
		t.Errorf("f=0.2393: %d koi-minutes with more than one call", twice)
	}
	f := 0.2393
	share := float64(hits) / float64(koiMinutes)
	se := math.Sqrt(f * (1 - f) / float64(koiMinutes))
	t.Logf("f=0.2393: %d of %d koi-minutes with a call: share %.4f (SE %.4f); %d calls sent in all", hits, koiMinutes, share, se, sent["conversations.history"])
	if math.Abs(share-f) > 4*se {
		t.Errorf("share %.4f is more than 4 SE (%.4f) from %.4f", share, 4*se, f)
	}
	alwaysMinutes, twice := count("always")
	t.Logf("f=1: %d of %d koi-minutes with a call; %d calls sent in all", alwaysMinutes, koiMinutes, sent["always"])
	if alwaysMinutes != koiMinutes || twice > 0 {
		t.Errorf("f=1: a call in %d of %d koi-minutes, %d with more than one; want exactly one in each",
			alwaysMinutes, koiMinutes, twice)
	}
	if c := sent["never"] + len(srv.callsOf("never")); c != 0 {
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
		// be cut by the start and the end.
		if start := rt.BehaviorTime(time.Now().Add(-run)).UTC(); start.Hour() != 0 || start.Minute() != 0 {
			t.Fatalf("the bubble's behavior time began at %v, not midnight", start)
		}
		if min := n * (80 - 2); even < min {
			t.Errorf("even hours: %d calls, want one per koi-minute (at least %d)", even, min)
		}
		// A koi's minute may straddle the hour boundary at 3 s (its
		// minutes start at its boot): at most one call per koi spills
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
