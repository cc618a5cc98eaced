package koi_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

func loadSet(t testing.TB, files ...string) *behaviors.Set {
	t.Helper()
	set, diags := behaviors.Load(files...)
	if set == nil {
		t.Fatalf("loading %v: %v", files, diags)
	}
	return set
}

func parseSet(t testing.TB, src string) *behaviors.Set {
	t.Helper()
	set, diags := behaviors.Parse(behaviors.File{Name: "test.json", Data: []byte(src)})
	if set == nil {
		t.Fatalf("parsing set: %v", diags)
	}
	return set
}

func newRuntime(t testing.TB, cfg koi.RuntimeConfig) *koi.Runtime {
	t.Helper()
	rt, err := koi.NewRuntime(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// The seed's conversations.history behavior, loaded verbatim from its two
// files, runs over real sockets; its post_actions see the decoded reply.
func TestSeedBehaviorRunsAgainstServer(t *testing.T) {
	srv := newChatServer(t)
	set := loadSet(t, "../examples/seed/frequencies.json", "../examples/seed/sequences.json")
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase()})
	k := rt.New(behaviors.Identity{Index: 7, UserID: "U7", Token: "xoxp-pond-7"}, 1)
	k.Store().AddChannel(behaviors.Channel{ID: "C1", Name: "general", IsMember: true})

	b := set.Behavior("conversations.history")
	if err := k.RunSequence(context.Background(), b.Sequence, nil); err != nil {
		t.Fatal(err)
	}
	calls := srv.callsOf("conversations.history")
	if len(calls) != 1 {
		t.Fatalf("server saw %d conversations.history calls, want 1", len(calls))
	}
	c := calls[0]
	want := map[string]string{"channel": "C1", "limit": "42", "ignore_replies": "true", "include_pin_count": "true",
		"no_user_profile": "true", "include_tombstones": "true"}
	for k, v := range want {
		if c.Args[k] != v {
			t.Errorf("arg %s = %q, want %q", k, c.Args[k], v)
		}
	}
	if c.Token != "xoxp-pond-7" {
		t.Errorf("token %q, want the koi's", c.Token)
	}
	if got := k.Store().Messages("C1"); len(got) != 2 || got[1].TS != "1700000002.000200" || got[1].User != "U2" {
		t.Errorf("store messages = %+v, want both, newest last", got)
	}
	if ids := k.Store().UserIDs(); !slices.Equal(ids, []string{"U2", "U1"}) {
		t.Errorf("user ids = %v", ids)
	}
	if cur := k.Store().Current(); cur == nil || cur.ID != "C1" {
		t.Errorf("current channel = %+v, want C1", cur)
	}
	snap := rt.Metrics().Snapshot()
	if s := snap.Series["api:conversations.history"]; s == nil || s.Counts[metrics.OK] != 1 {
		t.Errorf("metrics for api:conversations.history = %+v", s)
	}
}

// With no channel known, the seed behavior halts itself: counted as halted,
// and no request is sent.
func TestSeedBehaviorHaltsWithoutChannel(t *testing.T) {
	srv := newChatServer(t)
	set := loadSet(t, "../examples/seed/frequencies.json", "../examples/seed/sequences.json")
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase()})
	k := rt.New(behaviors.Identity{Index: 1, Token: "t"}, 1)
	err := k.RunSequence(context.Background(), set.Behavior("conversations.history").Sequence, nil)
	var he *behaviors.HaltError
	if !errors.As(err, &he) || he.Reason != "no random channel found" {
		t.Fatalf("err = %v, want halt with the seed's reason", err)
	}
	if n := len(srv.callsOf("conversations.history")); n != 0 {
		t.Fatalf("halted sequence still sent %d requests", n)
	}
}

// The seed formation runs end to end with its launch parameter, its delays
// time-scaled.
func TestSeedFormationRuns(t *testing.T) {
	srv := newChatServer(t)
	f, diags := formations.Load("../examples/seed/announcement-reaction.formation.json")
	if f == nil {
		t.Fatal(diags)
	}
	set := parseSet(t, `{"behaviors": {}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 1000})
	k := rt.New(behaviors.Identity{Index: 3, Token: "xoxp-pond-3"}, 1)
	start := time.Now()
	if err := k.RunSequence(context.Background(), f.Sequence, map[string]string{"channel_id": "C42"}); err != nil {
		t.Fatal(err)
	}
	// 65 s of delays at 1000× is 65 ms.
	if d := time.Since(start); d < 60*time.Millisecond || d > 5*time.Second {
		t.Errorf("formation took %v, want about 65ms of scaled delays", d)
	}
	mark := srv.callsOf("conversations.mark")
	react := srv.callsOf("reactions.add")
	if len(mark) != 1 || len(react) != 1 {
		t.Fatalf("mark=%d react=%d calls, want 1 each", len(mark), len(react))
	}
	if mark[0].Args["channel"] != "C42" || mark[0].Args["ts"] != "1700000002.000200" {
		t.Errorf("conversations.mark args = %v, want channel C42 and the newest ts", mark[0].Args)
	}
	fish := []string{"fish", "tropical_fish", "blowfish", "ocean", "whale", "turtle"}
	if !slices.Contains(fish, react[0].Args["name"]) || react[0].Args["timestamp"] != "1700000002.000200" {
		t.Errorf("reactions.add args = %v", react[0].Args)
	}
}

// A koi inside a 60 s delay returns within 50 ms of stop.
func TestStopAbortsLongDelay(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {"wait": {"frequency": 1, "steps": [
		{"request": {"type": "api", "method": "auth.test"}, "delay_after_ms": 60000},
		{"request": {"type": "api", "method": "never.called"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase()})
	k := rt.New(behaviors.Identity{Index: 0, Token: "t"}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.RunSequence(ctx, set.Behavior("wait").Sequence, nil) }()
	wiretest.Until(t, 5*time.Second, "the first request", func() bool { return len(srv.callsOf("auth.test")) == 1 })
	time.Sleep(20 * time.Millisecond) // well inside the delay
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if d := time.Since(stopped); d > 50*time.Millisecond {
			t.Errorf("returned %v after cancel, want ≤ 50ms", d)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("sequence did not return within 2s of cancel")
	}
	if n := len(srv.callsOf("never.called")); n != 0 {
		t.Errorf("step after the delay ran %d times", n)
	}
}

// A running koi: boot takes the websocket URL from rtm.connect, events
// update the store through on_event, a ws request awaits its pong, stop
// closes the websocket and Run returns promptly.
func TestKoiLifecycleOverWebsocket(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{
	  "boot": {"steps": [
	    {"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}},
	    {"request": {"type": "api", "method": "conversations.list", "post_actions": ["{{ addChannels .channels }}"]}}]},
	  "on_event": {"message": ["{{ addMessages .channel (list .) }}"]},
	  "behaviors": {"ping": {"steps": [{"request": {"type": "ws", "json": {"type": "ping", "id": "{{ koiIndex }}"},
	      "await": {"event": "pong", "timeout_ms": 2000}, "post_actions": ["{{ setKoi \"pong\" .reply_to }}"]}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase()})
	k := rt.New(behaviors.Identity{Index: 5, Token: "tok5"}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	wiretest.Until(t, 5*time.Second, "the websocket", func() bool { return k.Connected() && srv.openConns() == 1 })
	if got := len(k.Store().Channels()); got != 2 {
		t.Fatalf("boot stored %d channels, want 2", got)
	}
	sent := float64(time.Now().Add(-30*time.Millisecond).UnixNano()) / 1e6
	srv.broadcast(fmt.Sprintf(`{"type":"message","channel":"C1","user":"U9","text":"hi","ts":"1700000003.000001","sent_at":%.3f}`, sent))
	wiretest.Until(t, 5*time.Second, "the message event in the store", func() bool { return len(k.Store().Messages("C1")) == 1 })
	if err := k.RunSequence(ctx, set.Behavior("ping").Sequence, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(k.Store().Get("pong")); got != "5" {
		t.Errorf("pong reply_to = %q, want 5", got)
	}
	snap := rt.Metrics().Snapshot()
	if s := snap.Series["event:message"]; s == nil || s.Samples() != 1 {
		t.Fatalf("event:message = %+v, want one fan-out delay sample", s)
	} else if q, _ := s.Quantile(0.5); q < 29*time.Millisecond || q > 2*time.Second {
		t.Errorf("fan-out delay %v, want ≥ 30ms (the sent_at we wrote)", q)
	}
	if s := snap.Series["ws:pong"]; s == nil || s.Counts[metrics.OK] != 1 {
		t.Errorf("ws:pong = %+v", s)
	}
	stopped := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of stop")
	}
	if d := time.Since(stopped); d > 500*time.Millisecond {
		t.Errorf("Run took %v to stop", d)
	}
	wiretest.Until(t, 2*time.Second, "the server to see the close", func() bool { return srv.openConns() == 0 })
	if k.State() != koi.Stopped {
		t.Errorf("state %v, want stopped", k.State())
	}
}

// A dropped websocket is redialed with backoff; frames no rule names (not
// JSON, broken JSON) are counted under event:other, never as invalid, and
// do not break the connection.
func TestReconnectAndBadFrames(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.wsURL()},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	k := rt.New(behaviors.Identity{Index: 1}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	wiretest.Until(t, 5*time.Second, "first connection", func() bool { return srv.openConns() == 1 })
	srv.broadcast(`{not json`)
	srv.broadcast(`plain text`)
	srv.broadcast(`{"type":"message","channel":"C1"}`)
	wiretest.Until(t, 5*time.Second, "three frames", func() bool { return k.Stats().Events >= 4 })
	if !k.Connected() {
		t.Fatal("bad frames broke the connection")
	}
	srv.dropAll()
	wiretest.Until(t, 5*time.Second, "a reconnect", func() bool { return k.Stats().Reconnects == 1 && srv.openConns() == 1 })
	snap := rt.Metrics().Snapshot()
	if s := snap.Series["event:other"]; s == nil || s.Counts[metrics.OK] != 2 {
		t.Errorf("event:other = %+v, want the 2 unnamed frames counted ok", s)
	}
	if s := snap.Series["event:invalid"]; s != nil {
		t.Errorf("event:invalid = %+v, want none", s)
	}
	if s := snap.Series["ws:connect"]; s == nil || s.Counts[metrics.OK] != 2 {
		t.Errorf("ws:connect = %+v, want 2 successful connects", s)
	}
}

// HTTP 429 is counted as rate_limited and the koi's next request waits out
// Retry-After; ok:false is an error.
func TestRateLimitAndOkFalse(t *testing.T) {
	srv := newChatServer(t)
	srv.rateLimit["chat.postMessage"] = 1
	set := parseSet(t, `{"behaviors": {
	  "post": {"steps": [{"request": {"type": "api", "method": "chat.postMessage", "args": {"channel": "C1"}}}]},
	  "bad": {"steps": [{"request": {"type": "api", "method": "fail.method"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase()})
	k := rt.New(behaviors.Identity{Token: "t"}, 1)
	ctx := context.Background()
	if err := k.RunSequence(ctx, set.Behavior("post").Sequence, nil); err == nil || !strings.Contains(err.Error(), "rate_limited") {
		t.Fatalf("first post: err = %v, want rate_limited", err)
	}
	start := time.Now()
	if err := k.RunSequence(ctx, set.Behavior("post").Sequence, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("second post went out after %v, want it to wait out Retry-After: 1", d)
	}
	if err := k.RunSequence(ctx, set.Behavior("bad").Sequence, nil); err == nil || !strings.Contains(err.Error(), "invalid_arguments") {
		t.Errorf("ok:false: err = %v", err)
	}
	snap := rt.Metrics().Snapshot()
	post := snap.Series["api:chat.postMessage"]
	if post == nil || post.Counts[metrics.RateLimited] != 1 || post.Counts[metrics.OK] != 1 {
		t.Errorf("api:chat.postMessage = %+v", post)
	}
	if bad := snap.Series["api:fail.method"]; bad == nil || bad.Counts[metrics.Error] != 1 {
		t.Errorf("api:fail.method = %+v", bad)
	}
}

// Pause aborts a running sequence at once and starts nothing new while the
// websocket stays open; resume starts behaviors again without a new boot.
func TestPauseResume(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{
	  "boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
	  "behaviors": {"tick": {"frequency": 1, "steps": [
	    {"request": {"type": "api", "method": "auth.test"}, "delay_after_ms": 600000},
	    {"request": {"type": "api", "method": "after.delay"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 600}) // minute = 100ms, delay = 1s
	k := rt.New(behaviors.Identity{Token: "t"}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	wiretest.Until(t, 5*time.Second, "behaviors running", func() bool { return len(srv.callsOf("auth.test")) >= 2 })
	k.Pause()
	paused := len(srv.callsOf("auth.test"))
	time.Sleep(1500 * time.Millisecond) // 15 behavior minutes, longer than the delay
	if n := len(srv.callsOf("auth.test")); n > paused+1 {
		t.Errorf("%d calls while paused", n-paused)
	}
	if n := len(srv.callsOf("after.delay")); n != 0 {
		t.Errorf("a paused sequence went on past its delay (%d calls)", n)
	}
	if !k.Connected() {
		t.Error("pause closed the websocket")
	}
	k.Resume()
	wiretest.Until(t, 5*time.Second, "behaviors after resume", func() bool { return len(srv.callsOf("auth.test")) >= paused+3 })
	if n := len(srv.callsOf("rtm.connect")); n != 1 {
		t.Errorf("resume booted again: %d rtm.connect calls", n)
	}
}

// Not only Slack: a raw text protocol over the websocket (send text, await
// a reply matching a pattern) and plain HTTP requests, driven by a behavior
// file alone.
func TestTextProtocolAndHTTP(t *testing.T) {
	srv := newChatServer(t)
	srv.onFrame = func(c *websocket.Conn, frame []byte) {
		if strings.HasPrefix(string(frame), "HELLO ") {
			srv.mu.Lock()
			c.WriteMessage(websocket.TextMessage, []byte("WELCOME "+strings.TrimPrefix(string(frame), "HELLO ")))
			srv.mu.Unlock()
		}
	}
	set := parseSet(t, `{"behaviors": {
	  "greet": {"steps": [{"request": {"type": "ws", "text": "HELLO koi-{{ koiIndex }}",
	      "await": {"match": "^WELCOME ", "timeout_ms": 2000}, "post_actions": ["{{ setKoi \"greeting\" . }}"]}}]},
	  "silent": {"steps": [{"request": {"type": "ws", "text": "nobody answers this",
	      "await": {"match": "^NEVER", "timeout_ms": 50}}}]},
	  "post": {"steps": [{"request": {"type": "http", "method": "POST", "url": "`+srv.srv.URL+`/echo",
	      "headers": {"X-Koi": "{{ koiIndex }}"}, "json": {"who": "{{ koiIndex }}"}},
	      "post_actions": ["{{ setKoi \"echo\" . }}"]}]},
	  "teapot": {"steps": [{"request": {"type": "http", "url": "`+srv.srv.URL+`/teapot"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.wsURL()}})
	k := rt.New(behaviors.Identity{Index: 12}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	wiretest.Until(t, 5*time.Second, "the websocket", k.Connected)
	if err := k.RunSequence(ctx, set.Behavior("greet").Sequence, nil); err != nil {
		t.Fatal(err)
	}
	if got := k.Store().Get("greeting"); got != "WELCOME koi-12" {
		t.Errorf("awaited frame = %#v", got)
	}
	if err := k.RunSequence(ctx, set.Behavior("silent").Sequence, nil); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("unanswered await: %v, want a timeout", err)
	}
	if err := k.RunSequence(ctx, set.Behavior("post").Sequence, nil); err != nil {
		t.Fatal(err)
	}
	echo, _ := k.Store().Get("echo").(map[string]any)
	if echo["method"] != "POST" || echo["x_koi"] != "12" || echo["content_type"] != "application/json" || echo["body"] != `{"who":"12"}` {
		t.Errorf("http echo = %#v", echo)
	}
	if err := k.RunSequence(ctx, set.Behavior("teapot").Sequence, nil); err == nil || !strings.Contains(err.Error(), "client_error") {
		t.Errorf("HTTP 418: %v, want client_error", err)
	}
	snap := rt.Metrics().Snapshot()
	if s := snap.Series["ws:match"]; s == nil || s.Counts[metrics.OK] != 1 || s.Counts[metrics.Timeout] != 1 {
		t.Errorf("ws:match = %+v", s)
	}
}

// A koi pings its websocket only when the connection has been silent for
// the ping interval: a server that talks keeps it alive without pings.
//
// The test allows for what it sees of the machine: a stall that held back
// its own sends past half the interval may really have left the koi
// without a frame for an interval (a ping is then right), and the silent
// phase's deadline grows by how late the test's own sleeps woke.
func TestPingOnlyWhenSilent(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {}}`)
	const interval = 100 * time.Millisecond
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.wsURL()},
		PingInterval: interval})
	k := rt.New(behaviors.Identity{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	wiretest.Until(t, 5*time.Second, "the websocket", k.Connected)
	pings := func() int { srv.mu.Lock(); defer srv.mu.Unlock(); return srv.pings }
	// A chatty server: a frame every 30 ms for 600 ms. The koi may ping
	// once at the start (its timer ran from the connect) and once for
	// each gap between two sends that a stall stretched past half the
	// interval.
	allowed, last := 1, time.Time{}
	for range 20 {
		srv.broadcast(`{"type":"user_typing","channel":"C1"}`)
		if now := time.Now(); !last.IsZero() && now.Sub(last) > interval/2 {
			allowed++
		}
		last = time.Now()
		time.Sleep(30 * time.Millisecond)
	}
	if n := pings(); n > allowed {
		t.Errorf("%d pings while the server sent a frame every 30 ms (%d allowed for stalls seen)", n, allowed)
	}
	// A silent server: pings about every interval (the koi jitters it
	// by ±20%), never more often.
	before, start := pings(), time.Now()
	var late time.Duration // how much later than asked the test's sleeps woke
	for pings()-before < 3 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d pings in %v of silence with a %v interval", pings()-before, time.Since(start), interval)
		}
		s := time.Now()
		time.Sleep(5 * time.Millisecond)
		late += max(0, time.Since(s)-5*time.Millisecond)
	}
	took, n := time.Since(start), pings()-before
	t.Logf("%d pings in %v of silence (the test's sleeps woke %v late in all)", n, took, late)
	if most := int(took/(interval*8/10)) + 1; n > most {
		t.Errorf("%d pings in %v of silence, more than one per 0.8 × %v", n, took, interval)
	}
	// The first ping comes at most 1.2 intervals after the last frame, the
	// next two 1.2 intervals apart each; one interval more for the last
	// frame's arrival, and what the machine stalled.
	if bound := 5*interval + late; took > bound {
		t.Errorf("3 pings took %v of silence, over %v (%v interval, %v of stalls seen)", took, bound, interval, late)
	}
}

// A server inventing event types cannot grow the metrics without bound:
// past 256 types, events share "event:other".
func TestEventTypesBounded(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.wsURL()}})
	k := rt.New(behaviors.Identity{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	wiretest.Until(t, 5*time.Second, "the websocket", k.Connected)
	for i := range 300 {
		srv.broadcast(fmt.Sprintf(`{"type":"invented-%d"}`, i))
	}
	wiretest.Until(t, 5*time.Second, "all frames", func() bool { return k.Stats().Events >= 301 })
	snap := rt.Metrics().Snapshot()
	events := 0
	for key := range snap.Series {
		if strings.HasPrefix(key, "event:") {
			events++
		}
	}
	if other := snap.Series["event:other"]; events > 257 || other == nil || other.Total() < 300-256 {
		t.Errorf("%d event keys; event:other = %+v", events, other)
	}
}

// A server closing each connection with another code (it may choose
// among two thousand) cannot grow the metrics without bound: past 32
// codes, closes share "ws:close:other".
func TestCloseCodesBounded(t *testing.T) {
	const conns = 60
	srv := newHostileServer(t, func(c *hconn) { c.close(3000+c.n, "go away") })
	rt := newRuntime(t, koi.RuntimeConfig{Set: parseSet(t, `{"behaviors": {}}`), Websocket: behaviors.WebsocketSpec{URL: srv.url()},
		BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 4)
	wiretest.Until(t, 30*time.Second, "the connections closed", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.ended) >= conns
	})
	sw.stop(t)
	closes, all := 0, uint64(0)
	tot.series(t, "ws:close:other")
	for key, s := range tot.all.Series {
		if strings.HasPrefix(key, "ws:close:") {
			closes++
			all += s.Total()
		}
	}
	other := tot.series(t, "ws:close:other").Total()
	t.Logf("%d closes under %d keys, %d of them under ws:close:other", all, closes, other)
	if closes > 33 || all < conns || other < all-32 {
		t.Errorf("%d closes under %d ws:close keys (%d under ws:close:other), want at most 32 codes of their own and the rest under other", all, closes, other)
	}
}

// Frames dropped while on_connect has not yet succeeded (past the 32 the
// koi holds for on_event) are counted under the handler that would have
// run them, a key the set names: a server inventing a type per frame
// cannot grow the metrics (or the runtime's key table) with them. Before,
// 25,000 such frames made an interval of 25,000 series, which the keeper
// refuses whole.
func TestEarlyFramesCountUnderTheirHandler(t *testing.T) {
	const invented, chats, held = 1000, 10, 32
	srv := newHostileServer(t, func(c *hconn) {
		for i := range invented {
			c.text(fmt.Sprintf(`{"type":"t%d"}`, i))
		}
		for range chats {
			c.text(`{"type":"chat"}`)
		}
	})
	set := parseSet(t, `{
	  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN", "await": {"match": "^NEVER", "timeout_ms": 60000}}}]},
	  "on_event": {"*": ["{{ setKoi \"any\" 1 }}"], "chat": ["{{ setKoi \"chat\" 1 }}"]},
	  "behaviors": {}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 1)
	wiretest.Until(t, 30*time.Second, "every frame read", func() bool { return sw.kois[0].Stats().Events >= invented+chats })
	sw.stop(t)                  // every frame handled
	tot.series(t, "on_event:*") // and counted
	var onEvent []string
	for key := range tot.all.Series {
		if strings.HasPrefix(key, "on_event:") {
			onEvent = append(onEvent, key)
		}
	}
	slices.Sort(onEvent)
	if len(onEvent) > 2 {
		t.Errorf("%d on_event series (%q…), want only the set's handlers", len(onEvent), onEvent[:3])
	}
	for key, want := range map[string]uint64{"on_event:*": invented - held, "on_event:chat": chats} {
		s := tot.series(t, key)
		reasons, _ := reasonsOf(s)
		if got := s.Counts[metrics.Error]; got != want || len(reasons) != 1 || !strings.HasPrefix(reasons[0], "early frames dropped=") {
			t.Errorf("%s: %d errors (reasons %v), want %d early frames dropped", key, got, reasons, want)
		}
	}
}
