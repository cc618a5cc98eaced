package koi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire/wiretest"
)

// stopBound is how soon after stop the server must see a koi's socket
// closed, at every point of the connection's life.
const stopBound = 250 * time.Millisecond

// hostileServer runs script on every websocket connection and notes when
// each ended at the server; with hold, it never upgrades: the handshake
// hangs until the client goes away.
type hostileServer struct {
	srv    *httptest.Server
	script func(c *hconn)
	hold   bool

	mu      sync.Mutex
	dials   []time.Time
	ended   []time.Time
	open    int
	texts   []string // text frames received
	holding int      // handshakes being held
}

// hconn is one connection as a script sees it.
type hconn struct {
	n    int // connections so far, this one included
	c    *websocket.Conn
	wmu  sync.Mutex
	recv chan string // text frames received (the excess dropped)
}

func (h *hconn) send(mt int, b []byte) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_ = h.c.WriteMessage(mt, b)
}

func (h *hconn) text(s string) { h.send(websocket.TextMessage, []byte(s)) }

// next returns the next text frame received ("" once the connection ended
// or after 10 s).
func (h *hconn) next() string {
	select {
	case m, ok := <-h.recv:
		if ok {
			return m
		}
	case <-time.After(10 * time.Second):
	}
	return ""
}

func (h *hconn) close(code int, text string) {
	h.wmu.Lock()
	_ = h.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	h.wmu.Unlock()
	h.c.Close()
}

func newHostileServer(t *testing.T, script func(c *hconn)) *hostileServer {
	t.Helper()
	s := &hostileServer{script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.dials = append(s.dials, time.Now())
		n := len(s.dials)
		hold := s.hold
		if hold {
			s.holding++
		}
		s.mu.Unlock()
		if hold {
			<-r.Context().Done() // the client closed the TCP connection
			s.mu.Lock()
			s.holding--
			s.ended = append(s.ended, time.Now())
			s.mu.Unlock()
			return
		}
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		h := &hconn{n: n, c: c, recv: make(chan string, 64)}
		s.mu.Lock()
		s.open++
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { // read until the client closes; note when
			defer close(done)
			defer close(h.recv)
			defer func() {
				s.mu.Lock()
				s.open--
				s.ended = append(s.ended, time.Now())
				s.mu.Unlock()
			}()
			for {
				mt, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				if mt == websocket.TextMessage {
					s.mu.Lock()
					s.texts = append(s.texts, string(data))
					s.mu.Unlock()
					select {
					case h.recv <- string(data):
					default:
					}
				}
			}
		}()
		if s.script != nil {
			s.script(h)
		}
		<-done
		c.Close()
	}))
	t.Cleanup(func() { s.srv.CloseClientConnections(); s.srv.Close() })
	return s
}

func (s *hostileServer) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }

func (s *hostileServer) state() (dials, open, holding int, texts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dials), s.open, s.holding, append([]string(nil), s.texts...)
}

func (s *hostileServer) lastEnd() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ended) == 0 {
		return time.Time{}
	}
	return s.ended[len(s.ended)-1]
}

// runOne runs one koi until the returned stop is called; stop returns
// when Run did, failing the test if the server did not see the socket
// closed within stopBound of the call.
func runOne(t *testing.T, srv *hostileServer, cfg koi.RuntimeConfig) (*koi.Runtime, *koi.Koi, func()) {
	t.Helper()
	if cfg.Websocket.URL == "" {
		cfg.Websocket.URL = srv.url()
	}
	rt := newRuntime(t, cfg)
	k := rt.New(behaviors.Identity{Index: 1}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	stop := func() {
		t.Helper()
		_, open, holding, _ := srv.state()
		if open+holding == 0 {
			t.Fatal("stop: no socket open at the server to close")
		}
		at := time.Now()
		cancel()
		wiretest.Until(t, 5*time.Second, "the server to see the socket closed", func() bool {
			_, open, holding, _ := srv.state()
			return open+holding == 0
		})
		if took := srv.lastEnd().Sub(at); took > stopBound {
			t.Errorf("the server saw the socket closed %v after stop, want ≤ %v", took, stopBound)
		} else {
			t.Logf("closed at the server %v after stop", took)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5 s of stop")
		}
	}
	return rt, k, stop
}

// Stop closes the socket at the server within stopBound at each point of
// a connection's life: during the handshake, while on_connect waits for an
// answer that never comes, while on_event sequences sleep, while a
// behavior awaits, and while paused.
func TestStopAtEveryLifecyclePoint(t *testing.T) {
	login := `"on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN", "await": {"match": "^OK", "timeout_ms": 60000}}}]}`
	answer := func(c *hconn) {
		if c.next() == "LOGIN" {
			c.text("OK")
		}
	}
	t.Run("during the handshake", func(t *testing.T) {
		srv := newHostileServer(t, nil)
		srv.hold = true
		_, _, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{"behaviors": {}}`)})
		wiretest.Until(t, 5*time.Second, "the handshake held", func() bool { _, _, h, _ := srv.state(); return h == 1 })
		stop()
	})
	t.Run("during on_connect", func(t *testing.T) {
		srv := newHostileServer(t, nil)
		_, _, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{`+login+`, "behaviors": {}}`)})
		wiretest.Until(t, 5*time.Second, "the login sent", func() bool { _, _, _, x := srv.state(); return len(x) == 1 })
		stop()
	})
	t.Run("during on_event sequences", func(t *testing.T) {
		srv := newHostileServer(t, func(c *hconn) {
			answer(c)
			// Send until four handlers run, then three more that find
			// them all busy.
			for running := 0; running < 4; {
				c.text(`{"type":"slow"}`)
				select {
				case m := <-c.recv:
					if m == "SLOW" {
						running++
					}
				case <-time.After(10 * time.Millisecond):
				}
			}
			for range 3 {
				c.text(`{"type":"slow"}`)
			}
		})
		rt, _, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{`+login+`,
		  "on_event": {"slow": {"steps": [{"request": {"type": "ws", "text": "SLOW"}, "delay_after_ms": 60000}]}}, "behaviors": {}}`)})
		tot := newTotals(rt)
		wiretest.Until(t, 5*time.Second, "four sequences running, three dropped", func() bool {
			return tot.series(t, "on_event:slow").Counts[metrics.Error] >= 3
		})
		if _, _, _, x := srv.state(); len(x) != 5 {
			t.Errorf("the server got %q, want LOGIN and 4 SLOW", x)
		}
		stop()
	})
	t.Run("during a behavior's await", func(t *testing.T) {
		srv := newHostileServer(t, answer)
		_, _, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{`+login+`,
		  "behaviors": {"q": {"frequency": 1, "steps": [{"request": {"type": "ws", "text": "Q", "await": {"type": "never", "timeout_ms": 60000}}}]}}}`),
			TimeScale: 600})
		wiretest.Until(t, 10*time.Second, "the behavior's send", func() bool { _, _, _, x := srv.state(); return len(x) >= 2 })
		stop()
	})
	t.Run("while paused during on_connect", func(t *testing.T) {
		srv := newHostileServer(t, nil)
		rt, k, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{`+login+`, "behaviors": {}}`)})
		tot := newTotals(rt)
		wiretest.Until(t, 5*time.Second, "the login sent", func() bool { _, _, _, x := srv.state(); return len(x) == 1 })
		k.Pause()
		wiretest.Until(t, 5*time.Second, "on_connect canceled by the pause", func() bool {
			return tot.series(t, "on_connect").Counts[metrics.Canceled] == 1
		})
		// The half set up session is closed (a second LOGIN on it would be
		// refused by most servers); the koi may redial while paused, but
		// sends nothing until the resume.
		wiretest.Until(t, 5*time.Second, "the half set up session closed", func() bool {
			dials, open, _, _ := srv.state()
			return dials >= 2 || open == 0
		})
		if _, _, _, x := srv.state(); len(x) != 1 {
			t.Errorf("paused: %d frames sent; want nothing more than the first LOGIN", len(x))
		}
		k.Resume()
		wiretest.Until(t, 5*time.Second, "on_connect again after resume", func() bool { _, _, _, x := srv.state(); return len(x) == 2 })
		// Paused again mid on_connect: that session closes too, and the
		// koi redials while paused, its on_connect waiting for a resume.
		// Stop must close that waiting socket at once.
		k.Pause()
		wiretest.Until(t, 10*time.Second, "a socket redialled while paused", func() bool {
			dials, open, _, _ := srv.state()
			return dials >= 3 && open == 1
		})
		if _, _, _, x := srv.state(); len(x) != 2 {
			t.Errorf("paused again: %d frames sent; want the two LOGINs only", len(x))
		}
		stop()
	})
}

// A frame over the read limit ends the connection, is counted, and the
// koi redials; memory stays bounded by the limit, not the frame.
func TestFrameOverReadLimit(t *testing.T) {
	const limit = 4 << 10
	big := []byte(`{"type":"big","pad":"` + strings.Repeat("x", 8<<20) + `"}`)
	srv := newHostileServer(t, func(c *hconn) {
		c.text(`{"type":"small"}`)
		if c.n >= 3 {
			c.next() // the third connection stays open: the koi is back
			return
		}
		c.send(websocket.TextMessage, big)
	})
	rt, k, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{"behaviors": {}}`), ReadLimit: limit,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	tot := newTotals(rt)
	wiretest.Until(t, 20*time.Second, "three dials", func() bool { d, _, _, _ := srv.state(); return d >= 3 })
	wiretest.Until(t, 5*time.Second, "the socket open again", func() bool { _, o, _, _ := srv.state(); return o == 1 && k.Connected() })
	if s := tot.series(t, "event:small"); s.Counts[metrics.OK] < 2 {
		t.Errorf("event:small = %+v, want one per connection", s)
	}
	if s := tot.series(t, "event:big"); s.Total() != 0 {
		t.Errorf("event:big = %+v: a frame over the limit was handled", s)
	}
	if s := tot.series(t, "ws:close:1009"); s.Counts[metrics.Transport] < 2 {
		t.Errorf("ws:close:1009 = %+v, want the oversized frames counted as too big", s)
	}
	if st := k.Stats(); st.BytesIn > int64(st.Events)*limit {
		t.Errorf("%d bytes taken in for %d frames over a %d-byte limit", st.BytesIn, st.Events, limit)
	}
	stop()
}

// A server that drops every session right after the login succeeded: the
// koi redials with a growing backoff, not in a tight loop.
func TestReconnectStormBounded(t *testing.T) {
	srv := newHostileServer(t, func(c *hconn) {
		c.next() // the login
		c.text("OK")
		time.Sleep(5 * time.Millisecond)
		c.close(websocket.CloseGoingAway, "bye")
	})
	const bmin, bmax = 10 * time.Millisecond, 160 * time.Millisecond
	rt, _, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{
	  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN", "await": {"match": "^OK", "timeout_ms": 5000}}}]},
	  "on_disconnect": {"steps": [{"pre_actions": ["{{ fail \"cleanup failed\" }}"]}]},
	  "behaviors": {}}`), BackoffMin: bmin, BackoffMax: bmax, BackoffReset: time.Minute})
	tot := newTotals(rt)
	start := time.Now()
	wiretest.Until(t, 20*time.Second, "eight dials", func() bool { d, _, _, _ := srv.state(); return d >= 8 })
	took := time.Since(start)
	// Attempts 0..6 back off at least half of min·2^i each, capped at max.
	var least time.Duration
	for i := range 7 {
		least += min(bmax, bmin<<i) / 2
	}
	if took < least {
		t.Errorf("eight dials in %v, want ≥ %v: the backoff did not grow", took, least)
	}
	if s := tot.series(t, "on_connect"); s.Counts[metrics.OK] < 7 {
		t.Errorf("on_connect = %+v, want a success per connection", s)
	}
	if s := tot.series(t, "on_disconnect"); s.Counts[metrics.Error] < 7 {
		t.Errorf("on_disconnect = %+v, want its failure counted each time", s)
	}
	wiretest.Until(t, 5*time.Second, "a socket open", func() bool { _, o, _, _ := srv.state(); return o == 1 })
	stop()
}

// A boot connect step whose URL cannot be dialled fails at once (the
// URL is refused when set) instead of waiting out its timeout while the
// connection loop redials; a connect step with no URL at all fails too.
func TestConnectStepBadURL(t *testing.T) {
	for _, u := range []string{"ws://", "ws://[::1", "ws://a b/", ""} {
		t.Run(u, func(t *testing.T) {
			set := parseSet(t, fmt.Sprintf(`{"boot": {"steps": [
			  {"pre_actions": ["{{ if %[1]s }}{{ websocketURL %[1]s }}{{ end }}"], "request": {"type": "connect", "timeout_ms": 60000}}]}, "behaviors": {}}`, "`"+u+"`"))
			rt := newRuntime(t, koi.RuntimeConfig{Set: set, BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond})
			tot := newTotals(rt)
			k := rt.New(behaviors.Identity{Index: 1}, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = k.Run(ctx) }()
			defer func() { cancel(); <-done }()
			wiretest.Until(t, 10*time.Second, "two failed boots", func() bool { return k.Stats().BootFailures >= 2 })
			if s := tot.series(t, "ws:connect"); s.Total() != 0 {
				t.Errorf("ws:connect = %+v: a bad URL was dialled", s)
			}
		})
	}
}

// At run time, a rendered binary payload that does not decode and a
// rendered pattern over the size bound fail their request with a clear
// error, counted as Error under the request's key, and nothing is sent.
func TestRenderedPayloadAndPatternErrors(t *testing.T) {
	srv := newHostileServer(t, nil)
	set := parseSet(t, `{"behaviors": {
	  "bin": {"steps": [{"request": {"type": "ws", "key": "bin", "binary": "{{ get \"p\" }}", "encoding": "hex"}}]},
	  "bomb": {"steps": [{"request": {"type": "ws", "key": "bomb", "text": "Q", "await": {"match": "{{ get \"p\" }}"}}}]}}}`)
	rt, k, stop := runOne(t, srv, koi.RuntimeConfig{Set: set})
	tot := newTotals(rt)
	wiretest.Until(t, 5*time.Second, "the websocket", k.Connected)
	for _, tt := range []struct{ name, p, want string }{
		{"bin", "2g", `behavior "bin" › step 1 › request › binary`},
		{"bomb", strings.Repeat("[ab]{999}", 4), "pattern too large"},
	} {
		err := k.RunSequence(context.Background(), set.Behavior(tt.name).Sequence, map[string]string{"p": tt.p})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
		if s := tot.series(t, "ws:"+tt.name); s.Counts[metrics.Error] != 1 {
			t.Errorf("ws:%s = %+v, want one Error", tt.name, s)
		}
	}
	if _, _, _, x := srv.state(); len(x) != 0 {
		t.Errorf("the server got %q, want nothing", x)
	}
	stop()
}

// An on_disconnect whose HTTP request hangs holds the redial (it runs on
// the connection loop) but not stop: Run returns at once.
func TestStopDuringHangingOnDisconnect(t *testing.T) {
	hung := make(chan struct{}, 1)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(api.Close)
	srv := newHostileServer(t, func(c *hconn) { c.close(websocket.CloseGoingAway, "bye") })
	set := parseSet(t, fmt.Sprintf(`{"on_disconnect": {"steps": [{"request": {"type": "http", "method": "GET", "url": %q, "timeout_ms": 60000}}]},
	  "behaviors": {}}`, api.URL))
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}})
	tot := newTotals(rt)
	k := rt.New(behaviors.Identity{Index: 1}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("on_disconnect's request never reached the server")
	}
	at := time.Now()
	cancel()
	select {
	case <-done:
		t.Logf("Run returned %v after stop", time.Since(at))
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of stop")
	}
	if took := time.Since(at); took > stopBound {
		t.Errorf("Run returned %v after stop, want ≤ %v", took, stopBound)
	}
	if d, _, _, _ := srv.state(); d != 1 {
		t.Errorf("%d dials, want 1: the redial waits for on_disconnect", d)
	}
	if s := tot.series(t, "on_disconnect"); s.Counts[metrics.OK] != 0 {
		t.Errorf("on_disconnect = %+v, want no success", s)
	}
}
