package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire/wiretest"
)

// hooks is a webhook list a test changes between syncs.
type hooks struct {
	mu   sync.Mutex
	list []*state.Webhook
}

func (h *hooks) set(ws ...*state.Webhook) {
	h.mu.Lock()
	h.list = ws
	h.mu.Unlock()
}

func (h *hooks) get() []*state.Webhook {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.list
}

// A Notifier alone, with a real receiver: a signed JSON delivery carrying
// the notice and the run's links, filtered by kind and label; a deleted
// webhook's worker stops; Close waits for the workers and a closed
// Notifier starts none.
func TestNotifierDeliversSignedAndStopsOnClose(t *testing.T) {
	var (
		mu   sync.Mutex
		got  []*http.Request
		body [][]byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, body = append(got, r), append(body, b)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}

	hs := &hooks{}
	hs.set(&state.Webhook{Name: "ops", URL: srv.URL, Format: "json", Kinds: []string{"run.*"},
		Labels: map[string]string{"team": "search"}, Secret: "s3cret-s3cret"})
	n := New(Config{Webhooks: hs.get, Links: func(run string) map[string]string {
		return map[string]string{"run": "http://keeper/api/v1/runs/" + run}
	}})
	n.Start()
	t.Cleanup(n.Close)

	n.Enqueue(Notice{Kind: NoticeSwitch, Title: "not a run notice"})                                 // kind filtered
	n.Enqueue(Notice{Kind: NoticeRunStarted, Run: "r1", Labels: map[string]string{"team": "other"}}) // label filtered
	n.Enqueue(Notice{Kind: NoticeRunStarted, Run: "r2", Title: "Run r2 started", Labels: map[string]string{"team": "search"}})
	wiretest.WaitFor(t, 5*time.Second, "one delivery to ops", func() error {
		if st := n.Status("ops", false); st.Delivered != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if c := count(); c != 1 {
		t.Fatalf("%d deliveries, want 1 (the others filtered)", c)
	}
	mu.Lock()
	r, b := got[0], body[0]
	mu.Unlock()
	ts, err := strconv.ParseInt(r.Header.Get(HeaderTimestamp), 10, 64)
	if err != nil || r.Header.Get(HeaderSignature) != Sign("s3cret-s3cret", ts, b) {
		t.Errorf("signature %q at %q does not verify", r.Header.Get(HeaderSignature), r.Header.Get(HeaderTimestamp))
	}
	var p JSONPayload
	if err := json.Unmarshal(b, &p); err != nil || p.Run != "r2" || p.Webhook != "ops" || p.Links["run"] != "http://keeper/api/v1/runs/r2" {
		t.Errorf("payload %s (%v)", b, err)
	}

	// Deleted: the worker goes, Test finds no webhook.
	hs.set()
	n.Sync()
	if _, ok := n.Test(context.Background(), "test", "ops"); ok {
		t.Error("a deleted webhook still has a worker")
	}

	// Closed: workers gone, a sync starts none.
	hs.set(&state.Webhook{Name: "late", URL: srv.URL, Format: "json"})
	n.Close()
	n.Sync()
	if n.worker("late") != nil {
		t.Error("a closed notifier started a worker")
	}
	n.Enqueue(Notice{Kind: NoticeRunEnded, Run: "r2"})
	if c := count(); c != 1 {
		t.Errorf("%d deliveries after Close, want 1", c)
	}
}
