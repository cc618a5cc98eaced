package koi_test

import (
	"context"
	"fmt"
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

// sessionSet drives sessionServer from a behavior file alone: on_connect
// logs in and joins, behaviors chat and ping, frames are named by text
// rules (the chat fan-out carries its send time in the frame).
const sessionSet = `{
  "frames": {"text": [
    {"prefix": "OK LOGIN", "type": "logged_in"},
    {"match": "^MSG\\|", "type": "chat", "sent_at": "{{ index (splitList \"|\" .) 2 }}"},
    {"match": "^(?P<type>[A-Z]+) "}]},
  "on_connect": {"steps": [
    {"request": {"type": "ws", "text": "LOGIN u{{ koiIndex }}", "await": {"match": "^OK LOGIN", "timeout_ms": %d}},
     "post_actions": ["{{ setKoi \"logged_in\" true }}"]},
    {"request": {"type": "ws", "text": "JOIN lobby", "await": {"match": "^OK JOIN", "timeout_ms": 5000}}}]},
  "on_disconnect": {"steps": [{"pre_actions": ["{{ setKoi \"logged_in\" false }}"]}]},
  "on_event": {"chat": ["{{ setKoi \"last_chat\" . }}"]},
  "behaviors": {
    "chat": {"frequency": 1, "steps": [{"request": {"type": "ws", "text": "CHAT lobby hi from {{ koiIndex }}"}}]},
    "ping": {"frequency": 1, "steps": [{"request": {"type": "ws", "text": "PING {{ koiIndex }}",
        "await": {"match": "^PONG", "timeout_ms": 5000}}}]}}}`

// totals accumulates a recorder's snapshots (each Snapshot drains it), so
// a test can poll and still assert on whole-run counts.
type totals struct {
	rec *metrics.Recorder
	all *metrics.Snapshot
}

func newTotals(rt *koi.Runtime) *totals { return &totals{rec: rt.Metrics(), all: &metrics.Snapshot{}} }

// series returns the key's counts so far (an empty series when none).
func (m *totals) series(t testing.TB, key string) *metrics.SeriesSnapshot {
	t.Helper()
	if err := m.all.Merge(m.rec.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if s := m.all.Series[key]; s != nil {
		return s
	}
	return &metrics.SeriesSnapshot{}
}

type koiSwarm struct {
	kois   []*koi.Koi
	cancel context.CancelFunc
	done   chan struct{}
}

func startSwarm(t *testing.T, rt *koi.Runtime, n int) *koiSwarm {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &koiSwarm{cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	for i := range n {
		k := rt.New(behaviors.Identity{Index: i + 1}, 1)
		s.kois = append(s.kois, k)
		wg.Add(1)
		go func() { defer wg.Done(); _ = k.Run(ctx) }()
	}
	go func() { wg.Wait(); close(s.done) }()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// stop cancels every koi and returns how long until every Run returned.
func (s *koiSwarm) stop(t *testing.T) time.Duration {
	t.Helper()
	return s.stopWithin(t, 5*time.Second)
}

// stopWithin is stop, failing t when the Run calls take longer than d.
func (s *koiSwarm) stopWithin(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(d):
		t.Fatalf("koi Run calls did not return within %v of stop", d)
	}
	return time.Since(start)
}

// A session protocol over text frames: every koi logs in and joins in
// on_connect before any behavior may send; chat fan-out is named by a text
// rule with its own send time; after the server drops every session each
// koi reconnects and logs in again; nothing ever reaches the server before
// a login; stop closes every socket at once.
func TestSessionProtocolLogsInOnEveryConnect(t *testing.T) {
	const n = 6
	srv := newSessionServer(t)
	set := parseSet(t, fmt.Sprintf(sessionSet, 5000))
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()},
		TimeScale: 120, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}) // a minute is 0.5 s
	tot := newTotals(rt)
	sw := startSwarm(t, rt, n)
	for _, k := range sw.kois {
		select {
		case <-k.Ready():
		case <-time.After(10 * time.Second):
			t.Fatalf("koi not ready within 10s (state %v)", k.State())
		}
		if k.Store().Get("logged_in") != true || k.State() != koi.Connected {
			t.Fatalf("ready before on_connect succeeded: logged_in=%v state=%v", k.Store().Get("logged_in"), k.State())
		}
	}
	wiretest.Until(t, 10*time.Second, "chats and pings", func() bool {
		return srv.get(func() int { return min(srv.chats, srv.pings) }) >= 2*n
	})
	srv.broadcast("lowercase noise no rule names")
	wiretest.Until(t, 10*time.Second, "the unnamed frames", func() bool {
		s := tot.series(t, "event:other")
		return s.Counts[metrics.OK] == n
	})
	srv.restart()
	wiretest.Until(t, 10*time.Second, "every koi logged in twice", func() bool { return srv.loggedIn(2) == n && srv.open() == n })
	wiretest.Until(t, 10*time.Second, "every koi live again", func() bool {
		for _, k := range sw.kois {
			if k.State() != koi.Connected || k.Store().Get("logged_in") != true {
				return false
			}
		}
		return true
	})
	chats := srv.get(func() int { return srv.chats })
	wiretest.Until(t, 10*time.Second, "chats after the restart", func() bool { return srv.get(func() int { return srv.chats }) >= chats+n })
	if early := srv.get(func() int { return srv.early }); early != 0 {
		t.Errorf("%d frames reached the server before a login", early)
	}
	took := sw.stop(t)
	t.Logf("stop: every Run returned %v after cancel", took)
	wiretest.Until(t, 2*time.Second, "the server to see every close", func() bool { return srv.open() == 0 })

	if s := tot.series(t, "on_connect"); s.Counts[metrics.OK] != 2*n || s.Samples() != 2*n {
		t.Errorf("on_connect = %+v, want %d successes with latencies", s, 2*n)
	}
	for _, key := range []string{"on_connect:1", "on_connect:2"} {
		if s := tot.series(t, key); s.Counts[metrics.OK] != 2*n {
			t.Errorf("%s = %+v, want %d", key, s, 2*n)
		}
	}
	if s := tot.series(t, "on_disconnect"); s.Counts[metrics.OK] != n {
		t.Errorf("on_disconnect = %+v, want %d (the restart; not the stop)", s, n)
	}
	if s := tot.series(t, "event:chat"); s.Samples() == 0 {
		t.Errorf("event:chat = %+v, want fan-out delays from the rule's sent_at", s)
	} else if q, _ := s.Quantile(0.5); q > 5*time.Second {
		t.Errorf("fan-out delay median %v: the send time was misread", q)
	}
	for _, key := range []string{"event:logged_in", "event:OPEN", "event:PONG"} {
		if s := tot.series(t, key); s.Counts[metrics.OK] == 0 {
			t.Errorf("%s = %+v, want frames named by the text rules", key, s)
		}
	}
	if s := tot.series(t, "event:other"); s.Counts[metrics.OK] != n {
		t.Errorf("event:other = %+v, want the %d unnamed frames", s, n)
	}
	if s := tot.series(t, "event:invalid"); s.Total() != 0 {
		t.Errorf("event:invalid = %+v, want none", s)
	}
	for _, k := range sw.kois {
		if v, _ := k.Store().Get("last_chat").(string); !strings.HasPrefix(v, "MSG|lobby|") {
			t.Errorf("on_event chat saw %q, want the frame's text", v)
			break
		}
	}
}

// boot may open the socket with a connect step: on_connect runs inside it,
// boot carries on over the live connection, and the connection loop keeps
// that connection after boot (one dial).
func TestBootConnectStep(t *testing.T) {
	srv := newSessionServer(t)
	set := parseSet(t, fmt.Sprintf(`{
	  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN u{{ koiIndex }}", "await": {"match": "^OK LOGIN", "timeout_ms": 5000}}}]},
	  "boot": {"steps": [
	    {"pre_actions": ["{{ websocketURL \"%s\" }}"], "request": {"type": "connect", "timeout_ms": 5000}},
	    {"request": {"type": "ws", "text": "JOIN lobby", "await": {"match": "^OK JOIN", "timeout_ms": 5000}},
	     "post_actions": ["{{ setKoi \"joined\" true }}"]}]}}`, srv.url()))
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 1)
	k := sw.kois[0]
	select {
	case <-k.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("koi not ready within 10s (state %v)", k.State())
	}
	if k.Store().Get("joined") != true || k.State() != koi.Connected || !k.Connected() {
		t.Fatalf("after boot: joined=%v state=%v connected=%v", k.Store().Get("joined"), k.State(), k.Connected())
	}
	if s := tot.series(t, "boot:1"); s.Counts[metrics.OK] != 1 {
		t.Errorf("boot:1 = %+v, want the connect step to succeed once", s)
	}
	if d := srv.get(func() int { return len(srv.dials) }); d != 1 {
		t.Errorf("%d dials, want 1: the loop keeps boot's connection", d)
	}
	if s := tot.series(t, "on_connect"); s.Counts[metrics.OK] != 1 {
		t.Errorf("on_connect = %+v", s)
	}
	srv.restart()
	wiretest.Until(t, 10*time.Second, "a login on the new connection", func() bool { return srv.loggedIn(2) == 1 })
	sw.stop(t)
}

// Without a connect step the socket opens after boot: a ws step in boot
// fails at once ("websocket not connected"), it does not wait out its
// timeout for a socket that cannot open before boot ends.
func TestBootWSStepWithoutConnectFailsAtOnce(t *testing.T) {
	srv := newSessionServer(t)
	set := parseSet(t, `{"boot": {"steps": [{"request": {"type": "ws", "text": "PING early", "timeout_ms": 60000}}]}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 1)
	wiretest.Until(t, 30*time.Second, "two boot failures", func() bool { return sw.kois[0].Stats().BootFailures >= 2 })
	if s := tot.series(t, "boot:1"); s.Counts[metrics.Transport] < 2 {
		t.Errorf("boot:1 = %+v, want transport failures", s)
	}
	sw.stop(t)
}

// A server that never answers on_connect's login: each connection's
// on_connect fails (counted under on_connect, the socket closed 1000 "on_connect
// failed"), the koi redials with a growing backoff, its behaviors' ws sends
// never reach the server and fail after their timeout, and stop is immediate.
func TestOnConnectNeverAnswered(t *testing.T) {
	const await = 50 * time.Millisecond
	srv := newSessionServer(t)
	srv.silent = true
	set := parseSet(t, `{
	  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN u{{ koiIndex }}", "await": {"match": "^OK LOGIN", "timeout_ms": 50}}}]},
	  "behaviors": {"chat": {"frequency": 1, "steps": [{"request": {"type": "ws", "text": "CHAT lobby hi", "timeout_ms": 100}}]}}}`)
	const bmin, bmax = 20 * time.Millisecond, 320 * time.Millisecond
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()},
		TimeScale: 300, BackoffMin: bmin, BackoffMax: bmax, BackoffReset: time.Millisecond})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 1)
	k := sw.kois[0]
	wiretest.Until(t, 20*time.Second, "six dials", func() bool { return srv.get(func() int { return len(srv.dials) }) >= 6 })
	dials := locked(srv, func() []time.Time { return append([]time.Time(nil), srv.dials...) })
	// Dial i+1 follows dial i after on_connect's await and a backoff of at
	// least d/2, d = min(max, min·2^i): a counter reset by the failed
	// connections would wait only min/2 each time.
	for i := 3; i+1 < len(dials) && i < 5; i++ {
		d := min(bmax, bmin<<i)
		if gap := dials[i+1].Sub(dials[i]); gap < await+d/2 {
			t.Errorf("dial %d came %v after dial %d, want ≥ %v (await + half the backoff of attempt %d)", i+2, gap, i+1, await+d/2, i)
		}
	}
	select {
	case <-k.Ready():
		t.Error("ready although on_connect never succeeded")
	default:
	}
	if k.State() == koi.Connected {
		t.Error("state connected although on_connect never succeeded")
	}
	wiretest.Until(t, 10*time.Second, "behaviors failing not connected", func() bool {
		s := tot.series(t, "ws:send")
		return s.Counts[metrics.Transport] >= 2
	})
	took := sw.stop(t)
	t.Logf("stop: Run returned %v after cancel", took)
	if s := tot.series(t, "on_connect"); s.Counts[metrics.Timeout] < 5 || s.Counts[metrics.OK] != 0 {
		t.Errorf("on_connect = %+v, want ≥ 5 timeouts and no success", s)
	}
	if c := srv.get(func() int { return srv.chats + srv.early }); c != 0 {
		t.Errorf("%d frames other than LOGIN reached the server", c)
	}
	codes := locked(srv, func() []int { return append([]int(nil), srv.closeCodes...) })
	texts := locked(srv, func() []string { return append([]string(nil), srv.closeTexts...) })
	if len(codes) < 5 || codes[0] != websocket.CloseNormalClosure || texts[0] != "on_connect failed" {
		t.Errorf("close frames %v %q, want 1000 \"on_connect failed\" per failed on_connect", codes, texts)
	}
	if s := tot.series(t, "ws:disconnect"); s.Total() != 0 {
		t.Errorf("ws:disconnect = %+v: a close koi chose is not a lost connection", s)
	}
}

// Binary frames are named by prefix_hex rules and by a template (their
// value is the payload as a string); awaits match the classified type; an
// unnamed binary frame (and the text frame no text rule names) counts
// under event:other.
func TestBinaryFramesByPrefix(t *testing.T) {
	srv := newSessionServer(t)
	srv.binary = [][]byte{{0x20, 0x02, 0x00, 0x00}, {0x90, 0x03, 0x00, 0x01, 0x00}, {0x77, 0x00}, {0xd0, 0x00}}
	set := parseSet(t, `{
	  "frames": {"binary": [
	    {"prefix_hex": "20", "type": "connack"},
	    {"prefix_hex": "90", "type": "suback"},
	    {"template": "{{ if eq (len .) 2 }}{{ if eq (printf \"%x\" .) \"d000\" }}pingresp{{ end }}{{ end }}"}]},
	  "on_event": {"suback": ["{{ setKoi \"suback_len\" (len .) }}"]},
	  "behaviors": {}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 1)
	k := sw.kois[0]
	// Stats count a frame before it is classified: wait for the series.
	wiretest.Until(t, 5*time.Second, "five frames classified", func() bool {
		return tot.series(t, "event:pingresp").Total()+tot.series(t, "event:other").Total() >= 3
	})
	wiretest.Until(t, 5*time.Second, "the suback handler", func() bool { return k.Store().Get("suback_len") != nil })
	if got := fmt.Sprint(k.Store().Get("suback_len")); got != "5" {
		t.Errorf("suback value length %s, want 5 (the raw bytes)", got)
	}
	for key, want := range map[string]int{"event:connack": 1, "event:suback": 1, "event:pingresp": 1, "event:other": 2} {
		if got := int(tot.series(t, key).Counts[metrics.OK]); got != want {
			t.Errorf("%s = %d frames, want %d", key, got, want)
		}
	}
	sw.stop(t)
}

// on_event sequences may send (a server ping answered), run only on a
// live connection, and at most four at once per koi: more are dropped
// and counted.
func TestEventSequences(t *testing.T) {
	srv := newSessionServer(t)
	var answered int
	srv.onText = func(c *websocket.Conn, msg string) {
		if msg == "PONG!" {
			answered++
		}
	}
	set := parseSet(t, `{
	  "frames": {"text": [{"match": "^(?P<type>[a-z]+)\\?"}]},
	  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN u1", "await": {"match": "^OK LOGIN", "timeout_ms": 5000}}}]},
	  "on_event": {
	    "ping": {"steps": [{"request": {"type": "ws", "text": "PONG!"}}]},
	    "slow": {"steps": [{"pre_actions": ["{{ setKoi \"slow\" (get \"event\") }}"], "delay_after_ms": 60000}]}},
	  "behaviors": {}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 1)
	k := sw.kois[0]
	<-k.Ready()
	srv.broadcast("ping?")
	wiretest.Until(t, 5*time.Second, "the pong", func() bool { return srv.get(func() int { return answered }) == 1 })
	for range 10 {
		srv.broadcast("slow?")
	}
	wiretest.Until(t, 5*time.Second, "ten slow frames", func() bool {
		s := tot.series(t, "event:slow")
		return s.Counts[metrics.OK] == 10
	})
	if s := tot.series(t, "on_event:slow"); s.Counts[metrics.Error] != 6 {
		t.Errorf("on_event:slow = %+v, want 6 busy drops (4 running)", s)
	}
	wiretest.Until(t, 5*time.Second, "the handler to see the frame as its event", func() bool { return k.Store().Get("slow") == "slow?" })
	took := sw.stop(t)
	t.Logf("stop with 4 sequences in a 60 s delay: %v", took)
	if s := tot.series(t, "on_event:ping"); s.Counts[metrics.OK] != 1 {
		t.Errorf("on_event:ping = %+v", s)
	}
}

// While paused nothing is sent: a koi paused before it connects keeps its
// socket open and runs on_connect only after resume.
func TestOnConnectWaitsForResume(t *testing.T) {
	srv := newSessionServer(t)
	set := parseSet(t, fmt.Sprintf(sessionSet, 5000))
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}})
	k := rt.New(behaviors.Identity{Index: 1}, 1)
	k.Pause()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wiretest.Until(t, 5*time.Second, "the socket open while paused", func() bool { return srv.open() == 1 && k.Connected() })
	// Give a wrong implementation time to log in while paused.
	time.Sleep(200 * time.Millisecond)
	if n := srv.loggedIn(1); n != 0 {
		t.Fatalf("%d logins while paused", n)
	}
	if k.State() == koi.Connected {
		t.Error("connected (live) before on_connect ran")
	}
	k.Resume()
	wiretest.Until(t, 5*time.Second, "the login after resume", func() bool { return srv.loggedIn(1) == 1 })
	select {
	case <-k.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not ready after on_connect succeeded")
	}
}

// A pause in the middle of on_connect closes the half set up session
// instead of logging in a second time on the same socket (which MQTT,
// Socket.IO and graphql-ws servers refuse); after the resume a new
// connection logs in once.
func TestPauseDuringOnConnectReconnects(t *testing.T) {
	srv := newSessionServer(t)
	srv.silent = true // LOGIN is never answered: on_connect waits in its await
	perConn := map[*websocket.Conn]int{}
	srv.onText = func(c *websocket.Conn, msg string) {
		if strings.HasPrefix(msg, "LOGIN") {
			perConn[c]++
		}
	}
	set := parseSet(t, fmt.Sprintf(sessionSet, 30000))
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()},
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	k := rt.New(behaviors.Identity{Index: 1}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wiretest.Until(t, 5*time.Second, "the first LOGIN", func() bool { return srv.get(func() int { return len(perConn) }) == 1 })
	k.Pause()
	wiretest.Until(t, 5*time.Second, "the session closed for the pause", func() bool {
		return locked(srv, func() bool {
			for _, r := range srv.closeTexts {
				if r == "paused during on_connect" {
					return true
				}
			}
			return false
		})
	})
	locked(srv, func() bool { srv.silent = false; return true })
	k.Resume()
	wiretest.Until(t, 5*time.Second, "a login after resume", func() bool { return srv.loggedIn(1) == 1 })
	locked(srv, func() bool {
		for _, n := range perConn {
			if n > 1 {
				t.Errorf("a connection got %d LOGIN frames: on_connect ran twice on one socket", n)
			}
		}
		return true
	})
}

// A server that hangs up in the middle of on_connect (a refused login) is
// a transport failure of on_connect, not a cancellation: only a pause or
// a stop cancels it.
func TestServerClosingDuringOnConnectIsTransport(t *testing.T) {
	srv := newSessionServer(t)
	srv.onText = func(c *websocket.Conn, msg string) {
		if strings.HasPrefix(msg, "LOGIN") {
			c.Close()
		}
	}
	set := parseSet(t, fmt.Sprintf(sessionSet, 30000))
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()},
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	sw := startSwarm(t, rt, 1)
	m := newTotals(rt)
	wiretest.Until(t, 10*time.Second, "three refused logins", func() bool {
		return m.series(t, "on_connect").Counts[metrics.Transport] >= 3
	})
	if c := m.series(t, "on_connect").Counts[metrics.Canceled]; c != 0 {
		t.Errorf("%d refused logins counted canceled", c)
	}
	sw.stop(t)
}

// Frames a server sends right behind on_connect's last reply (retained
// messages, a welcome burst) reach on_event once on_connect has
// succeeded, every one of them and in order, however the reader and the
// on_connect goroutine interleave.
func TestFramesBehindOnConnectReachOnEvent(t *testing.T) {
	const burst = 8
	t.Run("text", func(t *testing.T) {
		framesBehindOnConnect(t, burst, func(i int) string { return fmt.Sprintf("EV %d", i) },
			`{{ setKoi \"seen\" (printf \"%v%v,\" (get \"seen\" | default \"\") (trimPrefix \"EV \" .)) }}`)
	})
	t.Run("json", func(t *testing.T) { // decoded only when something reads it
		framesBehindOnConnect(t, burst, func(i int) string { return fmt.Sprintf(`{"type": "EV", "n": %d}`, i) },
			`{{ setKoi \"seen\" (printf \"%v%v,\" (get \"seen\" | default \"\") .n) }}`)
	})
}

func framesBehindOnConnect(t *testing.T, burst int, frame func(int) string, action string) {
	srv := newSessionServer(t)
	for i := range burst {
		srv.afterLogin = append(srv.afterLogin, frame(i))
	}
	set := parseSet(t, `{
	  "frames": {"text": [{"prefix": "OK LOGIN", "type": "logged_in"}, {"match": "^(?P<type>[A-Z]+) "}]},
	  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN u{{ koiIndex }}", "await": {"type": "logged_in", "timeout_ms": 5000}}}]},
	  "on_event": {"EV": ["`+action+`"]},
	  "behaviors": {}}`)
	for round := range 20 { // the race is between two goroutines: try it many times
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: srv.url()}})
		sw := startSwarm(t, rt, 1)
		k := sw.kois[0]
		want := ""
		for i := range burst {
			want += fmt.Sprintf("%d,", i)
		}
		wiretest.WaitFor(t, 5*time.Second, "every frame of the burst handled in order", func() error {
			if got, _ := k.Store().Get("seen").(string); got != want {
				return fmt.Errorf("round %d: handled %q, want %q", round, got, want)
			}
			return nil
		})
		sw.stop(t)
	}
}

// A connect step fails after its timeout_ms when on_connect never
// succeeds, and at once without a websocket URL; boot is retried with
// backoff either way, and stop ends it at once.
func TestBootConnectFails(t *testing.T) {
	srv := newSessionServer(t)
	srv.silent = true
	for name, c := range map[string]struct {
		url, outcome string
		o            metrics.Outcome
	}{
		"on_connect never answered": {srv.url(), "timeout", metrics.Timeout},
		"no websocket URL":          {"", "error", metrics.Error},
	} {
		t.Run(name, func(t *testing.T) {
			pre := ""
			if c.url != "" {
				pre = fmt.Sprintf(`"pre_actions": ["{{ websocketURL \"%s\" }}"], `, c.url)
			}
			set := parseSet(t, `{
			  "on_connect": {"steps": [{"request": {"type": "ws", "text": "LOGIN u1", "await": {"match": "^OK LOGIN", "timeout_ms": 60000}}}]},
			  "boot": {"steps": [{`+pre+`"request": {"type": "connect", "timeout_ms": 100}}]}}`)
			rt := newRuntime(t, koi.RuntimeConfig{Set: set, BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
			tot := newTotals(rt)
			sw := startSwarm(t, rt, 1)
			wiretest.Until(t, 20*time.Second, "two boot failures", func() bool { return sw.kois[0].Stats().BootFailures >= 2 })
			if s := tot.series(t, "boot:1"); s.Counts[c.o] < 2 {
				t.Errorf("boot:1 = %+v, want %s failures", s, c.outcome)
			}
			select {
			case <-sw.kois[0].Ready():
				t.Error("ready although boot never succeeded")
			default:
			}
			took := sw.stop(t)
			t.Logf("stop: %v", took)
		})
	}
}
