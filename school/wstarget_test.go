package school_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
)

// handshakes is a websocket server that remembers each handshake's
// headers and keeps the connection open until the client leaves.
type handshakes struct {
	mu   sync.Mutex
	seen []http.Header
	open int
}

func (h *handshakes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.mu.Lock()
	hd := r.Header.Clone()
	hd.Set("Negotiated", c.Subprotocol())
	h.seen = append(h.seen, hd)
	h.open++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.open--
		h.mu.Unlock()
		c.Close()
	}()
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

func (h *handshakes) byKoi() map[string]http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]http.Header{}
	for _, hd := range h.seen {
		out[hd.Get("X-Koi")] = hd
	}
	return out
}

// A run without api_base whose spec gives the websocket URL, subprotocols
// and header templates: every koi dials with its own rendered headers and
// the subprotocol, and a header whose value would render with a line
// break (a listed token holding one) is left out, never injected into the
// handshake.
func TestRunSpecWebsocketTarget(t *testing.T) {
	url := startNATS(t)
	k := newFakeKeeper(t, url)
	srv := &handshakes{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	wsURL := "ws" + strings.TrimPrefix(ts.URL, "http")
	hash := addSet(t, k, `{"behaviors": {}}`)
	headers := map[string]string{"x-koi": "koi-{{.Index}}", "Authorization": "Bearer {{.Token}}"}
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = []wire.Assignment{
			{Run: "templated", From: 0, To: 4, Ramp: 100, Spec: wire.RunSpec{Name: "ws", BehaviorSet: hash, WebsocketURL: wsURL,
				WebsocketSubprotocols: []string{"mqtt"}, WebsocketHeaders: headers, Token: "t{{.Index}}"}},
			{Run: "listed", From: 4, To: 6, Ramp: 100, Spec: wire.RunSpec{Name: "ws2", BehaviorSet: hash, WebsocketURL: wsURL,
				WebsocketHeaders: headers, Tokens: []string{"ok", "bad\r\nX-Evil: 1"}}},
			{Run: "badheader", From: 6, To: 7, Spec: wire.RunSpec{Name: "ws3", BehaviorSet: hash, WebsocketURL: wsURL,
				WebsocketHeaders: map[string]string{"X-A": "{{.Password}}"}}},
			// a loop in a template from the bus would spin every koi's start
			{Run: "loopheader", From: 7, To: 8, Spec: wire.RunSpec{Name: "ws4", BehaviorSet: hash, WebsocketURL: wsURL,
				WebsocketHeaders: map[string]string{"X-A": "{{range 100000000000}}{{end}}"}}},
			{Run: "looptoken", From: 8, To: 9, Spec: wire.RunSpec{Name: "ws5", BehaviorSet: hash, WebsocketURL: wsURL,
				Token: "{{range 100000000000}}{{end}}"}},
		}
	})
	openSchool(t, url, school.Config{ID: "s1"})
	waitFor(t, 10*time.Second, "6 koi connected", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.open == 6
	})
	seen := srv.byKoi()
	for i, tok := range []string{"t0", "t1", "t2", "t3"} {
		hd := seen["koi-"+string(rune('0'+i))]
		if hd == nil {
			t.Fatalf("no handshake from koi %d: %v", i, seen)
		}
		if hd.Get("Authorization") != "Bearer "+tok || hd.Get("Negotiated") != "mqtt" || hd.Get("Sec-Websocket-Protocol") != "mqtt" {
			t.Errorf("koi %d handshake: %v", i, hd)
		}
	}
	if hd := seen["koi-4"]; hd == nil || hd.Get("Authorization") != "Bearer ok" || hd.Get("Negotiated") != "" {
		t.Errorf("koi 4 (listed token, no subprotocol): %v", hd)
	}
	if hd := seen["koi-5"]; hd == nil || hd.Get("Authorization") != "" || hd.Get("X-Evil") != "" {
		t.Errorf("koi 5's token holds a line break: its Authorization must be left out, got %v", hd)
	}
	waitFor(t, 5*time.Second, "the bad header templates refused", func() bool {
		pr, ok := k.lastPoll("s1")
		if !ok {
			return false
		}
		refused := 0
		for _, r := range pr.Runs {
			switch {
			case r.Run == "badheader" && strings.Contains(r.Refused, "websocket_headers.X-A template"),
				r.Run == "loopheader" && strings.Contains(r.Refused, "range is not allowed"),
				r.Run == "looptoken" && strings.Contains(r.Refused, "token template: range is not allowed"):
				refused++
			}
		}
		return refused == 3
	})
}
