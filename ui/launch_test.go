package ui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
)

// paramFormation needs the channel every koi looks at; each koi then
// waits three real seconds (at the run's time scale 60) before it has
// finished, so the dialog can show it started and not yet finished.
const paramFormation = `{
  "name": "look at a channel",
  "begin_within_secs": 60,
  "percent": 50,
  "params": [
    {"name": "channel_id", "required": true, "doc": "the channel every koi opens"},
    {"name": "limit", "default": "5", "doc": "how many messages"}
  ],
  "sequence": {"steps": [
    {"request": {"type": "api", "method": "conversations.info", "args": {"channel": "{{ get \"channel_id\" }}"}},
     "delay_after_ms": 180000}
  ]}
}
`

// The launch dialog shows a field per declared parameter with its doc and
// marks the required one; submitting without it is refused in the dialog,
// naming it, and nothing reaches the keeper; with it the launch runs and
// the dialog's counts go from started to finished, matching what pond saw.
func TestUILaunchWithRequiredParam(t *testing.T) {
	s := startSystem(t)
	ctx := newBrowser(t)
	const n, planned = 10, 5
	var bs struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "chat-basics", "files": []map[string]string{{"name": "chat-basics.json", "content": behaviorSet}}}, &bs)
	var fm struct{ Hash string }
	s.call(t, "POST", "/formations", map[string]any{"file": map[string]string{"name": "look.json", "content": paramFormation}}, &fm)
	var rn struct{ ID string }
	s.call(t, "POST", "/runs", map[string]any{"name": "launch target", "behavior_set": bs.Hash, "koi": n, "ramp": 0, "time_scale": 60,
		"target": map[string]string{"api_base": s.p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"}}, &rn)
	wiretest.Until(t, 30*time.Second, "every koi connected at pond", func() bool { return s.p.Stats().WebsocketsOpen == n })
	wiretest.WaitFor(t, 10*time.Second, "the keeper to see them connected", func() error {
		var v struct {
			KoiNow struct{ Connected int } `json:"koi_now"`
		}
		s.call(t, "GET", "/runs/"+rn.ID, nil, &v)
		if v.KoiNow.Connected != n {
			return fmt.Errorf("%d connected", v.KoiNow.Connected)
		}
		return nil
	})

	run(t, ctx, "open the formation", chromedp.Navigate(s.ui+"/#/formations/"+fm.Hash), chromedp.WaitVisible(chromedp.CSS("#launch-open")))
	if txt := get(t, ctx, "read the declared parameters", chromedp.Text(chromedp.CSS("#formation-params"))); !strings.Contains(txt, "channel_id (required) — the channel every koi opens") ||
		!strings.Contains(txt, "limit (default 5)") {
		t.Errorf("the formation page lists its parameters as %q", txt)
	}
	run(t, ctx, "open the launch dialog", chromedp.Click(chromedp.CSS("#launch-open")), chromedp.WaitVisible(chromedp.CSS("#launch-form [name=param-channel_id]")))
	label := get(t, ctx, "read the parameter's field", chromedp.Text(chromedp.CSS(`#launch-form label:has([name=param-channel_id])`)))
	for _, w := range []string{"channel_id", "*", "the channel every koi opens", "required"} {
		if !strings.Contains(label, w) {
			t.Errorf("channel_id field says %q; want %q in it", label, w)
		}
	}
	if ph := get(t, ctx, "read the default", chromedp.Evaluate[string](`document.querySelector('#launch-form [name=param-limit]').placeholder`)); ph != "default: 5" {
		t.Errorf("limit placeholder %q", ph)
	}
	screenshot(t, ctx, "launch-dialog-params")

	run(t, ctx, "launch without channel_id", chromedp.Click(chromedp.CSS("#launch-go")))
	waitJS(t, ctx, 5*time.Second, "the dialog to refuse, naming channel_id",
		`(() => { const f = document.querySelector('#launch-form label.field.invalid'); return !!f && !!f.querySelector('[name=param-channel_id]') && f.querySelector('.field-error').textContent.includes('channel_id is required'); })()`)
	var ls []struct{ ID string }
	s.call(t, "GET", "/launches?run="+rn.ID, nil, &ls)
	if len(ls) != 0 {
		t.Fatalf("a refused launch reached the keeper: %+v", ls)
	}
	screenshot(t, ctx, "launch-dialog-refused")

	// Record every distinct count the dialog shows, to see it progress.
	run(t, ctx, "fill channel_id and launch", chromedp.SetValue(chromedp.CSS("#launch-form [name=param-channel_id]"), pond.ChannelID(1)),
		chromedp.Click(chromedp.CSS("#launch-go")), chromedp.WaitVisible(chromedp.CSS("#launch-countdown")))
	get(t, ctx, "watch the counts", chromedp.Evaluate[bool](`(() => {
		window.seenCounts = [];
		const note = () => { const e = document.querySelector('#launch-started'); if (!e) return;
			const c = e.dataset.started + '/' + e.dataset.finished + '/' + e.dataset.failed + '/' + e.dataset.cancelled;
			if (window.seenCounts[window.seenCounts.length - 1] !== c) window.seenCounts.push(c); };
		note();
		new MutationObserver(note).observe(document.querySelector('#launch-dialog'), { subtree: true, childList: true, attributes: true });
		return true;
	})()`))
	waitJS(t, ctx, 40*time.Second, "the dialog to show every koi finished",
		fmt.Sprintf(`(() => { const e = document.querySelector('#launch-started'); return !!e && e.dataset.count === '%d' && e.dataset.started === '%d' && e.dataset.finished === '%d'; })()`, planned, planned, planned))
	waitJS(t, ctx, 10*time.Second, "the dialog to say done", `document.querySelector('#launch-countdown').textContent === 'Done'`)
	seen := get(t, ctx, "read the counts seen", chromedp.Evaluate[[]string](`window.seenCounts`))
	inFlight := false
	for _, c := range seen {
		var st, fin, fail, can int
		if _, err := fmt.Sscanf(c, "%d/%d/%d/%d", &st, &fin, &fail, &can); err != nil {
			t.Fatalf("count %q: %v", c, err)
		}
		if fail != 0 || can != 0 || fin > st {
			t.Errorf("the dialog showed %q (started/finished/failed/cancelled)", c)
		}
		inFlight = inFlight || st > fin
	}
	if !inFlight {
		t.Errorf("the dialog never showed koi started and not yet finished: %v", seen)
	}
	t.Logf("counts the dialog showed (started/finished/failed/cancelled): %v", seen)
	if got := s.p.Stats().Requests["conversations.info"]["200"]; got != planned {
		t.Errorf("pond answered %d conversations.info, want %d", got, planned)
	}
	if e := s.p.Stats().Errors["conversations.info"]; len(e) != 0 {
		t.Errorf("pond refused calls: %v", e)
	}
	screenshot(t, ctx, "launch-progress-params")
	waitJS(t, ctx, 10*time.Second, "the launch's own step in the dialog",
		`[...document.querySelectorAll('#launch-steps td.mono')].some(td => /^formation:look at a channel#launch-[0-9a-f]+:1$/.test(td.textContent))`)

	// The report's launch row shows the counts and its own step.
	run(t, ctx, "close the dialog", chromedp.Click(chromedp.CSS("#launch-close")), chromedp.WaitNotPresent(chromedp.CSS("#launch-dialog")))
	run(t, ctx, "open the report", chromedp.Navigate(s.ui+"/#/runs/"+rn.ID+"/report"))
	waitJS(t, ctx, 15*time.Second, "the launch's step in the report",
		fmt.Sprintf(`(() => { const e = document.querySelector('#report-launches .launch-step[data-key*="#launch-"][data-key$=":1"]'); return !!e && e.textContent.startsWith('step 1: %d calls, 0 failed'); })()`, planned))
	row := get(t, ctx, "read the report's launch row", chromedp.Text(chromedp.CSS("#report-launches tr[data-launch]")))
	if !strings.Contains(row, fmt.Sprintf("%d finished · 0 failed · 0 cancelled", planned)) {
		t.Errorf("report launch row %q", row)
	}
}
