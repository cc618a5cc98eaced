package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/ui"
)

// The Notifications page against a real keeper and two real receivers on
// 127.0.0.1: a webhook added from the form (a bad kind shown at its
// field first), Test delivers a signed Slack message and the row shows
// the success; a receiver answering 500 shows its last error in red and
// its failed count; Remove (pressed twice) deletes the webhook; a trigger
// shows its refused calls by reason.
func TestUINotifications(t *testing.T) {
	ctx := context.Background()
	k, err := api.Open(ctx, keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler),
		WebhookBackoff: 20 * time.Millisecond, WebhookTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	base := "http://" + k.HTTPAddr()
	var mu sync.Mutex
	var got []http.Header
	var bodies []string
	okRecv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Header.Clone())
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	t.Cleanup(okRecv.Close)
	badRecv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "receiver broken", http.StatusInternalServerError)
	}))
	t.Cleanup(badRecv.Close)

	target, _ := url.Parse(base)
	mux := http.NewServeMux()
	mux.Handle("/", ui.Handler())
	mux.Handle("/api/", httputil.NewSingleHostReverseProxy(target))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close) // after the browser's cleanup: the page holds an event stream open
	s := &system{k: k, api: base}
	s.call(t, "POST", "/webhooks", map[string]any{"name": "broken", "url": badRecv.URL, "kinds": []string{"switch.changed"}}, nil)
	s.call(t, "POST", "/triggers", map[string]any{"name": "deploy", "secret": "trigger-secret-0123456789",
		"actions": []map[string]any{{"match": map[string]string{"service": "search"},
			"launch": map[string]any{"formation": "herd", "run_labels": map[string]string{"service": "search"}}}}}, nil)
	req, _ := http.NewRequest("POST", base+"/api/v1/triggers/deploy", strings.NewReader(`{"labels": {}}`))
	req.Header.Set(api.HeaderTimestamp, "1")
	req.Header.Set(api.HeaderSignature, "sha256=0000000000000000000000000000000000000000000000000000000000000000")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}

	bctx := newBrowser(t)
	run(t, bctx, "open the notifications page", chromedp.Navigate(srv.URL+"/#/notifications"),
		chromedp.WaitVisible(chromedp.CSS("#new-webhook")))
	waitJS(t, bctx, 5*time.Second, "the nav entry to be active", `document.querySelector('[data-nav=notifications]').classList.contains('active')`)
	waitJS(t, bctx, 5*time.Second, "the trigger's refusal", `(document.querySelector('[data-trigger=deploy]')||{}).textContent?.includes('bad_signature: 1')`)

	// A bad kind is shown at the kinds field; fixed, the webhook is added.
	run(t, bctx, "fill the webhook form with a bad kind",
		chromedp.Click(chromedp.CSS("#new-webhook")),
		chromedp.WaitVisible(chromedp.CSS("#webhook-form")),
		chromedp.SetValue(chromedp.CSS(`#webhook-form [name=name]`), "team-slack"),
		chromedp.SetValue(chromedp.CSS(`#webhook-form [name=url]`), okRecv.URL+"/services/T1/B1/sekrit"),
		chromedp.SetValue(chromedp.CSS(`#webhook-form [name=format]`), "slack"),
		chromedp.SetValue(chromedp.CSS(`#webhook-form [name=kinds]`), "run.*, runs.started"),
		chromedp.SetValue(chromedp.CSS(`#webhook-form [name=secret]`), "slack-secret-1"),
		chromedp.Click(chromedp.CSS(`#webhook-form button[type=submit]`)))
	waitJS(t, bctx, 5*time.Second, "the kinds error at its field",
		`document.querySelector('#webhook-form [name=kinds]').closest('.field').classList.contains('invalid') &&
		 document.querySelector('#webhook-form [name=kinds]').closest('.field').textContent.includes('matches no notice kind')`)
	screenshot(t, bctx, "notifications-form-error")
	run(t, bctx, "fix the kinds and submit",
		chromedp.SetValue(chromedp.CSS(`#webhook-form [name=kinds]`), "run.*, switch.changed"),
		chromedp.Click(chromedp.CSS(`#webhook-form button[type=submit]`)),
		chromedp.WaitNotPresent(chromedp.CSS("#webhook-form")))
	waitJS(t, bctx, 5*time.Second, "the new row", `!!document.querySelector('[data-webhook=team-slack]')`)
	if txt := get(t, bctx, "the row", chromedp.Evaluate[string](`document.querySelector('[data-webhook=team-slack]').textContent`)); strings.Contains(txt, "sekrit") || !strings.Contains(txt, "signed") {
		t.Errorf("row shows %q", txt)
	}

	// Test: one signed Slack delivery; the row shows the success.
	run(t, bctx, "press Test", chromedp.Click(chromedp.CSS(`[data-test=team-slack]`)))
	waitJS(t, bctx, 5*time.Second, "the test result", `document.querySelector('#test-result-team-slack').textContent.includes('delivered: HTTP 200')`)
	waitJS(t, bctx, 5*time.Second, "the success in the row",
		`document.querySelector('[data-webhook=team-slack] .delivered').textContent === '1' && !document.querySelector('[data-webhook=team-slack] .last-success').textContent.includes('never')`)
	mu.Lock()
	if len(got) != 1 || got[0].Get(api.HeaderSignature) == "" || got[0].Get("X-Koipond-Event") != "test" {
		t.Errorf("receiver got %d deliveries: %v", len(got), got)
	} else {
		var m struct {
			Text   string
			Blocks []struct{ Type string }
		}
		if err := json.Unmarshal([]byte(bodies[0]), &m); err != nil || len(m.Blocks) != 3 || m.Blocks[0].Type != "header" {
			t.Errorf("test delivery is not a Slack message: %s", bodies[0])
		}
	}
	mu.Unlock()

	// The broken receiver: a switch change fails after its retries; the
	// row shows the error in red and the count.
	s.call(t, "POST", "/control", map[string]any{"state": "paused"}, nil)
	waitJS(t, bctx, 10*time.Second, "the failure in the broken row",
		`document.querySelector('[data-webhook=broken] .failed').textContent === '1' &&
		 document.querySelector('[data-webhook=broken] .last-error').textContent.includes('500')`)
	color := get(t, bctx, "the error colour", chromedp.Evaluate[string](`getComputedStyle(document.querySelector('[data-webhook=broken] .last-error span')).color`))
	bad := get(t, bctx, "the bad colour", chromedp.Evaluate[string](`(() => { const s = document.createElement('span'); s.style.color = 'var(--bad)'; document.body.append(s); const c = getComputedStyle(s).color; s.remove(); return c; })()`))
	if color != bad {
		t.Errorf("last error colour %s, want the bad colour %s", color, bad)
	}
	waitJS(t, bctx, 5*time.Second, "the pause notice at the Slack webhook",
		`Number(document.querySelector('[data-webhook=team-slack] .delivered').textContent) >= 2`)
	screenshot(t, bctx, "notifications")

	// Remove asks once more, then deletes.
	run(t, bctx, "press Remove", chromedp.Click(chromedp.CSS(`[data-remove=broken]`)))
	waitJS(t, bctx, 2*time.Second, "the confirmation", `document.querySelector('[data-remove=broken]').textContent === 'Really remove?'`)
	run(t, bctx, "confirm Remove", chromedp.Click(chromedp.CSS(`[data-remove=broken]`)))
	waitJS(t, bctx, 5*time.Second, "the row to go", `!document.querySelector('[data-webhook=broken]')`)
	var hooks []struct{ Name string }
	s.call(t, "GET", "/webhooks", nil, &hooks)
	if len(hooks) != 1 || hooks[0].Name != "team-slack" {
		t.Errorf("webhooks after remove: %+v", hooks)
	}
}
