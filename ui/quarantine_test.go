package ui_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/wire"
)

// The run page says why the keeper quarantined a run: three schools
// report closing its koi at their memory ceiling, the keeper pauses it,
// and the page shows the reason and how to get out of it.
func TestUIQuarantineReason(t *testing.T) {
	s := startSystem(t)
	ctx := newBrowser(t)
	var bs struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "chat-basics", "files": []map[string]string{{"name": "chat-basics.json", "content": behaviorSet}}}, &bs)
	var created struct{ ID string }
	s.call(t, "POST", "/runs", map[string]any{"name": "bomb", "behavior_set": bs.Hash, "koi": 4, "ramp": 0,
		"target": map[string]string{"api_base": s.p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"}}, &created)
	id := created.ID
	run(t, ctx, "open the run page", chromedp.Navigate(s.ui+"/#/runs/"+id), chromedp.WaitVisible(chromedp.CSS("#guard")))
	if got := get(t, ctx, "the banner hidden", chromedp.Evaluate[bool](`document.querySelector('#quarantine').hidden`)); !got {
		t.Error("the quarantine banner shows on a healthy run")
	}
	// Three schools given koi of the run (only a school holding a run's
	// koi can blame it) report closing them at their memory ceiling.
	schools := []string{"bomb-0", "bomb-1", "bomb-2"}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		held := 0
		for _, school := range schools {
			if _, err := s.k.Poll(context.Background(), &wire.PollRequest{School: school, Capacity: 1000, Clock: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if a := s.k.State().Assignment(nil, id, school); a != nil && a.Count() > 0 {
				held++
			}
		}
		if held == len(schools) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, %d of the 3 schools hold koi of the run", held)
		}
	}
	for _, school := range schools {
		_, err := s.k.Poll(context.Background(), &wire.PollRequest{School: school, Capacity: 1000, Clock: time.Now(),
			Runs: []wire.RunStatus{{Run: id, Pressure: "memory ceiling: school at 1.9GiB of its 2GiB limit (95%)", PressureAt: time.Now()}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitJS(t, ctx, 10*time.Second, "the quarantine banner",
		`(() => { const b = document.querySelector('#quarantine'); return !!b && !b.hidden && b.textContent.includes('3 school failures'); })()`)
	text := get(t, ctx, "the banner", chromedp.Evaluate[string](`document.querySelector('#quarantine').textContent`))
	if !strings.Contains(text, "memory ceiling") || !strings.Contains(text, "Resume") {
		t.Errorf("banner: %q", text)
	}
	screenshot(t, ctx, "run-quarantined")
	s.call(t, "POST", "/runs/"+id+"/resume", nil, nil)
	waitJS(t, ctx, 10*time.Second, "the banner gone after resume", `document.querySelector('#quarantine').hidden`)
}
