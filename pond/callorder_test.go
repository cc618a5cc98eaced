package pond

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// getTransitions reads GET /stats/transitions with query q ("" for none).
func getTransitions(t *testing.T, s *Server, method, q string) (int, Transitions, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+"/stats/transitions"+q, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tr Transitions
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &tr); err != nil {
			t.Fatalf("transitions are not JSON: %v: %s", err, b)
		}
	}
	return resp.StatusCode, tr, string(b)
}

// pairCount returns the count of from → to in tr (0 when absent).
func pairCount(tr Transitions, from, to string) (uint64, float64) {
	for _, x := range tr.Transitions {
		if x.From == from && x.To == to {
			return x.Count, x.Share
		}
	}
	return 0, 0
}

// Each token's calls are paired in the order pond received them: the
// first call of a token is a first call, each later one a transition from
// the one before, whatever its reply (a refused call was still made);
// DELETE answers the counts and forgets them, previous calls included.
func TestCallOrderCounts(t *testing.T) {
	s := openTest(t, Config{Users: 10, Channels: 3, DisableRateLimits: true})
	seq := map[int][]string{
		0: {"auth.test", "users.info", "users.info", "conversations.history"},
		1: {"users.info", "auth.test"},
		2: {"conversations.history", "users.info"},
	}
	for u, ms := range seq {
		for _, m := range ms {
			call(t, s, Token(u), m, map[string]string{"user": UserID(0), "channel": "C999999"}) // history fails: no such channel
		}
	}
	code, tr, body := getTransitions(t, s, "GET", "")
	if code != http.StatusOK {
		t.Fatalf("GET: HTTP %d %s", code, body)
	}
	wantFirst := map[string]uint64{"auth.test": 1, "users.info": 1, "conversations.history": 1}
	for m, n := range wantFirst {
		if tr.First[m] != n {
			t.Errorf("first[%s] = %d, want %d (%v)", m, tr.First[m], n, tr.First)
		}
	}
	for _, c := range []struct {
		from, to string
		n        uint64
		share    float64
	}{
		{"auth.test", "users.info", 1, 1},
		{"users.info", "users.info", 1, 1.0 / 3},
		{"users.info", "conversations.history", 1, 1.0 / 3},
		{"users.info", "auth.test", 1, 1.0 / 3},
		{"conversations.history", "users.info", 1, 1},
	} {
		if n, share := pairCount(tr, c.from, c.to); n != c.n || share != c.share {
			t.Errorf("%s → %s: %d (share %v), want %d (%v)", c.from, c.to, n, share, c.n, c.share)
		}
	}
	if len(tr.Transitions) != 5 || tr.From["users.info"] != 3 {
		t.Errorf("transitions %+v, from %v", tr.Transitions, tr.From)
	}
	if tr.Methods[len(tr.Methods)-1] != OtherMethod || len(tr.Methods) != len(methods)+1 {
		t.Errorf("methods %v", tr.Methods)
	}
	// The reset answers what it forgot; afterwards the next call of each
	// token is a first call again.
	code, gone, _ := getTransitions(t, s, "DELETE", "")
	if code != http.StatusOK || len(gone.Transitions) != 5 {
		t.Errorf("DELETE: HTTP %d, %d transitions", code, len(gone.Transitions))
	}
	call(t, s, Token(0), "users.info", map[string]string{"user": UserID(1)})
	_, tr, _ = getTransitions(t, s, "GET", "")
	if len(tr.Transitions) != 0 || tr.First["users.info"] != 1 || len(tr.First) != 1 {
		t.Errorf("after the reset: first %v, transitions %+v", tr.First, tr.Transitions)
	}
}

// The delay filter keeps pairs whose delay bucket ends at or under it, and
// the histogram puts each delay in its power-of-two bucket.
func TestCallOrderDelays(t *testing.T) {
	o := newCallOrder(3)
	at := func(ms int) time.Time { return o.start.Add(time.Duration(ms) * time.Millisecond) }
	a, b, c := orderMethod("auth.test"), orderMethod("users.info"), orderMethod("chat.postMessage")
	o.record(0, a, at(0))
	o.record(0, b, at(5))    // a → b after 5 ms: bucket [4, 8)
	o.record(0, c, at(5005)) // b → c after 5 s: bucket [4096, 8192)
	o.record(1, a, at(100))
	o.record(1, b, at(100)) // a → b at once: bucket [0, 1)
	all := o.snapshot(at(6000), 0)
	if n, _ := pairCount(all, "auth.test", "users.info"); n != 2 {
		t.Errorf("a → b: %d, want 2", n)
	}
	for _, tr := range all.Transitions {
		switch tr.From + ">" + tr.To {
		case "auth.test>users.info":
			if len(tr.Delays) != 2 || tr.Delays[0] != (DelayBucket{0, 1, 1}) || tr.Delays[1] != (DelayBucket{4, 8, 1}) {
				t.Errorf("a → b delays %+v", tr.Delays)
			}
		case "users.info>chat.postMessage":
			if len(tr.Delays) != 1 || tr.Delays[0] != (DelayBucket{4096, 8192, 1}) {
				t.Errorf("b → c delays %+v", tr.Delays)
			}
		default:
			t.Errorf("unexpected %s → %s", tr.From, tr.To)
		}
	}
	short := o.snapshot(at(6000), 1000)
	if len(short.Transitions) != 1 || short.Transitions[0].Count != 2 || short.From["users.info"] != 0 {
		t.Errorf("under 1 s: %+v", short)
	}
	// A delay past the last bucket's start lands in it; an unbounded
	// bucket never passes a filter.
	o.record(2, a, at(0))
	o.record(2, b, at(0).Add(48*time.Hour))
	long := o.snapshot(at(0).Add(49*time.Hour), 0)
	found := false
	for _, tr := range long.Transitions {
		for _, d := range tr.Delays {
			found = found || (d.MaxMS == 0 && d.Count == 1)
		}
	}
	if !found {
		t.Errorf("a 48 h delay is not in the unbounded bucket: %+v", long.Transitions)
	}
	if f := o.snapshot(at(0).Add(49*time.Hour), maxDelayFilter); f.From["auth.test"] != 2 {
		t.Errorf("the widest filter counts %d pairs from auth.test, want the 2 bounded ones", f.From["auth.test"])
	}
}

// Hostile clients cannot grow the counters: unknown methods (thousands of
// distinct names, long ones) are refused before counting, tokens that are
// not pond's users are never counted, names outside the table fall into
// one bucket, and the counters' size is fixed at Open.
func TestCallOrderBounded(t *testing.T) {
	s := openTest(t, Config{Users: 20, Channels: 3, DisableRateLimits: true})
	sizes := func() [3]int { return [3]int{len(s.order.last), len(s.order.first), len(s.order.delays)} }
	before := sizes()
	long := strings.Repeat("m", 5000)
	for i := range 2000 {
		name := "x" + strings.Repeat("y", i%300) + "." + string(rune('a'+i%26))
		call(t, s, Token(i%20), name, nil)                                     // unknown method: 404, not counted
		call(t, s, "xoxp-pond-"+strings.Repeat("9", i%40+2), "auth.test", nil) // not a user: not counted
		if i%100 == 0 {
			call(t, s, Token(i%20), long, nil)
		}
	}
	_, tr, _ := getTransitions(t, s, "GET", "")
	if len(tr.First) != 0 || len(tr.Transitions) != 0 {
		t.Errorf("refused calls were counted: first %v, transitions %d", tr.First, len(tr.Transitions))
	}
	if sizes() != before {
		t.Errorf("the counters grew from %v to %v", before, sizes())
	}
	// Names outside the table (only a caller in this package can pass
	// them) share the "other" bucket, long ones without a lookup.
	for i, name := range []string{"no.such", long, "", "users.info\x00"} {
		if got := orderMethod(name); got != len(orderMethods)-1 {
			t.Errorf("name %d maps to %d, want the other bucket %d", i, got, len(orderMethods)-1)
		}
	}
	// Out-of-range users and methods are ignored, never a panic.
	s.order.record(-1, 0, time.Now())
	s.order.record(20, 0, time.Now())
	s.order.record(0, len(orderMethods), time.Now())
	s.order.record(0, -1, time.Now())
	if _, tr, _ = getTransitions(t, s, "GET", ""); len(tr.First) != 0 {
		t.Errorf("out-of-range records counted: %v", tr.First)
	}
	// The filter is bounded and checked.
	for _, q := range []string{"?max_delay_ms=-1", "?max_delay_ms=abc", "?max_delay_ms=99999999999999999999999", "?max_delay_ms=" + strings.Repeat("1", 5000)} {
		code, _, body := getTransitions(t, s, "GET", q)
		if code != http.StatusBadRequest || !strings.Contains(body, "max_delay_ms") || len(body) > 300 {
			t.Errorf("%.40s: HTTP %d %.300s", q, code, body)
		}
	}
}

// Concurrent calls of one token are all counted: every call is either a
// first call or the second half of exactly one pair.
func TestCallOrderConcurrent(t *testing.T) {
	o := newCallOrder(4)
	const workers, calls = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				o.record((w+i)%4, (w*7+i)%len(orderMethods), time.Now())
			}
		})
	}
	wg.Wait()
	tr := o.snapshot(time.Now(), 0)
	var firsts, pairs uint64
	for _, n := range tr.First {
		firsts += n
	}
	for _, x := range tr.Transitions {
		pairs += x.Count
	}
	if firsts != 4 || firsts+pairs != workers*calls {
		t.Errorf("%d first calls + %d pairs, want 4 + %d", firsts, pairs, workers*calls-4)
	}
}

// BenchmarkCallOrderRecord measures counting one call, from parallel
// goroutines over 2,000 users (the hot path's added cost).
func BenchmarkCallOrderRecord(b *testing.B) {
	o := newCallOrder(2000)
	now := time.Now()
	m := orderMethod("conversations.history")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		u := 0
		for pb.Next() {
			u = (u + 7) % 2000
			o.record(u, m, now)
		}
	})
}
