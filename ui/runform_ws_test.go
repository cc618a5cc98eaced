package ui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/wire/wiretest"
)

// A set that only speaks on its websocket.
const wsOnlySet = `{"behaviors": {"ping": {"frequency": 1, "steps": [{"request": {"type": "ws", "text": "ping"}}]}}}`

// wsHandshakes is a websocket server that keeps each handshake's headers
// and reads frames until the client leaves.
type wsHandshakes struct {
	mu   sync.Mutex
	seen []http.Header
}

func (s *wsHandshakes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := (&websocket.Upgrader{Subprotocols: []string{"chat.v1"}}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	h := r.Header.Clone()
	h.Set("Negotiated", c.Subprotocol())
	s.mu.Lock()
	s.seen = append(s.seen, h)
	s.mu.Unlock()
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

// The run form creates a websocket-only run: no API base, the websocket
// URL, a subprotocol and a per-koi header template; the koi dial with
// them, and the runs table and the run page count the ws sends in their
// requests per second. A set with api steps and no API base gets the
// keeper's refusal on the API base field.
func TestUIRunFormWebsocketTarget(t *testing.T) {
	s := startSystem(t)
	ctx := newBrowser(t)
	sink := &wsHandshakes{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http")
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "ws-only", "files": []map[string]string{{"name": "ws.json", "content": wsOnlySet}}}, nil)
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "chat-basics", "files": []map[string]string{{"name": "chat-basics.json", "content": behaviorSet}}}, nil)

	const n = 3
	run(t, ctx, "open the runs page", chromedp.Navigate(s.ui+"/#/runs"), chromedp.WaitVisible(chromedp.CSS("#new-run")))
	run(t, ctx, "fill the run form",
		chromedp.Click(chromedp.CSS("#new-run")),
		chromedp.WaitVisible(chromedp.CSS("#run-form")),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=name]`), "ws only"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=behavior_set]`), "ws-only"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=websocket_url]`), wsURL),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=websocket_subprotocols]`), "chat.v1"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=websocket_headers]`), "X-Koi: koi-{{.Index}}\nX-Team: chat"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=koi]`), fmt.Sprint(n)),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=ramp]`), "0"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=time_scale]`), "300"),
		chromedp.Click(chromedp.CSS(`#run-form button[type=submit]`)),
		chromedp.WaitNotPresent(chromedp.CSS("#run-form")))
	var runs []struct {
		ID, Name string
		Target   struct {
			APIBase               string            `json:"api_base"`
			WebsocketURL          string            `json:"websocket_url"`
			WebsocketSubprotocols []string          `json:"websocket_subprotocols"`
			WebsocketHeaders      map[string]string `json:"websocket_headers"`
		}
	}
	s.call(t, "GET", "/runs", nil, &runs)
	if len(runs) != 1 || runs[0].Target.APIBase != "" || runs[0].Target.WebsocketURL != wsURL ||
		strings.Join(runs[0].Target.WebsocketSubprotocols, ",") != "chat.v1" || runs[0].Target.WebsocketHeaders["X-Koi"] != "koi-{{.Index}}" ||
		runs[0].Target.WebsocketHeaders["X-Team"] != "chat" {
		t.Fatalf("runs after the form: %+v", runs)
	}
	id := runs[0].ID

	wiretest.Until(t, 20*time.Second, "3 koi dialled the websocket", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.seen) >= n
	})
	sink.mu.Lock()
	koi := map[string]bool{}
	for _, h := range sink.seen {
		koi[h.Get("X-Koi")] = true
		if h.Get("Negotiated") != "chat.v1" || h.Get("X-Team") != "chat" {
			t.Errorf("handshake: %v", h)
		}
	}
	sink.mu.Unlock()
	if !koi["koi-0"] || !koi["koi-1"] || !koi["koi-2"] {
		t.Errorf("the koi's own headers: %v", koi)
	}
	waitJS(t, ctx, 15*time.Second, "requests per second of ws sends in the runs table",
		fmt.Sprintf(`(() => { const c = document.querySelector('tr[data-run=%q] td.rps'); return !!c && parseFloat(c.textContent) > 0; })()`, id))
	run(t, ctx, "open the run page", chromedp.Navigate(s.ui+"/#/runs/"+id), chromedp.WaitVisible(chromedp.CSS("#guard")))
	waitJS(t, ctx, 15*time.Second, "requests per second on the run page", `(() => { const c = document.querySelector('#stat-rps'); return !!c && parseFloat(c.textContent) > 0; })()`)
	if text := get(t, ctx, "the run's meta line", chromedp.Evaluate[string](`document.body.textContent`)); !strings.Contains(text, "target "+wsURL+" (chat.v1)") {
		t.Errorf("the run page does not show the websocket target")
	}
	screenshot(t, ctx, "run-websocket-only")
	s.call(t, "POST", "/runs/"+id+"/stop", nil, nil)

	// A set with api steps needs the API base: the keeper says so on that field.
	run(t, ctx, "open the runs page again", chromedp.Navigate(s.ui+"/#/runs"), chromedp.WaitVisible(chromedp.CSS("#new-run")))
	run(t, ctx, "fill the form without an API base",
		chromedp.Click(chromedp.CSS("#new-run")),
		chromedp.WaitVisible(chromedp.CSS("#run-form")),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=name]`), "no api base"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=behavior_set]`), "chat-basics"),
		chromedp.Click(chromedp.CSS(`#run-form button[type=submit]`)))
	waitJS(t, ctx, 10*time.Second, "the refusal on the API base field",
		`(() => { const f = document.querySelector('#run-form [data-field="target.api_base"]'); if (!f) return false; const w = f.closest('.field'); return w.classList.contains('invalid') && w.querySelector('.field-error').textContent.includes('sends api requests'); })()`)
}
