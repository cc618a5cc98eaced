package ui_test

import (
	"bufio"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/examples"
)

// writeSessionsExport writes a raw call log of 60 users' sessions over
// the slack set's methods to path: users.info opens a session, then
// conversations.history; after it conversations.mark or chat.postMessage,
// and after a post reactions.add half the time. Sessions are 20 minutes
// apart (the page splits them at 5).
func writeSessionsExport(t *testing.T, path string) {
	t.Helper()
	next := map[string][]struct {
		to string
		p  float64
	}{
		"users.info":            {{"conversations.history", 0.8}},
		"conversations.history": {{"conversations.mark", 0.5}, {"chat.postMessage", 0.4}},
		"chat.postMessage":      {{"reactions.add", 0.5}},
		"conversations.mark":    {{"chat.postMessage", 0.3}},
	}
	r := rand.New(rand.NewPCG(7, 18))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "user,method,timestamp")
	start := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for u := range 60 {
		for s := range 6 {
			at := start.Add(time.Duration(s)*20*time.Minute + time.Duration(u)*time.Second)
			m := "users.info"
			for n := 0; m != "" && n < 20; n++ {
				fmt.Fprintf(w, "U%d,%s,%d\n", u, m, at.UnixMilli())
				at = at.Add(time.Duration(2+r.IntN(8)) * time.Second)
				v, to := r.Float64(), ""
				for _, x := range next[m] {
					if v < x.p {
						to = x.to
						break
					}
					v -= x.p
				}
				m = to
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// requestPairs lists the (method → next method) pairs a set's sequences
// can make, following `choose` branches.
func requestPairs(set *behaviors.Set) map[string]bool {
	pairs := map[string]bool{}
	var walk func(seq *behaviors.Sequence, prev string)
	walk = func(seq *behaviors.Sequence, prev string) {
		if seq == nil {
			return
		}
		for i := range seq.Steps {
			st := &seq.Steps[i]
			if st.Request != nil && st.Request.Type == behaviors.API {
				if prev != "" {
					pairs[prev+">"+st.Request.Method] = true
				}
				prev = st.Request.Method
			}
			for _, b := range st.Choose {
				walk(b.Sequence, prev)
			}
		}
	}
	for _, b := range set.Behaviors {
		walk(b.Sequence, "")
	}
	return pairs
}

// The generate page learns call order from an uploaded export: the
// transitions table shows each learned transition with its probability,
// delays and count and the coverage; unchecking one and regenerating
// marks it dropped; the saved set's sequences lack it and keep the others.
func TestUIGenerateSessions(t *testing.T) {
	s := startSystem(t)
	ctx := newBrowser(t)
	freqs, _ := fs.ReadFile(examples.FS, "slack/frequencies.json")
	seqs, _ := fs.ReadFile(examples.FS, "slack/sequences.json")
	var slack struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "slack", "files": []map[string]string{
		{"name": "frequencies.json", "content": string(freqs)}, {"name": "sequences.json", "content": string(seqs)}}}, &slack)
	upload := filepath.Join(t.TempDir(), "sessions.csv")
	writeSessionsExport(t, upload)

	const drop = "chat.postMessage>reactions.add"
	run(t, ctx, "open the generate page", chromedp.Navigate(s.ui+"/#/behaviors/generate"), chromedp.WaitVisible(chromedp.CSS("#generate-form")))
	run(t, ctx, "upload with sessions",
		chromedp.SetUploadFiles(chromedp.CSS(`#generate-form [name=file]`), []string{upload}),
		chromedp.SetValue(chromedp.CSS(`#generate-form [name=sequences]`), slack.Hash),
		chromedp.Click(chromedp.CSS(`#generate-form [name=sessions]`)),
		chromedp.SetValue(chromedp.CSS(`#generate-form [name=session_gap]`), "5m"),
		chromedp.Click(chromedp.CSS(`#generate-form button[type=submit]`)))
	waitJS(t, ctx, 15*time.Second, "the transitions table", fmt.Sprintf(`!!document.querySelector('#generate-transitions tr[data-transition=%q]')`, drop))
	rowText := get(t, ctx, "read the transition's row", chromedp.Text(chromedp.CSS(fmt.Sprintf(`#generate-transitions tr[data-transition=%q]`, drop))))
	for _, w := range []string{"chat.postMessage", "reactions.add", "% ±", "/"} {
		if !strings.Contains(rowText, w) {
			t.Errorf("the row reads %q: no %q", rowText, w)
		}
	}
	cov := get(t, ctx, "read the coverage", chromedp.Text(chromedp.CSS(`#generate-sessions-coverage`)))
	if !strings.Contains(cov, "360 sessions of 60 users") || !strings.Contains(cov, "% of the observed transitions") {
		t.Errorf("the coverage line reads %q", cov)
	}
	screenshot(t, ctx, "generate-sessions")

	// Drop one, regenerate: it is marked dropped, unchecked, and can be
	// kept again; the others stay kept.
	covBefore := get(t, ctx, "read the coverage share", chromedp.Evaluate[string](`document.querySelector('#generate-sessions-coverage').dataset.coverage`))
	run(t, ctx, "uncheck it", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#generate-transitions input[data-transition=%q]`, drop))))
	waitJS(t, ctx, 5*time.Second, "the regenerate button", `!document.querySelector('#generate-regenerate').hidden`)
	run(t, ctx, "regenerate", chromedp.Click(chromedp.CSS(`#generate-regenerate`)))
	waitJS(t, ctx, 15*time.Second, "the transition marked dropped",
		fmt.Sprintf(`(() => { const r = document.querySelector('#generate-transitions tr[data-transition=%q]'); return !!r && r.classList.contains('dropped') && !r.querySelector('input').checked && !r.querySelector('input').disabled; })()`, drop))

	covAfter := get(t, ctx, "read the coverage share again", chromedp.Evaluate[string](`document.querySelector('#generate-sessions-coverage').dataset.coverage`))
	t.Logf("coverage %s before dropping %s, %s after", covBefore, drop, covAfter)
	if before, after := parseFloat(covBefore), parseFloat(covAfter); !(after < before) {
		t.Errorf("coverage %q before dropping a transition, %q after: want it lower", covBefore, covAfter)
	}

	run(t, ctx, "save as a new set", chromedp.SetValue(chromedp.CSS(`#generate-save [name=name]`), "slack-sessions"),
		chromedp.Click(chromedp.CSS(`#generate-save button[type=submit]`)))
	waitJS(t, ctx, 15*time.Second, "the saved set opened", `location.hash.startsWith('#/behaviors/') && location.hash !== '#/behaviors/generate'`)
	var sets []struct {
		Name, Hash string
		Version    int
	}
	s.call(t, "GET", "/behavior-sets", nil, &sets)
	hash := ""
	for _, x := range sets {
		if x.Name == "slack-sessions" {
			hash = x.Hash
		}
	}
	if hash == "" {
		t.Fatalf("no slack-sessions saved: %+v", sets)
	}
	var full struct {
		Files []struct{ Name, Content string }
	}
	s.call(t, "GET", "/behavior-sets/"+hash, nil, &full)
	var files []behaviors.File
	for _, f := range full.Files {
		files = append(files, behaviors.File{Name: f.Name, Data: []byte(f.Content)})
	}
	set, diags := behaviors.Parse(files...)
	if set == nil || diags.HasErrors() {
		t.Fatalf("the saved set does not parse: %v", diags)
	}
	pairs := requestPairs(set)
	if pairs[drop] {
		t.Errorf("the saved set still makes %s: %v", drop, pairs)
	}
	for _, w := range []string{"users.info>conversations.history", "conversations.history>conversations.mark", "conversations.history>chat.postMessage"} {
		if !pairs[w] {
			t.Errorf("the saved set lacks the kept %s: %v", w, pairs)
		}
	}
}

// parseFloat reads a number, NaN when it is not one.
func parseFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return f
}
