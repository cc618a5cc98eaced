package keeper

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

func TestWebhookPayloadsSignaturesAndFilters(t *testing.T) {
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.PublicURL = "https://koipond.example" })
	js, slack, other := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	addHook(t, k, WebhookSpec{Name: "json", URL: js.srv.URL + "/hook", Kinds: []string{"run.*"}, Secret: ptr("s3cret-s3cret")})
	addHook(t, k, WebhookSpec{Name: "slack", URL: slack.srv.URL + "/services/T0/B0/xyz", Format: "slack"})
	addHook(t, k, WebhookSpec{Name: "other-team", URL: other.srv.URL, Labels: map[string]string{"team": "other"}})
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "alice", RunSpec{Name: "search <load>", BehaviorSet: "bg", Koi: 3, Labels: map[string]string{"team": "search"},
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api"}})
	if err != nil {
		t.Fatal(err)
	}

	// JSON: the notice, the run's links, signed.
	d := js.waitKind(t, notify.NoticeRunStarted, 5*time.Second)
	verify(t, d, "s3cret-s3cret")
	var jp notify.JSONPayload
	if err := json.Unmarshal(d.body, &jp); err != nil {
		t.Fatal(err)
	}
	if jp.Kind != notify.NoticeRunStarted || jp.Run != run.ID || jp.RunName != "search <load>" || jp.Actor != "alice" || jp.Webhook != "json" ||
		jp.Labels["team"] != "search" || jp.Fields["koi"] != "3" || !strings.Contains(jp.Title, "started") || jp.At.IsZero() {
		t.Errorf("JSON payload %s", d.body)
	}
	if jp.Links["run"] != "https://koipond.example/api/v1/runs/"+run.ID || jp.Links["ui"] != "https://koipond.example/#/runs/"+run.ID {
		t.Errorf("links %v", jp.Links)
	}

	// Slack: text fallback, a header, a section with the run link, fields.
	d = slack.waitKind(t, notify.NoticeRunStarted, 5*time.Second)
	if d.header.Get(notify.HeaderSignature) != "" {
		t.Error("an unsigned webhook's delivery carries a signature")
	}
	var sm struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type, Text string
			} `json:"text"`
			Fields []struct{ Type, Text string } `json:"fields"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(d.body, &sm); err != nil {
		t.Fatal(err)
	}
	if len(sm.Blocks) != 3 || sm.Text == "" {
		t.Fatalf("slack payload %s", d.body)
	}
	if b := sm.Blocks[0]; b.Type != "header" || b.Text == nil || b.Text.Type != "plain_text" || b.Text.Text != "Run search <load> started" {
		t.Errorf("header block %+v", b)
	}
	if b := sm.Blocks[1]; b.Type != "section" || b.Text == nil || b.Text.Type != "mrkdwn" ||
		!strings.Contains(b.Text.Text, "search &lt;load&gt;") || !strings.Contains(b.Text.Text, "<https://koipond.example/#/runs/"+run.ID+"|") {
		t.Errorf("section block %+v", b)
	}
	fields := map[string]bool{}
	for _, f := range sm.Blocks[2].Fields {
		fields[f.Text] = f.Type == "mrkdwn"
	}
	if sm.Blocks[2].Type != "section" || len(sm.Blocks[2].Fields) > 10 || !fields["*Kind*\nrun.started"] || !fields["*koi*\n3"] || !fields["*By*\nalice"] {
		t.Errorf("fields block %+v", sm.Blocks[2])
	}

	// Filters: the global switch reaches the slack and the labelled
	// webhook (not about a run) but not json (run.* only); the labelled
	// webhook got nothing about the search team's run.
	if _, err := k.SetSwitch(ctx, "bob", wire.Paused); err != nil {
		t.Fatal(err)
	}
	slack.waitKind(t, notify.NoticeSwitch, 5*time.Second)
	other.waitKind(t, notify.NoticeSwitch, 5*time.Second)
	if _, err := k.SetRunState(ctx, "bob", run.ID, wire.Paused); err != nil {
		t.Fatal(err)
	}
	js.waitKind(t, notify.NoticeRunPaused, 5*time.Second)
	slack.waitKind(t, notify.NoticeRunPaused, 5*time.Second)
	for _, g := range js.deliveries() {
		if !strings.HasPrefix(g.kind(), "run.") {
			t.Errorf("json (run.*) got %s", g.kind())
		}
	}
	for _, g := range other.deliveries() {
		if g.kind() != notify.NoticeSwitch {
			t.Errorf("the other team's webhook got %s", g.kind())
		}
	}

	// The API never shows a secret, and redacts a Slack URL's secret path.
	raw := apiText(t, k, "/api/v1/webhooks")
	if strings.Contains(raw, "s3cret") || strings.Contains(raw, "xyz") || !strings.Contains(raw, `"signed":true`) {
		t.Errorf("webhook list leaks: %s", raw)
	}
	var views []WebhookView
	wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "GET", "/api/v1/webhooks", nil, &views)
	for _, v := range views {
		if v.Status.Delivered == 0 || v.Status.LastSuccess.IsZero() || v.Status.Failed != 0 {
			t.Errorf("status of %s: %+v", v.Name, v.Status)
		}
	}
	t.Logf("delivered: json %d, slack %d, other-team %d", len(js.deliveries()), len(slack.deliveries()), len(other.deliveries()))
}

func TestWebhookRetriesWithBackoffAndRetryAfter(t *testing.T) {
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.WebhookBackoff = 100 * time.Millisecond })
	// 500, 500, 500, then 200: four attempts, gaps doubling.
	flaky := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 3 {
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	})
	// 429 asking for 1 s, then 200.
	busy := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	// 400: a receiver refusing the payload is not retried.
	refusing := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadRequest)
	})
	for name, rc := range map[string]*receiver{"flaky": flaky, "busy": busy, "refusing": refusing} {
		addHook(t, k, WebhookSpec{Name: name, URL: rc.srv.URL, Kinds: []string{notify.NoticeSwitch}})
	}
	if _, err := k.SetSwitch(context.Background(), "test", wire.Paused); err != nil {
		t.Fatal(err)
	}
	status := func(name string) notify.WebhookStatus {
		var v WebhookView
		wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "GET", "/api/v1/webhooks/"+name, nil, &v)
		return v.Status
	}
	wiretest.WaitFor(t, 10*time.Second, "one delivery to flaky", func() error {
		if s := status("flaky"); s.Delivered != 1 {
			return fmt.Errorf("flaky: %+v", s)
		}
		if s := status("busy"); s.Delivered != 1 {
			return fmt.Errorf("busy: %+v", s)
		}
		if s := status("refusing"); s.Failed != 1 {
			return fmt.Errorf("refusing: %+v", s)
		}
		return nil
	})
	got := flaky.deliveries()
	if len(got) != 4 {
		t.Fatalf("flaky got %d attempts, want 4", len(got))
	}
	var gaps []time.Duration
	for i := 1; i < len(got); i++ {
		gaps = append(gaps, got[i].at.Sub(got[i-1].at))
	}
	t.Logf("flaky: 4 attempts, gaps %v (base 100ms, ×2, ±20%% jitter)", gaps)
	for i, g := range gaps {
		base := 100 * time.Millisecond << i
		if g < base*8/10 || g > base*12/10+150*time.Millisecond {
			t.Errorf("gap %d: %v, want %v ±20%%", i, g, base)
		}
	}
	if gaps[2] <= gaps[0] {
		t.Errorf("gaps do not grow: %v", gaps)
	}
	if s := status("flaky"); len(s.Attempts) != 4 || s.Attempts[0].Result != "retry" || s.Attempts[0].Status != 500 ||
		s.Attempts[3].Result != "delivered" || s.LastError == "" {
		t.Errorf("flaky attempts %+v", s)
	}
	b := busy.deliveries()
	if len(b) != 2 || b[1].at.Sub(b[0].at) < 950*time.Millisecond {
		t.Errorf("busy: %d attempts; Retry-After 1 s not honoured", len(b))
	} else {
		t.Logf("busy: Retry-After: 1 → retried after %v", b[1].at.Sub(b[0].at).Round(time.Millisecond))
	}
	if n := len(refusing.deliveries()); n != 1 {
		t.Errorf("refusing (400) got %d attempts, want 1", n)
	}
	if s := status("refusing"); !strings.Contains(s.LastError, "400") || s.LastErrorAt.IsZero() {
		t.Errorf("refusing status %+v", s)
	}
	m := apiText(t, k, "/metrics")
	for _, want := range []string{`koipond_webhook_deliveries_total{webhook="flaky",result="delivered"} 1`,
		`koipond_webhook_deliveries_total{webhook="refusing",result="failed"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestHangingWebhookTimesOutWithoutDelayingStop(t *testing.T) {
	// The receiver hangs; each attempt waits the full timeout. A switch
	// call waiting on delivery would take at least that long.
	const timeout = time.Second
	k := openKeeper(t, t.TempDir(), func(c *Config) {
		c.WebhookTimeout = timeout
		c.WebhookBackoff = 50 * time.Millisecond
	})
	release := make(chan struct{})
	hang := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select { // hang until the keeper gives up or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	addHook(t, k, WebhookSpec{Name: "hang", URL: hang.srv.URL})
	var worst time.Duration
	for i, st := range []wire.State{wire.Paused, wire.Running, wire.Stopped, wire.Running, wire.Stopped} {
		start := time.Now()
		var sw SwitchView
		if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/control", map[string]any{"state": st}, &sw); code != 200 || sw.State != st {
			t.Fatalf("switch %s: %d %+v", st, code, sw)
		}
		d := time.Since(start)
		worst = max(worst, d)
		t.Logf("switch %d → %s answered in %v while the webhook hangs", i+1, st, d.Round(time.Microsecond))
	}
	if worst > timeout/2 {
		t.Errorf("a switch call took %v with a hanging webhook", worst)
	}
	var v WebhookView
	wiretest.WaitFor(t, 15*time.Second, "a failed delivery to hang", func() error {
		wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "GET", "/api/v1/webhooks/hang", nil, &v)
		if v.Status.Failed < 1 {
			return fmt.Errorf("status %+v", v.Status)
		}
		return nil
	})
	a := v.Status.Attempts
	if !strings.Contains(v.Status.LastError, "timed out") || len(a) < notify.WebhookAttempts {
		t.Errorf("status %+v", v.Status)
	}
	// The receiver hangs for the whole test (15 s and more): an attempt
	// ended well short of that was cut by the timeout. The upper bound
	// leaves room for a starved CPU (a 1 s attempt was measured at 1.9 s
	// beside a CPU hog) without letting a missing timeout pass.
	for _, at := range a[:notify.WebhookAttempts] {
		if at.DurationMS < ms(timeout)*0.9 || at.DurationMS > 3*ms(timeout)+500 {
			t.Errorf("attempt took %.0f ms, timeout %v", at.DurationMS, timeout)
		}
	}
	t.Logf("first notice: %d attempts of %.0f..%.0f ms each, then failed: %s", notify.WebhookAttempts, a[0].DurationMS, a[notify.WebhookAttempts-1].DurationMS, v.Status.LastError)
	// Closing the keeper does not wait for the hanging receiver.
	start := time.Now()
	k.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with a hanging webhook", d)
	} else {
		t.Logf("Close returned in %v with %d notices queued", d.Round(time.Millisecond), v.Status.Queued)
	}
}

func TestWebhookQueueDropsOldest(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	gate := make(chan struct{})
	slow := newReceiver(t, func(n int, _ http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select {
			case <-gate:
			case <-r.Context().Done():
			}
		}
	})
	addHook(t, k, WebhookSpec{Name: "slow", URL: slow.srv.URL})
	k.notify(notify.Notice{Kind: notify.NoticeSwitch, Title: "first"})
	wiretest.WaitFor(t, 5*time.Second, "the first notice in flight", func() error {
		if len(slow.deliveries()) != 1 {
			return fmt.Errorf("the first notice is not in flight")
		}
		return nil
	})
	const extra = 10
	start := time.Now()
	for i := range notify.WebhookQueue + extra {
		k.notify(notify.Notice{Kind: notify.NoticeSwitch, Title: fmt.Sprint("n", i)})
	}
	enq := time.Since(start)
	st := k.hooks.Status("slow", false)
	if st.Dropped != extra || st.Queued != notify.WebhookQueue {
		t.Fatalf("after %d notices behind a stuck one: %+v", notify.WebhookQueue+extra, st)
	}
	close(gate)
	wiretest.WaitFor(t, 10*time.Second, "the queue to drain", func() error {
		if n := len(slow.deliveries()); n != 1+notify.WebhookQueue {
			return fmt.Errorf("%d deliveries", n)
		}
		return nil
	})
	got := slow.deliveries()
	title := func(d delivery) string {
		var n notify.Notice
		_ = json.Unmarshal(d.body, &n)
		return n.Title
	}
	// The oldest ten of the burst were dropped; the rest arrive in order.
	if title(got[1]) != fmt.Sprint("n", extra) || title(got[len(got)-1]) != fmt.Sprint("n", notify.WebhookQueue+extra-1) {
		t.Errorf("after the stuck one: first %q, last %q", title(got[1]), title(got[len(got)-1]))
	}
	if !strings.Contains(apiText(t, k, "/metrics"), fmt.Sprintf(`koipond_webhook_deliveries_total{webhook="slow",result="dropped"} %d`, extra)) {
		t.Error("/metrics does not count the drops")
	}
	t.Logf("%d notices enqueued in %v behind a stuck delivery: %d dropped (oldest), %d delivered after release",
		notify.WebhookQueue+extra, enq, st.Dropped, len(got)-1)
}

func TestRunNoticesReachReceiver(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	rc := newReceiver(t, nil)
	addHook(t, k, WebhookSpec{Name: "all", URL: rc.srv.URL})
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	// A timed run whose threshold fails (no data for the key).
	timed, err := k.CreateRun(ctx, "ci", RunSpec{Name: "gate", BehaviorSet: "bg", DurationSecs: 1,
		Target:     state.Target{APIBase: "http://127.0.0.1:9090/api"},
		Thresholds: map[string][]string{"api:chat.postMessage": {"p95 < 300ms"}}})
	if err != nil {
		t.Fatal(err)
	}
	// A run a person pauses, resumes and stops.
	manual, err := k.CreateRun(ctx, "alice", RunSpec{Name: "manual", BehaviorSet: "bg", Target: state.Target{APIBase: "http://127.0.0.1:9090/api"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []wire.State{wire.Paused, wire.Running, wire.Stopped} {
		if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/runs/"+manual.ID+"/"+map[wire.State]string{wire.Paused: "pause", wire.Running: "resume", wire.Stopped: "stop"}[st], nil, nil); code != 200 {
			t.Fatalf("%s: %d", st, code)
		}
	}
	byRun := func(run, kind string) *notify.JSONPayload {
		for _, d := range rc.deliveries() {
			var p notify.JSONPayload
			if json.Unmarshal(d.body, &p) == nil && p.Run == run && p.Kind == kind {
				return &p
			}
		}
		return nil
	}
	wiretest.WaitFor(t, 15*time.Second, "the timed and started notices", func() error {
		for _, want := range []struct{ run, kind string }{
			{timed.ID, notify.NoticeRunStarted}, {timed.ID, notify.NoticeRunEnded},
			{manual.ID, notify.NoticeRunStarted}, {manual.ID, notify.NoticeRunPaused}, {manual.ID, notify.NoticeRunResumed},
			{manual.ID, notify.NoticeRunStopped}, {manual.ID, notify.NoticeRunEnded},
		} {
			if byRun(want.run, want.kind) == nil {
				return fmt.Errorf("no %s for run %s", want.kind, want.run)
			}
		}
		return nil
	})
	end := byRun(timed.ID, notify.NoticeRunEnded)
	if end.Fields["verdict"] != "failed" || !strings.Contains(end.Fields["failed"], "api:chat.postMessage p95 < 300ms") ||
		!strings.Contains(end.Title, "THRESHOLDS FAILED") || end.Fields["reason"] != "duration elapsed" {
		t.Errorf("run.ended of the timed run: %+v", end)
	}
	if p := byRun(manual.ID, notify.NoticeRunStopped); p.Actor != "anonymous" || !strings.Contains(p.Title, "stopped by anonymous") {
		t.Errorf("run.stopped: %+v", p) // the API's caller without auth
	}
	if p := byRun(manual.ID, notify.NoticeRunEnded); p.Fields["verdict"] != "" || !strings.Contains(p.Fields["reason"], "stopped by") {
		t.Errorf("run.ended of the manual run: %+v", p)
	}
	t.Logf("run.ended (timed): %q / %q", end.Title, end.Text)
}

func TestWebhookTestEndpointAndBadSpecs(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ok := newReceiver(t, nil)
	addHook(t, k, WebhookSpec{Name: "ok", URL: ok.srv.URL, Secret: ptr("0123456789")})
	var a notify.DeliveryAttempt
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/webhooks/ok/test", nil, &a); code != 200 || a.Result != "delivered" || a.Status != 200 {
		t.Errorf("test: %d %+v", code, a)
	}
	if d := ok.deliveries(); len(d) != 1 || d[0].kind() != "test" {
		t.Errorf("receiver got %d", len(d))
	} else {
		verify(t, d[0], "0123456789")
	}
	// A PUT without secret keeps it; with "" removes it.
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "PUT", "/api/v1/webhooks/ok", map[string]any{"url": ok.srv.URL, "format": "slack"}, nil); code != 200 {
		t.Fatalf("put: %d", code)
	}
	if w := k.State().Webhook(nil, "ok"); w.Secret != "0123456789" || w.Format != "slack" {
		t.Errorf("after PUT: %+v", w)
	}
	for _, c := range []struct {
		body  string
		field string
	}{
		{`{"name": "a b", "url": "http://127.0.0.1:1"}`, "name"},                                       // not a path segment
		{`{"name": "a", "url": "ftp://127.0.0.1:1"}`, "url"},                                           // not http(s)
		{`{"name": "a", "url": "http://127.0.0.1:1", "format": "xml"}`, "format"},                      // unknown format
		{`{"name": "a", "url": "http://127.0.0.1:1", "kinds": ["run.*", "runs.started"]}`, "kinds[1]"}, // matches no kind
		{`{"name": "a", "url": "http://127.0.0.1:1", "kinds": ["[x"]}`, "kinds[0]"},                    // bad glob
		{`{"name": "a", "url": "http://127.0.0.1:1", "secret": "short"}`, "secret"},                    // too short
		{`{"name": "a", "url": "http://127.0.0.1:1", "colour": "red"}`, "colour"},                      // unknown field
		{`{"name": "ok", "url": "http://127.0.0.1:1"}`, ""},                                            // exists: conflict
	} {
		var eb errorBody
		code := wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "POST", "/api/v1/webhooks", c.body, &eb)
		if code < 400 || eb.Error == nil || eb.Error.Field != c.field {
			t.Errorf("%s: %d %+v, want field %q", c.body, code, eb.Error, c.field)
		}
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "DELETE", "/api/v1/webhooks/ok", nil, nil); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/webhooks/ok/test", nil, nil); code != 404 {
		t.Errorf("test after delete: %d", code)
	}
}

// A failed delivery's error is shown to viewers and logged: it must not
// quote the secret parts of the URL (a Slack hook's last path segment, a
// query token), which net/http's errors do.
func TestWebhookErrorsDoNotLeakTheURLSecrets(t *testing.T) {
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.WebhookTimeout = time.Second })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	addHook(t, k, WebhookSpec{Name: "slack", Format: "slack", URL: "http://" + dead + "/services/T0/B0/SECRETPATH?token=SECRETTOKEN"})
	a, err := k.TestWebhook(context.Background(), "test", "slack")
	if err != nil {
		t.Fatal(err)
	}
	view := k.WebhookView(k.State().Webhook(nil, "slack"), true)
	shown := fmt.Sprintf("%s %+v", a.Error, view)
	t.Logf("shown: %s", a.Error)
	if a.Result != "failed" || !strings.Contains(a.Error, "connection refused") {
		t.Errorf("attempt %+v", a)
	}
	for _, secret := range []string{"SECRETPATH", "SECRETTOKEN"} {
		if strings.Contains(shown, secret) {
			t.Errorf("%s leaks into what viewers see: %s", secret, shown)
		}
	}
}
