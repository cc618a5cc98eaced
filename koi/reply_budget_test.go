package koi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	rmetrics "runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

// A reply larger than what is left of the school-wide reply budget is
// dropped, not read: the request fails at once with a counted outcome and
// a reason naming the budget, the budget is whole again afterwards, and a
// reply that fits is still read.
func TestReplyBudgetDropsHTTPReply(t *testing.T) {
	big := `{"ok":true,"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write([]byte(big))
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	set := parseSet(t, `{"behaviors": {
	  "big": {"steps": [{"request": {"type": "http", "url": "`+srv.URL+`/big"}}]},
	  "small": {"steps": [{"request": {"type": "http", "url": "`+srv.URL+`/small"}}]}}}`)
	budget := koi.NewReplyBudget(256 << 10)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, ReplyBudget: budget})
	k := rt.New(behaviors.Identity{}, 1)
	ctx := context.Background()

	err := k.RunSequence(ctx, set.Behavior("big").Sequence, nil)
	if err == nil || !strings.Contains(err.Error(), "reply budget") {
		t.Fatalf("1 MiB reply with a 256 KiB budget: %v, want a reply budget error", err)
	}
	if err := k.RunSequence(ctx, set.Behavior("small").Sequence, nil); err != nil {
		t.Fatalf("small reply after the refusal: %v", err)
	}
	wiretest.Until(t, 5*time.Second, "the budget whole again", func() bool { return budget.InUse() == 0 })
	if budget.Refused() != 1 || rt.RepliesRefused() != 1 {
		t.Errorf("refused: budget %d, run %d, want 1", budget.Refused(), rt.RepliesRefused())
	}
	if s := rt.Metrics().Snapshot().Series[koi.ReplyBudgetKey]; s == nil || s.Counts[metrics.Error] != 1 {
		t.Errorf("%s = %+v, want one error", koi.ReplyBudgetKey, s)
	}
}

// Websocket frames that do not fit the budget are read through and
// dropped while the connection stays up; the frames that fit are handled.
func TestReplyBudgetDropsFrames(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {}}`)
	budget := koi.NewReplyBudget(64 << 10)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.wsURL()}, ReplyBudget: budget})
	k := rt.New(behaviors.Identity{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	wiretest.Until(t, 5*time.Second, "the websocket", k.Connected)
	wiretest.Until(t, 5*time.Second, "the greeting", func() bool { return k.Stats().Events >= 1 })
	srv.broadcast(`{"type":"flood","pad":"` + strings.Repeat("y", 512<<10) + `"}`)
	srv.broadcast(`{"type":"after"}`)
	// Wait for what the frames lead to, not for Stats().Events: a frame
	// is counted there before its event is recorded and its bytes are
	// given back to the budget. Frames are handled in order, so once the
	// small one is recorded the flood has been dropped.
	// Snapshots take what was recorded since the last one: sum them.
	seen := &metrics.Snapshot{}
	after := func() uint64 {
		if err := seen.Merge(rt.Metrics().Snapshot()); err != nil {
			t.Fatal(err)
		}
		if s := seen.Series["event:after"]; s != nil {
			return s.Total()
		}
		return 0
	}
	wiretest.Until(t, 5*time.Second, "the small frame handled", func() bool { return after() >= 1 })
	wiretest.Until(t, 5*time.Second, "the budget whole again", func() bool { return budget.InUse() == 0 })
	after()
	snap := seen
	if s := snap.Series[koi.ReplyBudgetKey]; s == nil || s.Counts[metrics.Error] != 1 {
		t.Errorf("%s = %+v, want one dropped frame", koi.ReplyBudgetKey, s)
	}
	if n := after(); n != 1 {
		t.Errorf("event:after recorded %d times, want the small frame handled once", n)
	}
	if s := snap.Series["event:flood"]; s != nil {
		t.Errorf("event:flood = %+v, want the dropped frame not handled", s)
	}
	if !k.Connected() || srv.openConns() != 1 {
		t.Errorf("connection dropped by a refused frame (connected %v, server sees %d)", k.Connected(), srv.openConns())
	}
}

// liveHeap is the heap a collection found alive.
func liveHeap() int64 {
	runtime.GC()
	s := []rmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rmetrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// decodedSize is what a value decoded from reply keeps alive: the unit
// the margins below are counted in. (The median of three: a test before
// may still be letting go of its memory.)
func decodedSize(t *testing.T, reply string) int64 {
	t.Helper()
	var sizes []int64
	for range 3 {
		base := liveHeap()
		var v any
		if err := json.Unmarshal([]byte(reply), &v); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, liveHeap()-base)
		runtime.KeepAlive(v)
	}
	slices.Sort(sizes)
	if sizes[1] <= 0 {
		t.Fatalf("decoding a %d-byte reply kept %d bytes alive", len(reply), sizes[1])
	}
	return sizes[1]
}

// jsonList is `{"type":typ,"d":[item,item,…]}`.
func jsonList(typ, item string, n int) string {
	return `{"type":"` + typ + `","d":[` + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + `]}`
}

// An on_event sequence keeps its frame (its "event") reserved in the
// reply budget for as long as it runs: koi whose sequences outlive their
// frames cannot hold more decoded frames than the budget allows, and the
// frames past it are dropped and counted. Before, a frame's reservation
// was given back once the reader had handled it: two koi kept 240 MiB of
// frames alive with a 48 MiB budget showing 0 bytes in use.
func TestReplyBudgetHoldsEventUntilSequenceEnds(t *testing.T) {
	const koiN, frames = 4, 8
	frame := jsonList("big", "{}", 30_000)
	start := make(chan struct{})
	srv := newHostileServer(t, func(c *hconn) {
		<-start
		for range frames {
			c.text(frame)
		}
	})
	set := parseSet(t, `{
	  "on_event": {"big": {"steps": [{"delay_after_ms": 600000}]}},
	  "behaviors": {}}`)
	budget := koi.NewReplyBudget(4 << 20)
	unit := decodedSize(t, frame)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}, ReplyBudget: budget})
	sw := startSwarm(t, rt, koiN)
	wiretest.Until(t, 30*time.Second, "every koi connected", func() bool {
		_, open, _, _ := srv.state()
		return open == koiN
	})
	base := liveHeap()
	close(start)
	sw.waitEvents(t, frames*koiN)
	live, inUse := liveHeap()-base, budget.InUse()
	t.Logf("reply budget %d MiB, one decoded frame %d KiB: %d MiB live above baseline, %d KiB reserved; %d frames refused",
		budget.Limit()>>20, unit>>10, live>>20, inUse>>10, budget.Refused())
	margin := 2 * unit
	if live > inUse+margin {
		t.Errorf("the sequences kept %d MiB of frames alive with %d KiB reserved, want at most the reservation + %d MiB", live>>20, inUse>>10, margin>>20)
	}
	if inUse == 0 || inUse > budget.Limit() {
		t.Errorf("%d bytes reserved while sequences hold their frames, want some, at most the %d-byte budget", inUse, budget.Limit())
	}
	if budget.Refused() == 0 {
		t.Error("no frame was refused: the budget never filled, the test proves nothing")
	}
	sw.stop(t)
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes still reserved after every sequence ended", n)
	}
}

// Frames held while on_connect runs keep their reservation in the reply
// budget until they are handed over or dropped, and a koi holds at most
// 64 KiB of them counted as the budget counts them, decoded: a server
// sending frames that are small on the wire and large decoded cannot
// make every koi of a school hold them. Before, 32 such frames of 2 KB
// were held per koi, 1.5 MB decoded, outside the budget: 7 GB for 5,000
// koi.
func TestReplyBudgetHoldsFramesBehindOnConnect(t *testing.T) {
	const koiN, frames = 20, 32
	frame := jsonList("e", "{}", 500) // 1.5 KB on the wire
	start := make(chan struct{})
	srv := newHostileServer(t, func(c *hconn) {
		<-start
		for range frames {
			c.text(frame)
		}
	})
	set := parseSet(t, `{
	  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN", "await": {"match": "^NEVER", "timeout_ms": 600000}}}]},
	  "on_event": {"*": ["{{ setKoi \"x\" 1 }}"]},
	  "behaviors": {}}`)
	budget := koi.NewReplyBudget(16 << 20)
	unit := decodedSize(t, frame)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}, ReplyBudget: budget})
	sw := startSwarm(t, rt, koiN)
	wiretest.Until(t, 30*time.Second, "every koi logging in", func() bool {
		_, _, _, texts := srv.state()
		return len(texts) == koiN
	})
	base := liveHeap()
	close(start)
	sw.waitEvents(t, frames*koiN)
	live, inUse := liveHeap()-base, budget.InUse()
	t.Logf("%d koi, one decoded frame %d KiB: %d KiB live above baseline, %d KiB reserved (%d KiB a koi)",
		koiN, unit>>10, live>>10, inUse>>10, inUse/koiN>>10)
	margin := koiN * unit // a frame's worth of bookkeeping a koi
	if live > inUse+margin {
		t.Errorf("the koi kept %d KiB of held frames alive with %d KiB reserved, want at most the reservation + %d KiB", live>>10, inUse>>10, margin>>10)
	}
	if inUse == 0 || inUse > koiN*64<<10 {
		t.Errorf("%d KiB reserved for held frames, want some, at most 64 KiB a koi", inUse>>10)
	}
	sw.stop(t)
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes still reserved after the held frames were dropped", n)
	}
}

// waitEvents waits until the swarm's koi have read n frames in all.
func (s *koiSwarm) waitEvents(t *testing.T, n int64) {
	t.Helper()
	wiretest.Until(t, 60*time.Second, "every frame read", func() bool {
		var ev int64
		for _, k := range s.kois {
			ev += k.Stats().Events
		}
		return ev >= n
	})
}
