package pond

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseArgs checks that API argument decoding never panics and that
// what it accepts is bounded. Its seed corpus runs in every `go test`.
func FuzzParseArgs(f *testing.F) {
	seeds := []struct{ ctype, query, body string }{
		{"application/x-www-form-urlencoded", "", "channel=C000000&limit=42"},
		{"application/json", "", `{"channel":"C000000","limit":42,"inclusive":true,"blocks":[{"type":"section"}],"x":null}`},
		{"application/json; charset=utf-8", "token=xoxp-pond-1", `{"text":"hi \u2603"}`},
		{"", "", `{"a":`},
		{"", "a=%zz", ""},
		{"multipart/form-data; boundary=x", "", "--x--"},
		{"text/plain", "", "a=1&a=2"},
		{"application/json", "", `[1,2,3]`},
		{"application/json", "", `{"a":1e999}`},
		{";;;", "", "a=b"},
	}
	for _, s := range seeds {
		f.Add(s.ctype, s.query, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ctype, query string, body []byte) {
		args, err := parseArgs(ctype, query, body)
		if err != nil {
			return
		}
		if len(args) > maxArgs {
			t.Fatalf("%d args accepted", len(args))
		}
	})
}

// FuzzAPI sends arbitrary bodies to every method through the real handler:
// the reply is always a Slack-style JSON object, never a panic.
func FuzzAPI(f *testing.F) {
	s := openTest(f, Config{Users: 20, Channels: 12, HistoryPerChannel: 3, DisableRateLimits: true})
	for i, m := range Methods() {
		f.Add(m, "application/x-www-form-urlencoded", "channel=C000002&text=hi&ts=1764000000.000001&timestamp=1764000000.000001&name=tada&user=U000001&presence=away&limit=2")
		f.Add(m, "application/json", `{"channel":"C000000","cursor":"bmV4dDox","limit":-5,"latest":"9.9","oldest":"x","inclusive":"1"}`)
		f.Add(m, "", strings.Repeat("a=b&", i))
	}
	f.Add("no.such", "", "")
	f.Fuzz(func(t *testing.T, method, ctype, body string) {
		req := httptest.NewRequest("POST", "/api/m", strings.NewReader(body))
		req.SetPathValue("method", method)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer "+Token(1))
		w := httptest.NewRecorder()
		s.serveAPI(w, req)
		out := w.Body.String()
		if !strings.HasPrefix(out, `{"ok":`) {
			t.Fatalf("%s %q: reply %q", method, body, out)
		}
		if w.Code != http.StatusOK && !strings.HasPrefix(out, `{"ok":false`) {
			t.Fatalf("%s: status %d with ok reply", method, w.Code)
		}
	})
}

// FuzzHandleFrame feeds arbitrary client frames to the websocket frame
// handler of a registered connection: it must never panic.
func FuzzHandleFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"ping","id":1}`, `{"type":"ping","id":"abc"}`, `{"type":"ping","id":[1]}`,
		`{"type":"typing","channel":"C000000"}`, `{"type":"typing","channel":"#general"}`,
		`{"type":"typing","channel":"C000009"}`, `{"type":"typing"}`, `{"type":7}`,
		`{`, `null`, `[]`, `"x"`, "\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	s := openTest(f, Config{Users: 20, Channels: 12, HistoryPerChannel: 1})
	// A connection object that is registered but whose socket is never
	// written: its queue is what the handler fills.
	c := &wsConn{srv: s, user: 3, closed: true}
	f.Fuzz(func(t *testing.T, frame []byte) {
		s.handleFrame(c, frame)
	})
}
