package koi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
)

// freshURLSet is the Slack pattern: boot asks rtm.connect for the
// websocket URL, and on_disconnect asks again before a reconnect, since
// the URL expires.
const freshURLSet = `{
  "boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "on_disconnect": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {"idle": {"frequency": 0, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`

// A target that restarts forgets the URLs it handed out, and was down when
// the koi's on_disconnect asked for a fresh one: the koi's redial is
// refused (401), and the refusal runs on_disconnect again, so the koi gets
// a fresh URL and reconnects instead of redialling a dead URL forever.
func TestRefusedRedialFetchesAFreshURL(t *testing.T) {
	cfg := pond.Config{Users: 10, Channels: 3, DisableRateLimits: true}
	p1, err := pond.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := p1.Addr()
	set := parseSet(t, freshURLSet)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: "http://" + addr + "/api",
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	tot := newTotals(rt)
	k := rt.New(behaviors.Identity{Index: 1, Token: pond.Token(1)}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	wiretest.Until(t, 30*time.Second, "the koi connected to the first pond", k.Connected)

	// The target goes away; on_disconnect's rtm.connect fails (nothing
	// listens), so the koi keeps the first pond's URL.
	p1.Close()
	wiretest.Until(t, 30*time.Second, "on_disconnect failing while the target is down", func() bool {
		return tot.series(t, "on_disconnect").Failures() > 0
	})

	// The target comes back on the same address with new ticket keys.
	cfg.Addr = addr
	var p2 *pond.Server
	wiretest.WaitFor(t, 10*time.Second, "the second pond listening on "+addr, func() error {
		p2, err = pond.Open(context.Background(), cfg)
		return err
	})
	t.Cleanup(func() { p2.Close() })
	wiretest.Until(t, 30*time.Second, "the koi reconnected to the second pond", func() bool {
		return k.Connected() && p2.Stats().WebsocketsOpen == 1
	})
	ws := tot.series(t, "ws:connect")
	if ws.Counts[metrics.ClientError] == 0 {
		t.Errorf("ws:connect = %+v: want the stale URL's refusal counted before the reconnect", ws)
	}
	t.Logf("ws:connect %+v, reasons %v; on_disconnect %+v", ws.Counts, ws.Reasons, tot.series(t, "on_disconnect").Counts)
}

// A server that refuses every handshake and hangs every API call keeps a
// koi in on_disconnect after each refusal; stop still ends it at once.
func TestStopDuringRefusedRedials(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "expired", http.StatusUnauthorized) })
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	set := parseSet(t, `{
  "boot": {"steps": [{"pre_actions": ["{{ websocketURL \"ws://`+srv.Listener.Addr().String()+`/ws\" }}"]}]},
  "on_disconnect": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {"idle": {"frequency": 0, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api",
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	tot := newTotals(rt)
	k := rt.New(behaviors.Identity{Index: 1, Token: "t"}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	wiretest.Until(t, 30*time.Second, "a refused handshake", func() bool {
		return tot.series(t, "ws:connect").Counts[metrics.ClientError] > 0
	})
	start := time.Now()
	cancel()
	select {
	case <-done:
		t.Logf("stopped %v after the stop, inside on_disconnect's hanging call", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the koi did not stop within 5 s while on_disconnect's call hung")
	}
}
