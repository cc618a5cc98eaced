package pond

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// openTest runs a small pond on 127.0.0.1:0 for the test's lifetime.
func openTest(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Users == 0 {
		cfg.Users = 200
	}
	if cfg.Channels == 0 {
		cfg.Channels = 30
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// reply is a decoded API reply with its HTTP status and headers.
type reply struct {
	Status int
	Header http.Header
	Body   map[string]any
}

func (r reply) ok() bool            { return r.Body["ok"] == true }
func (r reply) err() string         { s, _ := r.Body["error"].(string); return s }
func (r reply) str(k string) string { s, _ := r.Body[k].(string); return s }

// call posts form args to /api/method as the given token ("" for none).
func call(tb testing.TB, s *Server, token, method string, args map[string]string) reply {
	tb.Helper()
	form := url.Values{}
	for k, v := range args {
		form.Set(k, v)
	}
	req, err := http.NewRequest("POST", s.URL()+"/api/"+method, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(tb, req)
}

func do(tb testing.TB, req *http.Request) reply {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(b, &r.Body); err != nil {
		tb.Fatalf("%s: reply is not JSON: %v: %q", req.URL.Path, err, b)
	}
	return r
}

// mustOK calls and fails the test unless the reply is ok.
func mustOK(tb testing.TB, s *Server, user int, method string, args map[string]string) reply {
	tb.Helper()
	r := call(tb, s, Token(user), method, args)
	if r.Status != 200 || !r.ok() {
		tb.Fatalf("%s as user %d: status %d, %v", method, user, r.Status, r.Body)
	}
	return r
}

// client is a test websocket whose frames a goroutine reads into a
// channel, so tests can wait for an event or for silence without breaking
// the connection (a gorilla read deadline is fatal).
type client struct {
	*websocket.Conn
	events chan map[string]any
	err    chan error
}

// dial connects user's websocket through rtm.connect and reads the hello.
func dial(tb testing.TB, s *Server, user int) *client {
	tb.Helper()
	r := mustOK(tb, s, user, "rtm.connect", nil)
	c, resp, err := websocket.DefaultDialer.Dial(r.str("url"), nil)
	if err != nil {
		tb.Fatalf("dial %s: %v (%v)", r.str("url"), err, resp)
	}
	cl := newClient(tb, c)
	if ev := cl.next(tb); ev["type"] != "hello" {
		tb.Fatalf("first frame %v, want hello", ev)
	}
	return cl
}

func newClient(tb testing.TB, c *websocket.Conn) *client {
	cl := &client{Conn: c, events: make(chan map[string]any, 1024), err: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				cl.err <- err
				close(cl.events)
				return
			}
			var ev map[string]any
			if json.Unmarshal(b, &ev) != nil {
				ev = map[string]any{"unparsable": string(b)}
			}
			cl.events <- ev
		}
	}()
	tb.Cleanup(func() {
		c.Close()
		<-done
	})
	return cl
}

// next returns the next event within 5 s; it checks sent_at.
func (c *client) next(tb testing.TB) map[string]any {
	tb.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			tb.Fatalf("connection closed: %v", <-c.err)
		}
		if _, ok := ev["sent_at"].(float64); !ok {
			tb.Fatalf("event without numeric sent_at: %v", ev)
		}
		return ev
	case <-time.After(5 * time.Second):
		tb.Fatalf("no event within 5s")
	}
	return nil
}

// readType reads events until one of type typ arrives.
func (c *client) readType(tb testing.TB, typ string) map[string]any {
	tb.Helper()
	for i := 0; i < 100; i++ {
		if ev := c.next(tb); ev["type"] == typ {
			return ev
		}
	}
	tb.Fatalf("no %s event in 100 frames", typ)
	return nil
}

// none checks that nothing arrives within d.
func (c *client) none(tb testing.TB, d time.Duration) {
	tb.Helper()
	select {
	case ev, ok := <-c.events:
		if ok {
			tb.Fatalf("unexpected event %v", ev)
		}
	case <-time.After(d):
	}
}

// closed waits for the connection to end and returns its error.
func (c *client) closed(tb testing.TB) error {
	tb.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-c.events:
			if !ok {
				return <-c.err
			}
		case <-deadline:
			tb.Fatalf("connection still open after 5s")
		}
	}
}

// memberChannel returns a public, unarchived ordinary channel user is in
// and one user is not in, from the generated workspace.
func memberChannel(tb testing.TB, s *Server, user int) (in, out *channel) {
	tb.Helper()
	for _, ch := range s.ws.channels {
		if ch.everyone || ch.private || ch.archived {
			continue
		}
		if ch.members.has(user) && in == nil {
			in = ch
		}
		if !ch.members.has(user) && out == nil {
			out = ch
		}
	}
	if in == nil || out == nil {
		tb.Fatalf("workspace has no channel in and out for user %d", user)
	}
	return in, out
}
