package koi_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// frameServer is a websocket server whose replies a test scripts: every
// frame a koi sends goes to handle, with a writer back to that connection.
type frameServer struct {
	srv    *httptest.Server
	handle func(reply func(msgType int, data []byte), msgType int, data []byte)

	mu       sync.Mutex
	received []receivedFrame
}

type receivedFrame struct {
	msgType int
	data    []byte
}

func newFrameServer(t testing.TB, handle func(reply func(int, []byte), msgType int, data []byte)) *frameServer {
	t.Helper()
	s := &frameServer{handle: handle}
	up := websocket.Upgrader{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		var wmu sync.Mutex
		reply := func(mt int, data []byte) {
			wmu.Lock()
			defer wmu.Unlock()
			_ = c.WriteMessage(mt, data)
		}
		for {
			mt, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.received = append(s.received, receivedFrame{mt, data})
			s.mu.Unlock()
			s.handle(reply, mt, data)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *frameServer) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }

func (s *frameServer) frames() []receivedFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]receivedFrame(nil), s.received...)
}

// startKoi runs a koi connected to url until the test ends.
func startKoi(t *testing.T, set *behaviors.Set, url string) (*koi.Runtime, *koi.Koi, context.Context) {
	t.Helper()
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: url}})
	k := rt.New(behaviors.Identity{Index: 1}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wiretest.Until(t, 10*time.Second, "the websocket", k.Connected)
	return rt, k, ctx
}

// runConcurrently runs seq once per id, all at once, each with param "id"
// (and name) set, and returns their errors by id.
func runConcurrently(ctx context.Context, k *koi.Koi, seq *behaviors.Sequence, param string, ids []string) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := k.RunSequence(ctx, seq, map[string]string{param: id})
			mu.Lock()
			errs[id] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}

// Replies that come back out of order each reach the request that asked:
// the await's fields (JSON, with a numeric id against a templated string)
// and its pattern are rendered per request. A constant await would hand
// every request the first reply.
func TestAwaitsMatchTheirOwnReplies(t *testing.T) {
	const n = 8
	var mu sync.Mutex
	var pending []func()
	// The server holds each kind of request until all n have arrived, then
	// answers them last first, after a decoy no request asked for.
	hold := func(reply func(int, []byte), answer []byte, decoy []byte) {
		mu.Lock()
		pending = append(pending, func() { reply(websocket.TextMessage, answer) })
		if len(pending) < n {
			mu.Unlock()
			return
		}
		batch := pending
		pending = nil
		mu.Unlock()
		reply(websocket.TextMessage, decoy)
		for i := len(batch) - 1; i >= 0; i-- {
			batch[i]()
		}
	}
	srv := newFrameServer(t, func(reply func(int, []byte), mt int, data []byte) {
		if text, ok := strings.CutPrefix(string(data), "REQ "); ok {
			hold(reply, []byte("REP "+text+" payload-"+text), []byte("REP 999 decoy"))
			return
		}
		var req struct{ Type, ID string }
		if json.Unmarshal(data, &req) != nil || req.Type != "req" {
			return
		}
		id, _ := strconv.Atoi(req.ID)
		answer, _ := json.Marshal(map[string]any{"type": "reply", "id": id, "payload": map[string]any{"echo": "echo-" + req.ID}})
		hold(reply, answer, []byte(`{"type":"reply","id":999,"payload":{"echo":"decoy"}}`))
	})
	set := parseSet(t, `{"behaviors": {
	  "byField": {"steps": [{"request": {"type": "ws", "key": "rpc", "json": {"type": "req", "id": "{{ param \"id\" }}"},
	      "await": {"type": "reply", "fields": {"id": "{{ param \"id\" }}"}, "timeout_ms": 20000},
	      "post_actions": ["{{ setKoi (printf \"field-%s\" (param \"id\")) .payload.echo }}"]}}]},
	  "byMatch": {"steps": [{"request": {"type": "ws", "text": "REQ {{ param \"id\" }}",
	      "await": {"match": "^REP {{ param \"id\" }} ", "timeout_ms": 20000},
	      "post_actions": ["{{ setKoi (printf \"match-%s\" (param \"id\")) . }}"]}}]},
	  "badPattern": {"steps": [{"request": {"type": "ws", "text": "x", "await": {"match": "{{ param \"id\" }}", "timeout_ms": 20000}}}]}}}`)
	rt, k, ctx := startKoi(t, set, srv.url())
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	for name, prefix := range map[string]string{"byField": "field-", "byMatch": "match-"} {
		errs := runConcurrently(ctx, k, set.Behavior(name).Sequence, "id", ids)
		for _, id := range ids {
			if errs[id] != nil {
				t.Errorf("%s %s: %v", name, id, errs[id])
			}
		}
		for _, id := range ids {
			want := "echo-" + id
			if name == "byMatch" {
				want = "REP " + id + " payload-" + id
			}
			if got := k.Store().Get(prefix + id); got != want {
				t.Errorf("%s %s: post_actions saw %#v, want %q", name, id, got, want)
			}
		}
	}
	// A templated pattern that renders to a bad regular expression fails
	// the request at once, with an error naming where it was written.
	start := time.Now()
	err := k.RunSequence(ctx, set.Behavior("badPattern").Sequence, map[string]string{"id": "(unclosed"})
	if err == nil || !strings.Contains(err.Error(), `badPattern" › step 1 › request › await › match: the rendered pattern "(unclosed" is not a regular expression`) {
		t.Errorf("bad rendered pattern: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("a bad rendered pattern took %v: it waited for the await", time.Since(start))
	}
	snap := rt.Metrics().Snapshot()
	if s := snap.Series["ws:rpc"]; s == nil || s.Counts[metrics.OK] != n || s.Total() != n {
		t.Errorf("ws:rpc (the named key) = %+v, want %d ok", s, n)
	}
	if s := snap.Series["ws:match"]; s == nil || s.Counts[metrics.OK] != n || s.Counts[metrics.Error] != 1 {
		t.Errorf("ws:match = %+v, want %d ok and 1 error", s, n)
	}
	if s := snap.Series["ws:reply"]; s != nil {
		t.Errorf("a named request was also recorded under its default key: %+v", s)
	}
}

// Binary frames go out as binary messages, from a templated hex payload, a
// base64 literal or raw bytes, and a `when` predicate picks each reply by
// its packet id out of replies in reverse order.
func TestBinaryAwaitWhen(t *testing.T) {
	pids := []string{"1", "2", "258", "4096", "65535"}
	var mu sync.Mutex
	var pending [][]byte
	srv := newFrameServer(t, func(reply func(int, []byte), mt int, data []byte) {
		if mt != websocket.BinaryMessage || len(data) < 3 {
			return
		}
		switch data[0] {
		case 0x30: // "publish": acked with 0x40 + the packet id, all at once, last first
			mu.Lock()
			pending = append(pending, []byte{0x40, data[1], data[2], 0xAA, 0xBB})
			if len(pending) < len(pids) {
				mu.Unlock()
				return
			}
			batch := pending
			pending = nil
			mu.Unlock()
			for i := len(batch) - 1; i >= 0; i-- {
				reply(websocket.BinaryMessage, batch[i])
			}
		default: // echoed as it came
			reply(websocket.BinaryMessage, data)
		}
	})
	set := parseSet(t, `{"behaviors": {
	  "publish": {"steps": [{"request": {"type": "ws", "key": "publish",
	      "binary": "30 {{ printf \"%04x\" (atoi (param \"pid\")) }} {{ param \"body\" }}", "encoding": "hex",
	      "await": {"when": "{{ and (eq (substr 0 1 .) \"@\") (eq (printf \"%x\" (substr 1 3 .)) (printf \"%04x\" (atoi (param \"pid\")))) }}",
	                "timeout_ms": 20000},
	      "post_actions": ["{{ setKoi (printf \"ack-%s\" (param \"pid\")) (b64enc .) }}"]}}]},
	  "literal": {"steps": [{"request": {"type": "ws", "binary": "UAABAg==",
	      "await": {"when": "{{ eq (b64enc .) \"UAABAg==\" }}", "timeout_ms": 20000}}}]},
	  "raw": {"steps": [{"pre_actions": ["{{ set \"pkt\" (b64dec \"YP8A/w==\") }}"],
	      "request": {"type": "ws", "binary": "{{ get \"pkt\" }}", "encoding": "raw",
	      "await": {"when": "{{ eq . (get \"pkt\") }}", "timeout_ms": 20000}}}]},
	  "badHex": {"steps": [{"request": {"type": "ws", "binary": "{{ param \"pid\" }}", "encoding": "hex"}}]}}}`)
	rt, k, ctx := startKoi(t, set, srv.url())

	var wg sync.WaitGroup
	errs := make([]error, len(pids))
	for i, pid := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = k.RunSequence(ctx, set.Behavior("publish").Sequence, map[string]string{"pid": pid, "body": "cafe"})
		}()
	}
	wg.Wait()
	for i, pid := range pids {
		if errs[i] != nil {
			t.Errorf("pid %s: %v", pid, errs[i])
			continue
		}
		p, _ := strconv.Atoi(pid)
		want := []byte{0x40, 0, 0, 0xAA, 0xBB}
		binary.BigEndian.PutUint16(want[1:], uint16(p))
		got, _ := k.Store().Get("ack-" + pid).(string)
		if got != b64(want) {
			t.Errorf("pid %s: post_actions saw %q, want %q", pid, got, b64(want))
		}
	}
	for _, name := range []string{"literal", "raw"} {
		if err := k.RunSequence(ctx, set.Behavior(name).Sequence, nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// What the server received: binary messages with exactly these bytes.
	want := map[string]bool{"UAABAg==": true, "YP8A/w==": true}
	for _, pid := range pids {
		p, _ := strconv.Atoi(pid)
		b := []byte{0x30, 0, 0, 0xca, 0xfe}
		binary.BigEndian.PutUint16(b[1:], uint16(p))
		want[b64(b)] = true
	}
	got := srv.frames()
	if len(got) != len(want) {
		t.Errorf("server received %d frames, want %d", len(got), len(want))
	}
	for _, f := range got {
		if f.msgType != websocket.BinaryMessage || !want[b64(f.data)] {
			t.Errorf("server received message type %d % x, not one of the payloads sent", f.msgType, f.data)
		}
	}
	// A rendered payload that does not decode fails the step, sends nothing.
	err := k.RunSequence(ctx, set.Behavior("badHex").Sequence, map[string]string{"pid": "zz"})
	if err == nil || !strings.Contains(err.Error(), "binary payload is not hex") {
		t.Errorf("bad hex payload: %v", err)
	}
	if n := len(srv.frames()); n != len(want) {
		t.Errorf("a payload that did not decode was sent: %d frames", n)
	}
	snap := rt.Metrics().Snapshot()
	if s := snap.Series["ws:publish"]; s == nil || s.Counts[metrics.OK] != uint64(len(pids)) {
		t.Errorf("ws:publish = %+v", s)
	}
	if s := snap.Series["ws:send"]; s == nil || s.Counts[metrics.Error] != 1 {
		t.Errorf("ws:send = %+v, want the bad payload's error", s)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A failing `when` never matches; the timeout says how often and why.
func TestAwaitWhenFailureReported(t *testing.T) {
	srv := newFrameServer(t, func(reply func(int, []byte), mt int, data []byte) {
		reply(websocket.TextMessage, []byte("PONG"))
	})
	set := parseSet(t, `{"behaviors": {"x": {"steps": [{"request": {"type": "ws", "text": "PING",
	    "await": {"when": "{{ fail \"boom\" }}", "timeout_ms": 300}}}]}}}`)
	_, k, ctx := startKoi(t, set, srv.url())
	err := k.RunSequence(ctx, set.Behavior("x").Sequence, nil)
	if err == nil || !strings.Contains(err.Error(), "timeout") || !strings.Contains(err.Error(), `"when" failed on`) || !strings.Contains(err.Error(), "boom") {
		t.Errorf("await whose when fails: %v", err)
	}
}

// A declared error frame fails the step with outcome Error and a quote of
// the frame: for a send without await as soon as it comes within the
// window, for an await before the awaited frame. A send whose window
// passes quietly counts ok, with the send's latency, not the window's. An
// error frame for another request (another id) fails nothing.
func TestErrorFrames(t *testing.T) {
	srv := newFrameServer(t, func(reply func(int, []byte), mt int, data []byte) {
		cmd, id, _ := strings.Cut(string(data), " ")
		errFrame := func(id string) []byte {
			return []byte(`{"type":"error","id":"` + id + `","msg":"no such room ` + strings.Repeat("x", 300) + `"}`)
		}
		switch cmd {
		case "BAD":
			reply(websocket.TextMessage, errFrame(id))
		case "ASK":
			reply(websocket.TextMessage, errFrame("someone-else"))
			reply(websocket.TextMessage, []byte(`{"type":"ok","id":"`+id+`"}`))
		case "ASKBAD":
			reply(websocket.TextMessage, errFrame(id))
			reply(websocket.TextMessage, []byte(`{"type":"ok","id":"`+id+`"}`))
		}
	})
	const window = 2 * time.Second
	set := parseSet(t, fmt.Sprintf(`{"behaviors": {
	  "bad": {"steps": [{"request": {"type": "ws", "key": "bad", "text": "BAD 1", "error": {"type": "error", "within_ms": 60000}}}]},
	  "good": {"steps": [{"request": {"type": "ws", "key": "good", "text": "GOOD", "error": {"type": "error", "within_ms": %d}}}]},
	  "plain": {"steps": [{"request": {"type": "ws", "text": "BAD 9"}}]},
	  "ask": {"steps": [{"request": {"type": "ws", "key": "ask", "text": "{{ param \"cmd\" }} {{ param \"id\" }}",
	      "await": {"type": "ok", "fields": {"id": "{{ param \"id\" }}"}, "timeout_ms": 60000},
	      "error": {"type": "error", "fields": {"id": "{{ param \"id\" }}"}}}}]}}}`, window.Milliseconds()))
	rt, k, ctx := startKoi(t, set, srv.url())

	start := time.Now()
	err := k.RunSequence(ctx, set.Behavior("bad").Sequence, nil)
	if err == nil || !strings.Contains(err.Error(), `error frame: "{\"type\":\"error\",\"id\":\"1\",\"msg\":\"no such room`) || !strings.Contains(err.Error(), "bytes)") {
		t.Errorf("send answered by an error frame: %v", err)
	}
	if len(err.Error()) > 400 {
		t.Errorf("the error quotes %d bytes: the frame is not clipped", len(err.Error()))
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the error frame failed the step after %v: it waited out the window", took)
	}

	start = time.Now()
	if err := k.RunSequence(ctx, set.Behavior("good").Sequence, nil); err != nil {
		t.Errorf("quiet send: %v", err)
	}
	if took := time.Since(start); took < window {
		t.Errorf("the quiet send returned after %v, before its %v window closed", took, window)
	}
	// Without an error declaration, a send the server answers with an error
	// still counts ok when written (as before).
	if err := k.RunSequence(ctx, set.Behavior("plain").Sequence, nil); err != nil {
		t.Errorf("plain send: %v", err)
	}
	if err := k.RunSequence(ctx, set.Behavior("ask").Sequence, map[string]string{"cmd": "ASK", "id": "2"}); err != nil {
		t.Errorf("an await with another request's error frame in between: %v", err)
	}
	err = k.RunSequence(ctx, set.Behavior("ask").Sequence, map[string]string{"cmd": "ASKBAD", "id": "3"})
	if err == nil || !strings.Contains(err.Error(), `\"id\":\"3\"`) {
		t.Errorf("an await whose own error frame came first: %v", err)
	}

	snap := rt.Metrics().Snapshot()
	if s := snap.Series["ws:bad"]; s == nil || s.Counts[metrics.Error] != 1 || s.Total() != 1 {
		t.Errorf("ws:bad = %+v, want 1 error", s)
	}
	s := snap.Series["ws:good"]
	if s == nil || s.Counts[metrics.OK] != 1 || s.Total() != 1 {
		t.Fatalf("ws:good = %+v, want 1 ok", s)
	}
	if d, ok := s.Quantile(1); !ok || d >= window {
		t.Errorf("ws:good latency %v (%v): the window was counted, not the send", d, ok)
	}
	if s := snap.Series["ws:send"]; s == nil || s.Counts[metrics.OK] != 1 {
		t.Errorf("ws:send = %+v, want the plain send ok", s)
	}
	if s := snap.Series["ws:ask"]; s == nil || s.Counts[metrics.OK] != 1 || s.Counts[metrics.Error] != 1 {
		t.Errorf("ws:ask = %+v, want 1 ok and 1 error", s)
	}
}

// A halted run is counted (outcome Halted) without a latency sample, for
// behaviors, formations and their steps; runs that end otherwise keep
// their samples.
func TestHaltedRunsHaveNoLatency(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {
	  "quits": {"frequency": 1, "steps": [{"pre_actions": ["{{ halt \"nothing to do\" }}"]}]},
	  "works": {"frequency": 1, "steps": [{"request": {"type": "http", "key": "works", "url": "`+srv.srv.URL+`/echo"}}]},
	  "form": {"steps": [
	      {"request": {"type": "http", "url": "`+srv.srv.URL+`/echo"}},
	      {"request": {"type": "http", "key": "halts", "url": "`+srv.srv.URL+`/{{ halt \"no url\" }}"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, TimeScale: 600})
	k := rt.New(behaviors.Identity{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-k.Ready()
	k.Launch("f", set.Behavior("form").Sequence, nil, 0)

	// Snapshot drains the recorder, so sum what each one returns.
	totals := map[string]*metrics.SeriesSnapshot{}
	samples := map[string]uint64{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for key, s := range rt.Metrics().Snapshot().Series {
			if totals[key] == nil {
				totals[key] = &metrics.SeriesSnapshot{}
			}
			for o, c := range s.Counts {
				totals[key].Counts[o] += c
			}
			samples[key] += s.Samples()
		}
		if totals["behavior:quits"] != nil && totals["behavior:quits"].Counts[metrics.Halted] >= 3 &&
			totals["behavior:works"] != nil && totals["behavior:works"].Counts[metrics.OK] >= 3 &&
			totals["formation:f"] != nil && totals["formation:f"].Total() == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tt := range []struct {
		key     string
		outcome metrics.Outcome
		sampled bool
	}{
		{"behavior:quits", metrics.Halted, false},
		{"behavior:works", metrics.OK, true},
		{"http:works", metrics.OK, true},
		{"formation:f", metrics.Halted, false},
		{"formation:f:1", metrics.OK, true},
		{"formation:f:2", metrics.Halted, false},
		{"http:halts", metrics.Halted, false},
	} {
		s := totals[tt.key]
		if s == nil || s.Counts[tt.outcome] == 0 || s.Counts[tt.outcome] != s.Total() {
			t.Errorf("%s = %+v, want only %v", tt.key, s, tt.outcome)
			continue
		}
		if got := samples[tt.key]; (got > 0) != tt.sampled {
			t.Errorf("%s: %d latency samples for %d runs (sampled: want %v)", tt.key, got, s.Total(), tt.sampled)
		}
	}
}
