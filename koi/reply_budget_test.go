package koi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
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
