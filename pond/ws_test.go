package pond

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"

	"github.com/gorilla/websocket"
)

func TestFanOutExactlyOnce(t *testing.T) {
	s := openTest(t, Config{})
	const n = 40
	conns := make([]*client, n)
	for i := range conns {
		conns[i] = dial(t, s, i)
	}
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == n })
	r := mustOK(t, s, 7, "chat.postMessage", map[string]string{"channel": "C000000", "text": "to everyone"})
	var wg sync.WaitGroup
	errs := make(chan string, 3*n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ev map[string]any
			select {
			case ev = <-c.events:
			case <-time.After(5 * time.Second):
				errs <- "no event on conn " + UserID(i)
				return
			}
			if ev["type"] != "message" || ev["channel"] != "C000000" || ev["user"] != "U000007" ||
				ev["text"] != "to everyone" || ev["ts"] != r.str("ts") {
				errs <- "wrong event"
			}
			if at, ok := ev["sent_at"].(float64); !ok || at < float64(time.Now().Add(-time.Minute).UnixMilli()) {
				errs <- "bad sent_at"
			}
			// Exactly one: nothing else follows.
			select {
			case ev := <-c.events:
				errs <- fmt.Sprintf("extra frame %v on conn %s", ev, UserID(i))
			case <-time.After(150 * time.Millisecond):
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := s.Stats().EventsSent; got < n {
		t.Errorf("events_sent = %d, want ≥ %d", got, n)
	}
}

func TestFanOutOnlyToMembers(t *testing.T) {
	s := openTest(t, Config{})
	in, _ := memberChannel(t, s, 0)
	outsider := 0
	for in.members.has(outsider) {
		outsider++
	}
	member := in.members.next(1)
	a := dial(t, s, member)
	b := dial(t, s, outsider)
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == 2 })
	poster := in.members.next(0)
	r := mustOK(t, s, poster, "chat.postMessage", map[string]string{"channel": in.id, "text": "members only"})
	if ev := a.readType(t, "message"); ev["ts"] != r.str("ts") {
		t.Errorf("member got %v", ev)
	}
	b.none(t, 200*time.Millisecond)

	// After joining, the outsider receives the channel's events.
	mustOK(t, s, outsider, "conversations.join", map[string]string{"channel": in.id})
	mustOK(t, s, poster, "chat.postMessage", map[string]string{"channel": in.id, "text": "welcome"})
	if ev := b.readType(t, "message"); ev["text"] != "welcome" {
		t.Errorf("joined user got %v", ev)
	}
}

func TestReactionMarkPresenceEvents(t *testing.T) {
	s := openTest(t, Config{})
	a, b := dial(t, s, 1), dial(t, s, 2)
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == 2 })
	r := mustOK(t, s, 1, "chat.postMessage", map[string]string{"channel": "C000001", "text": "react to me"})
	a.readType(t, "message")
	b.readType(t, "message")
	mustOK(t, s, 2, "reactions.add", map[string]string{"channel": "C000001", "timestamp": r.str("ts"), "name": "fish"})
	for _, c := range []*client{a, b} {
		ev := c.readType(t, "reaction_added")
		item := ev["item"].(map[string]any)
		if ev["user"] != "U000002" || ev["reaction"] != "fish" || ev["item_user"] != "U000001" ||
			item["channel"] != "C000001" || item["ts"] != r.str("ts") {
			t.Errorf("reaction_added = %v", ev)
		}
	}
	mustOK(t, s, 2, "reactions.remove", map[string]string{"channel": "C000001", "timestamp": r.str("ts"), "name": "fish"})
	if ev := a.readType(t, "reaction_removed"); ev["reaction"] != "fish" {
		t.Errorf("reaction_removed = %v", ev)
	}
	b.readType(t, "reaction_removed")

	// channel_marked and presence_change go to the user's own connections.
	mustOK(t, s, 2, "conversations.mark", map[string]string{"channel": "C000001", "ts": r.str("ts")})
	if ev := b.readType(t, "channel_marked"); ev["channel"] != "C000001" || ev["ts"] != r.str("ts") {
		t.Errorf("channel_marked = %v", ev)
	}
	mustOK(t, s, 2, "users.setPresence", map[string]string{"presence": "away"})
	if ev := b.readType(t, "presence_change"); ev["user"] != "U000002" || ev["presence"] != "away" {
		t.Errorf("presence_change = %v", ev)
	}
	a.none(t, 150*time.Millisecond)
}

func TestClientFrames(t *testing.T) {
	s := openTest(t, Config{})
	a, b := dial(t, s, 1), dial(t, s, 2)
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == 2 })
	a.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":42}`))
	if ev := a.readType(t, "pong"); ev["reply_to"] != 42.0 {
		t.Errorf("pong = %v", ev)
	}
	a.WriteMessage(websocket.TextMessage, []byte(`{"type":"typing","channel":"C000000"}`))
	if ev := b.readType(t, "user_typing"); ev["user"] != "U000001" || ev["channel"] != "C000000" {
		t.Errorf("user_typing = %v", ev)
	}
	a.none(t, 150*time.Millisecond) // not echoed to the typist

	// Bad frames get an error frame and are counted; the connection lives.
	for _, f := range []string{`{"type":`, `"just a string"`, `{"type":"dance"}`, `{"type":"typing","channel":"C999999"}`, `{"type":"ping","id":{"x":1}}`} {
		a.WriteMessage(websocket.TextMessage, []byte(f))
		ev := a.next(t)
		if ev["type"] != "error" && ev["type"] != "pong" {
			t.Errorf("frame %s answered %v", f, ev)
		}
	}
	if got := s.Stats().BadFrames; got != 4 {
		t.Errorf("bad_frames = %d, want 4", got)
	}
	// An oversized frame closes the connection cleanly (1009).
	a.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 20000)+`"}`))
	if err := a.closed(t); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("oversized frame: %v, want close 1009", err)
	}
	// A binary frame closes with 1003.
	b.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	if err := b.closed(t); !websocket.IsCloseError(err, websocket.CloseUnsupportedData) {
		t.Errorf("binary frame: %v, want close 1003", err)
	}
	wiretest.Until(t, 10*time.Second, "disconnects", func() bool { st := s.Stats(); return st.Disconnects == 2 && st.WebsocketsOpen == 0 })
}

func TestWebsocketAuth(t *testing.T) {
	s := openTest(t, Config{TicketTTL: time.Minute})
	wsURL := "ws://" + s.Addr() + "/ws"
	// A bearer token works on the upgrade.
	h := http.Header{"Authorization": {"Bearer " + Token(3)}}
	c, _, err := websocket.DefaultDialer.Dial(wsURL, h)
	if err != nil {
		t.Fatalf("bearer upgrade: %v", err)
	}
	if ev := newClient(t, c).next(t); ev["type"] != "hello" {
		t.Errorf("hello = %v", ev)
	}
	for _, tc := range []struct {
		name string
		url  string
		h    http.Header
	}{
		{"no credentials", wsURL, nil},
		{"bad token", wsURL, http.Header{"Authorization": {"Bearer xoxp-pond-x"}}},
		{"forged ticket", wsURL + "?ticket=3.99999999999.00000000000000000000000000000000", nil},
		{"garbage ticket", wsURL + "?ticket=%00%01", nil},
	} {
		_, resp, err := websocket.DefaultDialer.Dial(tc.url, tc.h)
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("%s: %v %v, want 401", tc.name, err, resp)
		}
	}
	// A ticket expires.
	tk := s.makeTicket(3, time.Now().Add(-2*time.Minute))
	if u := s.checkTicket(tk, time.Now()); u != -1 {
		t.Errorf("expired ticket accepted")
	}
	if u := s.checkTicket(s.makeTicket(3, time.Now()), time.Now()); u != 3 {
		t.Errorf("fresh ticket = %d", u)
	}
	if got := s.Stats().Requests["ws"]["401"]; got != 4 {
		t.Errorf("ws 401 count = %d", got)
	}
}

// dialSmallBuffer dials user's websocket with a tiny receive buffer, so a
// client that never reads backs up quickly.
func dialSmallBuffer(t *testing.T, s *Server, user int) *websocket.Conn {
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	c, _, err := d.Dial("ws://"+s.Addr()+"/ws", http.Header{"Authorization": {"Bearer " + Token(user)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSlowConsumerDropped(t *testing.T) {
	s := openTest(t, Config{SendQueue: 8, WriteTimeout: 2 * time.Second, DisableRateLimits: true, HistoryCap: 20, HistoryPerChannel: 5})
	slow := dialSmallBuffer(t, s, 9) // never reads
	_ = slow
	const good = 3
	var wg sync.WaitGroup
	const posts = 300
	text := strings.Repeat("k", 30000)
	got := make([]int, good)
	for i := 0; i < good; i++ {
		c := dial(t, s, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got[i] < posts {
				select {
				case ev, ok := <-c.events:
					if !ok {
						return
					}
					if ev["type"] == "message" {
						got[i]++
					}
				case <-time.After(10 * time.Second):
					return
				}
			}
		}()
	}
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == good+1 })
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for p := 0; p < posts; p++ {
		mustOK(t, s, 0, "chat.postMessage", map[string]string{"channel": "C000000", "text": text})
		s.hub.mu.RLock()
		for _, c := range s.hub.all {
			c.mu.Lock()
			if q := len(c.queue); q > 8 {
				t.Errorf("queue of %s grew to %d > 8", UserID(c.user), q)
			}
			c.mu.Unlock()
		}
		s.hub.mu.RUnlock()
	}
	wg.Wait()
	for i, n := range got {
		if n != posts {
			t.Errorf("good client %d got %d of %d messages", i, n, posts)
		}
	}
	wiretest.Until(t, 10*time.Second, "the slow consumer's drop", func() bool {
		st := s.Stats()
		return st.SlowConsumerDrops == 1 && st.WebsocketsOpen == good
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 8<<20 {
		t.Errorf("heap grew by %d bytes over %d posts of 30 KB: not bounded", grow, posts)
	}
}

func TestManyConnectionsOneUser(t *testing.T) {
	s := openTest(t, Config{})
	a, b := dial(t, s, 5), dial(t, s, 5)
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == 2 })
	mustOK(t, s, 5, "users.setPresence", map[string]string{"presence": "away"})
	a.readType(t, "presence_change")
	b.readType(t, "presence_change")
	a.Close()
	wiretest.Until(t, 10*time.Second, "unregister", func() bool { return s.Stats().WebsocketsOpen == 1 })
	mustOK(t, s, 5, "chat.postMessage", map[string]string{"channel": "C000000", "text": "still here"})
	b.readType(t, "message")
}

func TestConcurrentPostsArriveInOrder(t *testing.T) {
	s := openTest(t, Config{DisableRateLimits: true})
	conns := []*client{dial(t, s, 1), dial(t, s, 2), dial(t, s, 3)}
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == 3 })
	const posters, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, posters*each+20)
	post := func(user int, method string, form url.Values) {
		req, _ := http.NewRequest("POST", s.URL()+"/api/"+method, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+Token(user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			errs <- err
			return
		}
		resp.Body.Close()
	}
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				post(10+p, "chat.postMessage", url.Values{"channel": {"C000000"}, "text": {"burst"}})
			}
		}()
	}
	// Meanwhile users connect and join, racing registration against joins.
	in, _ := memberChannel(t, s, 0)
	for u := 20; u < 30; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			post(u, "conversations.join", url.Values{"channel": {in.id}})
		}()
		dial(t, s, u)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range conns {
		last := int64(0)
		for n := 0; n < posters*each; n++ {
			ev := c.readType(t, "message")
			ts, _ := parseTS(ev["ts"].(string))
			if ts <= last {
				t.Fatalf("message ts %v arrived after a later one", ev["ts"])
			}
			last = ts
		}
	}
	// Every joiner's connection is indexed under the channel it joined.
	s.hub.mu.RLock()
	defer s.hub.mu.RUnlock()
	for u := 20; u < 30; u++ {
		for _, c := range s.hub.byUser[int32(u)] {
			if _, ok := s.hub.byChan[in.idx][c]; !ok {
				t.Errorf("connection of %s not indexed under %s after joining", UserID(u), in.id)
			}
		}
	}
}

func TestSilentPeerClosedAfterTwoPings(t *testing.T) {
	s := openTest(t, Config{PingInterval: 100 * time.Millisecond})
	// A client that never reads never answers pings.
	c, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws", http.Header{"Authorization": {"Bearer " + Token(1)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A reading client answers them and stays.
	live := dial(t, s, 2)
	wiretest.Until(t, 10*time.Second, "the silent peer's close", func() bool { return s.Stats().Disconnects == 1 })
	time.Sleep(300 * time.Millisecond)
	if st := s.Stats(); st.WebsocketsOpen != 1 || st.Disconnects != 1 {
		t.Errorf("open %d, disconnects %d; want the live client kept", st.WebsocketsOpen, st.Disconnects)
	}
	live.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":1}`))
	live.readType(t, "pong")
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Open(context.Background(), Config{Users: 50, Channels: 5})
	if err != nil {
		t.Fatal(err)
	}
	var cs []*websocket.Conn
	for i := 0; i < 20; i++ {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws", http.Header{"Authorization": {"Bearer " + Token(i)}})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	wiretest.Until(t, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == 20 })
	mustOK(t, s, 1, "chat.postMessage", map[string]string{"channel": "C000000", "text": "bye"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		c.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	wiretest.Until(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}
