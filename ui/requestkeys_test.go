package ui_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/ui"
)

// The page counts the same metric keys as requests as the CLI and the
// keeper do (metrics.IsRequestKey): its requests/s and errors figures
// agree with `run create --wait` and `run show`.
func TestPageRequestKeysMatchMetrics(t *testing.T) {
	srv := httptest.NewServer(ui.Handler())
	defer srv.Close()
	ctx := newBrowser(t)
	keys := []string{"api:chat.postMessage", "http:GET http://h/x", "ws:send", "ws:match", "ws:login", "ws:connect",
		"connect:open", "ws:close:1006", "ws:disconnect", "event:message", "event:other", "behavior:chat", "boot",
		"formation:standup", "formation:standup:2", "on_connect", "on_connect:1", "on_disconnect", "apis:x", "wsx", ""}
	list, _ := json.Marshal(keys)
	run(t, ctx, "load the page's library", chromedp.Navigate(srv.URL+"/favicon.svg"),
		chromedp.Evaluate[chromedp.Void](`import('/lib.js').then(m => { window.__got = JSON.stringify(`+string(list)+`.map(m.isRequestKey)); })`))
	waitJS(t, ctx, 10*time.Second, "the library loaded", `typeof window.__got === 'string'`)
	var got []bool
	if err := json.Unmarshal([]byte(get(t, ctx, "the page's verdicts", chromedp.Evaluate[string](`window.__got`))), &got); err != nil || len(got) != len(keys) {
		t.Fatalf("verdicts %v: %v", got, err)
	}
	for i, k := range keys {
		if want := metrics.IsRequestKey(k); got[i] != want {
			t.Errorf("the page says %q is a request key: %v; metrics.IsRequestKey: %v", k, got[i], want)
		}
	}
}
