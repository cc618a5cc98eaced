package ui_test

import (
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/pond"
)

// The run page's guard panel against the whole system: Shed from the
// form holds back half the koi at pond and Restore brings them back; when
// pond starts failing, the live threshold turns to fail and the
// guardrail's pause shows in the actions taken, with the run paused.
func TestUIGuardPanel(t *testing.T) {
	s := startSystem(t)
	ctx := newBrowser(t)
	const n = 40
	var bs struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "chat-basics", "files": []map[string]string{{"name": "chat-basics.json", "content": behaviorSet}}}, &bs)
	var created struct{ ID string }
	s.call(t, "POST", "/runs", map[string]any{"name": "guarded", "behavior_set": bs.Hash, "koi": n, "ramp": 0, "time_scale": 120,
		"target":                map[string]string{"api_base": s.p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"},
		"thresholds":            map[string][]string{"api:auth.test": {"error_rate < 5%"}},
		"threshold_window_secs": 2,
		"guardrails":            []map[string]any{{"name": "api-health", "key": "api:*", "when": "error_rate > 10%", "for": "2s", "action": "pause"}}}, &created)
	id := created.ID

	run(t, ctx, "open the run page", chromedp.Navigate(s.ui+"/#/runs/"+id), chromedp.WaitVisible(chromedp.CSS("#guard")))
	wiretest.Until(t, 20*time.Second, "40 koi connected at pond", func() bool { return s.p.Stats().WebsocketsOpen == n })
	waitJS(t, ctx, 10*time.Second, "the live threshold passing",
		`(() => { const r = document.querySelector('#live-thresholds tr[data-key="api:auth.test"]'); return !!r && r.dataset.state === 'pass'; })()`)
	waitJS(t, ctx, 10*time.Second, "the guardrail evaluated ok",
		`(() => { const r = document.querySelector('#guardrails tr[data-rule="api-health"]'); return !!r && r.dataset.state === 'ok'; })()`)

	// Shed half from the form, then restore.
	run(t, ctx, "shed 50%",
		chromedp.SetValue(chromedp.CSS(`#shed-form [name=percent]`), "50"),
		chromedp.Click(chromedp.CSS(`#shed-form button[type=submit]`)))
	waitJS(t, ctx, 5*time.Second, "the shed chip", `(() => { const c = document.querySelector('#shed-info [data-shed]'); return !!c && c.dataset.shed === '50'; })()`)
	wiretest.Until(t, 10*time.Second, "20 koi at pond", func() bool { return s.p.Stats().WebsocketsOpen == n/2 })
	waitJS(t, ctx, 5*time.Second, "the koi stat against the shed target", `document.querySelector('#stat-koi').textContent === '20 / 20'`)
	screenshot(t, ctx, "run-guard-shed")
	run(t, ctx, "a bad shed", chromedp.SetValue(chromedp.CSS(`#shed-form [name=percent]`), "100"),
		chromedp.Click(chromedp.CSS(`#shed-form button[type=submit]`)))
	waitJS(t, ctx, 5*time.Second, "the field error", `document.querySelector('#shed-form .field.invalid .field-error').textContent.length > 0`)
	run(t, ctx, "restore", chromedp.Click(chromedp.CSS(`#shed-restore`)))
	wiretest.Until(t, 20*time.Second, "40 koi at pond again", func() bool { return s.p.Stats().WebsocketsOpen == n })
	waitJS(t, ctx, 5*time.Second, "no shed chip", `!document.querySelector('#shed-info [data-shed]')`)

	// Pond fails: the threshold fails live and the guardrail pauses the run.
	time.Sleep(2 * time.Second) // a whole window of restored traffic
	if err := s.p.SetFaults(map[string]pond.Fault{"*": {Error: 0.3}}); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 10*time.Second, "the live threshold failing",
		`(() => { const r = document.querySelector('#live-thresholds tr[data-key="api:auth.test"]'); return !!r && r.dataset.state === 'fail'; })()`)
	waitJS(t, ctx, 10*time.Second, "the pause in the actions taken",
		`(() => { const r = document.querySelector('#guard-actions tr[data-action="pause"]'); return !!r && r.textContent.includes('api-health'); })()`)
	var state struct{ State string }
	s.call(t, "GET", "/runs/"+id, nil, &state)
	if state.State != "paused" {
		t.Errorf("run is %s, want paused", state.State)
	}
	text := get(t, ctx, "the actions row", chromedp.Evaluate[string](`document.querySelector('#guard-actions tbody tr').textContent`))
	t.Logf("actions taken row: %s", text)
	screenshot(t, ctx, "run-guard-paused")
}
