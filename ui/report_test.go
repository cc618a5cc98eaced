package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/pond"
)

// reportKey is the part of a report key the page shows.
type reportKey struct {
	Key       string             `json:"key"`
	Count     uint64             `json:"count"`
	ErrorRate float64            `json:"error_rate"`
	P50       *float64           `json:"p50_ms"`
	P95       *float64           `json:"p95_ms"`
	Max       *float64           `json:"max_ms"`
	Outcomes  map[string]float64 `json:"outcomes"`
}

// apiText GETs an API path and returns the body.
func (s *system) apiText(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(s.api + "/api/v1" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// The report page of a finished run shows the API's numbers, its CSV
// download (through fetch, the token never in the URL) holds the API's
// CSV rows, and comparing it with a baseline run against a faster pond
// marks the slowed method regressed, as the API says.
func TestUIRunReport(t *testing.T) {
	s := startSystem(t)
	slow, err := pond.Open(context.Background(), pond.Config{Users: 500, Channels: 10, DisableRateLimits: true,
		Inject: map[string]pond.Fault{"auth.test": {Latency: 200 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	var bs struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "chat-basics", "files": []map[string]string{{"name": "chat-basics.json", "content": behaviorSet}}}, &bs)
	newRun := func(name, apiBase string) string {
		var r struct{ ID string }
		s.call(t, "POST", "/runs", map[string]any{"name": name, "behavior_set": bs.Hash, "koi": 10, "ramp": 0, "time_scale": 60, "duration_secs": 4,
			"target":     map[string]string{"api_base": apiBase, "token": "xoxp-pond-{{.Index}}"},
			"thresholds": map[string][]string{"api:auth.test": {"p95 < 100ms"}}}, &r)
		return r.ID
	}
	baseID := newRun("baseline", s.p.URL()+"/api")
	runID := newRun("slowed", slow.URL()+"/api")
	var rep struct {
		Final    bool
		Passed   *bool
		Koi      int
		Keys     []reportKey
		Fidelity *struct {
			Verdict, Summary string
			Behaviors        []struct{ Behavior, Verdict string }
		}
	}
	for _, id := range []string{baseID, runID} {
		wiretest.Until(t, 30*time.Second, "the final report of "+id, func() bool {
			s.call(t, "GET", "/runs/"+id+"/report", nil, &rep)
			return rep.Final
		})
	}

	ctx := newBrowser(t)
	dl := t.TempDir()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl}); err != nil {
		t.Fatalf("allowing downloads: %v", err)
	}

	// The runs table links ended runs to their report.
	run(t, ctx, "open the runs page", chromedp.Navigate(s.ui+"/#/runs"))
	waitJS(t, ctx, 10*time.Second, "the report link of the ended run",
		fmt.Sprintf(`!!document.querySelector('tr[data-run=%q] a.report-link[href="#/runs/%s/report"]')`, runID, runID))

	// The run page shows the fidelity verdict (the ended run's report's)
	// and links to its report.
	run(t, ctx, "open the run", chromedp.Navigate(s.ui+"/#/runs/"+runID), chromedp.WaitVisible(chromedp.CSS(".page-head a.report-link")))
	waitJS(t, ctx, 10*time.Second, "the run's fidelity panel", `!!document.querySelector('#fidelity #fidelity-summary[data-verdict]')`)
	run(t, ctx, "follow the report link",
		chromedp.Click(chromedp.CSS(".page-head a.report-link")))
	waitJS(t, ctx, 5*time.Second, "the report route", fmt.Sprintf(`location.hash === '#/runs/%s/report'`, runID))
	waitJS(t, ctx, 10*time.Second, "the per-key table", `document.querySelectorAll('#report-keys tr[data-key]').length > 0`)
	if len(rep.Keys) == 0 || rep.Passed == nil || *rep.Passed {
		t.Fatalf("the slowed run's report: %+v", rep)
	}
	type row struct {
		Count, P50, P95, Max, Errors string
	}
	rows := get(t, ctx, "read the key rows", chromedp.Evaluate[map[string]row](`Object.fromEntries([...document.querySelectorAll('#report-keys tr[data-key]')].map(tr => {
		const c = tr.querySelectorAll('td');
		return [tr.dataset.key, { Count: c[1].textContent, Errors: c[3].dataset.v, P50: c[4].dataset.v, P95: c[6].dataset.v, Max: c[8].dataset.v }];
	}))`))
	if len(rows) != len(rep.Keys) {
		t.Errorf("page shows %d keys, the API %d", len(rows), len(rep.Keys))
	}
	f := func(p *float64) string {
		if p == nil {
			return ""
		}
		b, _ := json.Marshal(*p)
		return string(b)
	}
	for _, k := range rep.Keys {
		r, ok := rows[k.Key]
		if !ok {
			t.Errorf("no row for %s", k.Key)
			continue
		}
		b, _ := json.Marshal(k.ErrorRate)
		if strings.ReplaceAll(r.Count, ",", "") != fmt.Sprint(k.Count) || r.P50 != f(k.P50) || r.P95 != f(k.P95) || r.Max != f(k.Max) || r.Errors != string(b) {
			t.Errorf("%s: page %+v, API count %d p50 %s p95 %s max %s errors %s", k.Key, r, k.Count, f(k.P50), f(k.P95), f(k.Max), b)
		}
	}
	verdict := get(t, ctx, "read the verdict", chromedp.Text(chromedp.CSS("#report-verdict")))
	failed := get(t, ctx, "read the threshold", chromedp.Evaluate[string](`document.querySelector('#report-thresholds tr[data-key="api:auth.test"]').dataset.passed`))
	if verdict != "THRESHOLDS FAILED" || failed != "false" {
		t.Errorf("verdict %q, auth.test threshold passed=%s; want a failure (p95 over 200 ms)", verdict, failed)
	}
	if koi := get(t, ctx, "read koi", chromedp.Text(chromedp.CSS("#report-koi"))); koi != "10" {
		t.Errorf("koi %q", koi)
	}
	// The fidelity panel shows the API's verdict, summary and behaviors.
	if rep.Fidelity == nil || len(rep.Fidelity.Behaviors) != 3 {
		t.Fatalf("the report's fidelity: %+v, want the set's 3 behaviors judged", rep.Fidelity)
	}
	fid := get(t, ctx, "read the fidelity panel", chromedp.Evaluate[map[string]string](`Object.fromEntries([
		['', document.querySelector('#fidelity-summary').dataset.verdict], ['summary', document.querySelector('#fidelity-summary').textContent],
		['stat', document.querySelector('#report-fidelity').dataset.verdict],
		...[...document.querySelectorAll('#fidelity-behaviors tr[data-behavior]')].map(tr => [tr.dataset.behavior, tr.dataset.verdict])])`))
	if fid[""] != rep.Fidelity.Verdict || fid["stat"] != rep.Fidelity.Verdict || !strings.HasSuffix(fid["summary"], rep.Fidelity.Summary) {
		t.Errorf("fidelity on the page %q, the API %s %q", fid, rep.Fidelity.Verdict, rep.Fidelity.Summary)
	}
	for _, b := range rep.Fidelity.Behaviors {
		if fid[b.Behavior] != b.Verdict {
			t.Errorf("behavior %s: page %q, API %q", b.Behavior, fid[b.Behavior], b.Verdict)
		}
	}
	screenshot(t, ctx, "report")

	// The CSV download holds the API's rows.
	run(t, ctx, "download the CSV", chromedp.Click(chromedp.CSS("#report-csv")))
	file := filepath.Join(dl, "report-"+runID+".csv")
	var got []byte
	wiretest.Until(t, 10*time.Second, "the downloaded CSV", func() bool {
		got, err = os.ReadFile(file)
		return err == nil && len(got) > 0
	})
	if want := s.apiText(t, "/runs/"+runID+"/report?format=csv"); string(got) != want {
		t.Errorf("downloaded CSV:\n%s\nAPI CSV:\n%s", got, want)
	}
	t.Logf("CSV download: %d rows, same as the API's", strings.Count(string(got), "\n"))

	// Compare with the baseline: auth.test regressed, as the API says.
	run(t, ctx, "compare", chromedp.SetValue(chromedp.CSS("#baseline"), baseID), chromedp.SetValue(chromedp.CSS("#tolerance"), "25%"),
		chromedp.Click(chromedp.CSS(`#compare-form button[type=submit]`)))
	waitJS(t, ctx, 10*time.Second, "the comparison", `document.querySelectorAll('#comparison tr[data-key]').length > 0`)
	var cmp struct {
		Comparison struct {
			Keys []struct{ Key, Verdict string }
		}
	}
	s.call(t, "GET", "/runs/"+runID+"/report?baseline="+baseID+"&tolerance=25%25", nil, &cmp)
	shown := get(t, ctx, "read the verdicts", chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll('#comparison tr[data-key]')].map(tr => [tr.dataset.key, tr.dataset.verdict]))`))
	for _, k := range cmp.Comparison.Keys {
		if shown[k.Key] != k.Verdict {
			t.Errorf("%s: page says %q, API %q", k.Key, shown[k.Key], k.Verdict)
		}
	}
	if shown["api:auth.test"] != "regressed" {
		t.Errorf("api:auth.test is %q on the page, want regressed", shown["api:auth.test"])
	}
	marked := get(t, ctx, "read the highlight", chromedp.Evaluate[bool](`(() => {
		const tr = document.querySelector('#comparison tr[data-key="api:auth.test"]');
		const td = tr.querySelector('td[data-stat=p95_ms]');
		return tr.classList.contains('regressed') && td.classList.contains('regressed') && getComputedStyle(td).backgroundColor !== 'rgba(0, 0, 0, 0)';
	})()`))
	if !marked {
		t.Error("the regressed key is not highlighted")
	}
	screenshot(t, ctx, "report-compare")

	// A bad tolerance is said next to its field.
	run(t, ctx, "bad tolerance", chromedp.SetValue(chromedp.CSS("#tolerance"), "lots"), chromedp.Click(chromedp.CSS(`#compare-form button[type=submit]`)))
	waitJS(t, ctx, 5*time.Second, "the tolerance error", `document.querySelector('#tolerance').closest('.field').querySelector('.field-error').textContent.includes('not a percentage')`)
}
