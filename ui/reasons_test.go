package ui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/wire/wiretest"
)

// reasonsSet calls auth.test and reads the history of a channel pond does
// not have, without a formation or a websocket.
const reasonsSet = `{"behaviors": {
  "auth.test": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
  "history": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "conversations.history", "args": {"channel": "C_NO_SUCH"}}}]}}}`

// keyReasons is the part of a metric or report key about its failures.
type keyReasons struct {
	Key      string
	Failures uint64
	Reasons  []struct {
		Reason string
		Count  uint64
		Sample string
	}
}

// reasonOf returns a key's count for reason (0 when absent) and whether
// the reasons add up to the key's failures.
func reasonOf(keys []keyReasons, key, reason string) (count uint64, whole bool) {
	for _, k := range keys {
		if k.Key != key {
			continue
		}
		var sum uint64
		for _, r := range k.Reasons {
			sum += r.Count
			if r.Reason == reason {
				count = r.Count
			}
		}
		return count, sum == k.Failures
	}
	return 0, false
}

// Why requests fail is said everywhere a user looks. A run against pond
// without a token template fails with pond's `not_authed`: the run view
// shows it next to the failing key, the report (JSON, CSV, report page)
// counts it, and the school log names it once. A run with tokens but a
// wrong channel id fails with `channel_not_found` the same way.
func TestUIFailureReasons(t *testing.T) {
	s := startSystem(t)
	var bs struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "reasons", "files": []map[string]string{{"name": "reasons.json", "content": reasonsSet}}}, &bs)
	newRun := func(name string, target map[string]string, secs int) string {
		body := map[string]any{"name": name, "behavior_set": bs.Hash, "koi": 10, "ramp": 0, "time_scale": 60, "target": target}
		if secs > 0 {
			body["duration_secs"] = secs
		}
		var r struct{ ID string }
		s.call(t, "POST", "/runs", body, &r)
		return r.ID
	}
	noToken := newRun("no-token", map[string]string{"api_base": s.p.URL() + "/api"}, 0)
	wrongChannel := newRun("wrong-channel", map[string]string{"api_base": s.p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"}, 4)

	// The live metrics name the reason.
	var m struct{ Keys []keyReasons }
	wiretest.Until(t, 30*time.Second, "not_authed in the run's live metrics", func() bool {
		s.call(t, "GET", "/runs/"+noToken+"/metrics?window=5s", nil, &m)
		n, _ := reasonOf(m.Keys, "api:auth.test", "not_authed")
		return n > 0
	})

	// The run view shows it next to the failing key.
	ctx := newBrowser(t)
	run(t, ctx, "open the failing run", chromedp.Navigate(s.ui+"/#/runs/"+noToken))
	waitJS(t, ctx, 15*time.Second, "the top reason next to api:auth.test",
		`!!document.querySelector('#methods tr[data-key="api:auth.test"] td.reason[data-reason="not_authed"]')`)
	// One evaluation: the table is rebuilt every refresh.
	cell := get(t, ctx, "read the reason cell", chromedp.Evaluate[string](`document.querySelector('#methods tr[data-key="api:auth.test"] td.reason').textContent`))
	if !strings.Contains(cell, "not_authed") || !strings.Contains(cell, "×") {
		t.Errorf("run view reason cell %q, want not_authed with its count", cell)
	}
	screenshot(t, ctx, "run-reasons")

	// The final report counts every failure under its reason.
	s.call(t, "POST", "/runs/"+noToken+"/stop", nil, nil)
	var rep struct {
		Final bool
		Keys  []keyReasons
	}
	for _, id := range []string{noToken, wrongChannel} {
		wiretest.Until(t, 30*time.Second, "the final report of "+id, func() bool {
			s.call(t, "GET", "/runs/"+id+"/report", nil, &rep)
			return rep.Final
		})
	}
	rep.Keys = nil // decoding into a used slice would keep absent fields
	s.call(t, "GET", "/runs/"+noToken+"/report", nil, &rep)
	authed, whole := reasonOf(rep.Keys, "api:auth.test", "not_authed")
	if authed == 0 || !whole {
		t.Fatalf("no-token report: api:auth.test not_authed %d (reasons cover its failures: %v); keys %+v", authed, whole, rep.Keys)
	}
	if n, whole := reasonOf(rep.Keys, "api:conversations.history", "not_authed"); n == 0 || !whole {
		t.Errorf("no-token report: api:conversations.history not_authed %d, whole %v", n, whole)
	}
	csv := s.apiText(t, "/runs/"+noToken+"/report?format=csv")
	if !strings.Contains(strings.SplitN(csv, "\n", 2)[0], ",reasons") || !strings.Contains(csv, fmt.Sprintf("not_authed=%d", authed)) {
		t.Errorf("CSV has no reasons column with not_authed=%d:\n%s", authed, csv)
	}
	rep.Keys = nil
	s.call(t, "GET", "/runs/"+wrongChannel+"/report", nil, &rep)
	if n, whole := reasonOf(rep.Keys, "api:conversations.history", "channel_not_found"); n == 0 || !whole {
		t.Errorf("wrong-channel report: api:conversations.history channel_not_found %d, whole %v; keys %+v", n, whole, rep.Keys)
	}
	for _, k := range rep.Keys {
		if k.Key == "api:auth.test" && (k.Failures != 0 || len(k.Reasons) != 0) {
			t.Errorf("wrong-channel report: auth.test failed: %+v", k)
		}
	}

	// The report page shows the block with the same count.
	run(t, ctx, "open the report", chromedp.Navigate(s.ui+"/#/runs/"+noToken+"/report"))
	waitJS(t, ctx, 10*time.Second, "the failures-by-reason table",
		`!!document.querySelector('#report-reasons tr[data-key="api:auth.test"][data-reason="not_authed"]')`)
	shown := get(t, ctx, "read the reason row", chromedp.Evaluate[string](
		`document.querySelector('#report-reasons tr[data-key="api:auth.test"][data-reason="not_authed"]').dataset.count`))
	if shown != fmt.Sprint(authed) {
		t.Errorf("report page says not_authed ×%s, the API %d", shown, authed)
	}
	sample := get(t, ctx, "read the sample", chromedp.Evaluate[string](`document.querySelector('#report-reasons tr[data-key="api:auth.test"][data-reason="not_authed"] td.sample').textContent`))
	if !strings.Contains(sample, `"not_authed"`) {
		t.Errorf("report page sample %q, want pond's reply", sample)
	}
	screenshot(t, ctx, "report-reasons")

	// The school log named each reason once per key and run, with a sample.
	for _, want := range []struct{ run, key, reason string }{
		{noToken, "api:auth.test", "not_authed"},
		{noToken, "api:conversations.history", "not_authed"},
		{wrongChannel, "api:conversations.history", "channel_not_found"},
	} {
		lines := s.schoolLog.matching("WARN requests failing", `run="`+want.run+`"`, `key="`+want.key+`"`, `reason="`+want.reason+`"`)
		// Once per school that ran koi of the run: at most two.
		if len(lines) == 0 || len(lines) > len(s.schools) {
			t.Errorf("school log: %d lines for %s %s %s, want 1–%d", len(lines), want.run, want.key, want.reason, len(s.schools))
			continue
		}
		if !strings.Contains(lines[0], `sample=`) {
			t.Errorf("school log line without a sample: %s", lines[0])
		}
		t.Logf("school log: %s", lines[0])
	}
}
