package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/ui"
	"github.com/koipond/koipond/wire/wiretest"
)

// system is a keeper, pond and two schools on loopback, with the UI served
// the way the keeper will serve it: "/" the page, "/api/" the keeper.
type system struct {
	k       *keeper.Keeper
	p       *pond.Server
	schools []*school.School
	ui      string       // the page's base URL
	api     string       // the keeper's base URL
	streams atomic.Int64 // GET /api/v1/events requests: the page follows the stream
	// warehouse is the keeper's --warehouse-dir.
	warehouse string
	// schoolLog holds what the schools logged.
	schoolLog logCapture
}

func startSystem(t *testing.T) *system {
	t.Helper()
	ctx := context.Background()
	wh := t.TempDir()
	// A short poll keeps the page's live numbers fresh. The lease stays
	// the default: nothing here tests failover, and on a busy machine a
	// 2 s lease expires between slow polls, moving koi between schools
	// and closing a launch before a late school has heard of it.
	k, err := api.Open(ctx, keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), WarehouseDir: wh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	p, err := pond.Open(ctx, pond.Config{Users: 500, Channels: 10, DisableRateLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	s := &system{k: k, p: p, api: "http://" + k.HTTPAddr(), warehouse: wh, schoolLog: newLogCapture()}
	for _, id := range []string{"school-a", "school-b"} {
		sc, err := school.Open(ctx, school.Config{ID: id, NATSURL: k.NATSURL(), NATSNKeySeedFile: k.SchoolNKeyFile(), Capacity: 100,
			Logger: slog.New(s.schoolLog)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		s.schools = append(s.schools, sc)
	}
	target, _ := url.Parse(s.api)
	mux := http.NewServeMux()
	mux.Handle("/", ui.Handler())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // the unreachable-keeper test makes it complain
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/events" {
			s.streams.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.ui = srv.URL
	return s
}

// call sends JSON to the keeper's API and decodes the reply into out; a
// status of 300 or more fails the test.
func (s *system) call(t *testing.T, method, path string, body, out any) {
	t.Helper()
	wiretest.API{Base: s.api + "/api/v1"}.Call(t, method, path, body, out)
}

// findChromium returns Chromium's path. Browser tests never skip on CI.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: .ci/run must install Debian's chromium (apt-get install -y chromium)")
	}
	t.Skip("chromium not found: install it (apt-get install -y chromium) to run the browser tests")
	return ""
}

// newBrowser starts headless Chromium with a throwaway profile and no
// network beyond what the page asks for.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(findChromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// browserStep bounds one browser step: a liveness bound, not a speed
// target (a CPU-starved Chromium has taken 26 s to open a dialog).
const browserStep = time.Minute

// run runs browser actions with a deadline, failing the test on error.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS polls a JavaScript expression until it is true.
//
// d is what a quiet machine needs; the page only has to get there, so the
// wait is at least browserStep (a starved Chromium repaints late).
func waitJS(t *testing.T, ctx context.Context, d time.Duration, what, expr string) {
	t.Helper()
	d = max(d, browserStep)
	deadline := time.Now().Add(d)
	for {
		c, cancel := context.WithTimeout(ctx, min(browserStep, max(5*time.Second, time.Until(deadline))))
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (%s; err %v); the page: %s", d, what, expr, err, pageState(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pageState says where the page is and what it shows as errors and
// notices, for a failed wait's message.
func pageState(ctx context.Context) string {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := chromedp.Run(c, chromedp.Evaluate[string](`JSON.stringify({hash: location.hash,
		errors: [...document.querySelectorAll('.form-error:not([hidden]), .field-error')].map(e => e.textContent).filter(x => x),
		toasts: [...document.querySelectorAll('.toast, #toasts > *')].map(e => e.textContent),
		inputs: Object.fromEntries([...document.querySelectorAll('main input[name]')].map(e => [e.name, e.value]))})`))
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return st
}

// get runs one browser action that returns a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// koiPaused counts the paused koi of run on the system's schools.
func (s *system) koiPaused(run string) int {
	n := 0
	for _, sc := range s.schools {
		for _, rs := range sc.Status().Runs {
			if rs.Run == run {
				n += rs.Koi.Paused
			}
		}
	}
	return n
}

// settledRequests waits until no request is on its way to pond (its
// count holds still over two polls 100 ms apart; a request sent before a
// pause can take that long on a busy machine) and returns the count.
func (s *system) settledRequests(t *testing.T, d time.Duration) uint64 {
	t.Helper()
	last := s.p.Stats().RequestsTotal
	still := 0
	wiretest.Until(t, d, "requests to pond to stop", func() bool {
		time.Sleep(100 * time.Millisecond)
		now := s.p.Stats().RequestsTotal
		if now == last {
			still++
		} else {
			still = 0
		}
		last = now
		return still >= 2
	})
	return last
}

// clockError is how far the system's schools' estimates of the keeper's
// clock are off now: they share its clock, so any offset is error.
func (s *system) clockError() time.Duration {
	var worst time.Duration
	for _, sc := range s.schools {
		worst = max(worst, time.Duration(math.Abs(sc.Status().ClockOffsetMS)*float64(time.Millisecond)))
	}
	return worst
}

// clickLive clicks the element sel selects in one step inside the page.
// The runs table re-renders on every live update; chromedp.Click finds
// the node and then clicks it, and on a slow machine a re-render in
// between leaves it clicking a node that is gone.
func clickLive(t *testing.T, ctx context.Context, what, sel string) {
	t.Helper()
	waitJS(t, ctx, 5*time.Second, what, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true; })()`, sel))
}

// update rewrites the committed screenshots (go test ./ui -update); without
// it they go to $UI_SCREENSHOTS or a temporary folder, so a plain test run
// leaves the tree clean.
var update = flag.Bool("update", false, "rewrite testdata/screenshots/*.png")

// screenshot saves the whole page as NAME.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	run(t, ctx, "settle before "+name, chromedp.Sleep(150*time.Millisecond))
	buf := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	dir := os.Getenv("UI_SCREENSHOTS")
	switch {
	case *update:
		dir = filepath.Join("testdata", "screenshots")
	case dir == "":
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

const behaviorSet = `{
  "boot": {"steps": [
    {"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}},
    {"request": {"type": "api", "method": "conversations.list", "args": {"limit": "200"}, "post_actions": ["{{ addChannels .channels }}"]}}
  ]},
  "behaviors": {
    "auth.test": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
    "conversations.list": {"frequency": 0.5, "steps": [{"request": {"type": "api", "method": "conversations.list"}}]},
    "chat.postMessage": {"frequency": 0.2, "steps": [{
      "pre_actions": ["{{ set \"ch\" (randomChannel true) }}", "{{ if not (get \"ch\") }}{{ halt \"member of no channel\" }}{{ end }}"],
      "request": {"type": "api", "method": "chat.postMessage", "args": {"channel": "{{ (get \"ch\").ID }}", "text": "hello"}}}]}
  }
}
`

const formation = `{
  "name": "herd",
  "begin_within_secs": 2,
  "percent": 10,
  "sequence": {"steps": [
    {"request": {"type": "api", "method": "users.list", "args": {"limit": "1"}}}
  ]}
}
`

// badBehavior has an out-of-range frequency on line 4.
const badBehavior = `{
  "behaviors": {
    "auth.test": {
      "frequency": 1.5,
      "steps": [ { "request": { "type": "api", "method": "auth.test" } } ]
    }
  }
}
`

// The UI against the whole system: a run created from the form connects
// its koi and the table shows them; the header's Pause silences pond and
// Resume brings requests back; a formation launched from the dialog at a
// local time 5–6 s ahead starts exactly the planned koi; an invalid
// behavior upload shows its error at its line; Stop, once confirmed,
// closes every websocket and the header shows each school confirming;
// with the keeper gone the page says so.
func TestUIAgainstSystem(t *testing.T) {
	s := startSystem(t)
	ctx := newBrowser(t)
	const n = 60

	var bs struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "chat-basics", "files": []map[string]string{{"name": "chat-basics.json", "content": behaviorSet}}}, &bs)
	var fm struct{ Hash string }
	s.call(t, "POST", "/formations", map[string]any{"file": map[string]string{"name": "herd.json", "content": formation}}, &fm)

	// A run from the form.
	run(t, ctx, "open the runs page", chromedp.Navigate(s.ui+"/#/runs"), chromedp.WaitVisible(chromedp.CSS("#new-run")))
	waitJS(t, ctx, 5*time.Second, "the header to show the switch", `document.querySelector('#sw-state').dataset.state === 'running'`)
	run(t, ctx, "fill the run form",
		chromedp.Click(chromedp.CSS("#new-run")),
		chromedp.WaitVisible(chromedp.CSS("#run-form")),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=name]`), "always-on chat"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=api_base]`), s.p.URL()+"/api"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=token]`), "xoxp-pond-{{.Index}}"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=koi]`), fmt.Sprint(n)),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=ramp]`), "0"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=time_scale]`), "60"),
		chromedp.SetValue(chromedp.CSS(`#run-form [name=labels]`), "team=chat, env=test"),
		chromedp.Click(chromedp.CSS(`#run-form button[type=submit]`)),
		chromedp.WaitNotPresent(chromedp.CSS("#run-form")))
	var runs []struct{ ID, Name string }
	s.call(t, "GET", "/runs", nil, &runs)
	if len(runs) != 1 || runs[0].Name != "always-on chat" {
		t.Fatalf("runs after the form: %+v", runs)
	}
	runID := runs[0].ID

	t.Run("runs table shows koi connected", func(t *testing.T) {
		wiretest.Until(t, 20*time.Second, "60 koi connected at pond", func() bool { return s.p.Stats().WebsocketsOpen == n })
		waitJS(t, ctx, 10*time.Second, "the runs table to show 60 of 60 connected",
			fmt.Sprintf(`(() => { const c = document.querySelector('tr[data-run=%q] td.koi'); return !!c && c.dataset.connected === '%d' && c.dataset.target === '%d'; })()`, runID, n, n))
		waitJS(t, ctx, 10*time.Second, "requests per second in the table",
			fmt.Sprintf(`(() => { const c = document.querySelector('tr[data-run=%q] td.rps'); return !!c && parseFloat(c.textContent) > 0; })()`, runID))
		if s.streams.Load() == 0 {
			t.Error("the page never opened the keeper's event stream")
		}
		screenshot(t, ctx, "runs")
		run(t, ctx, "phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
		screenshot(t, ctx, "runs-phone")
		run(t, ctx, "laptop width", chromedp.EmulateViewport(1440, 1000))
	})

	t.Run("pause silences pond and resume restarts it", func(t *testing.T) {
		wiretest.Until(t, 10*time.Second, "behaviors reaching pond", func() bool { return s.p.Stats().Requests["auth.test"]["200"] > n })
		run(t, ctx, "press Pause", chromedp.Click(chromedp.CSS("#btn-pause")))
		waitJS(t, ctx, 5*time.Second, "the header to say paused", `document.querySelector('#sw-state').dataset.state === 'paused'`)
		wiretest.Until(t, 10*time.Second, "every koi to pause", func() bool { return s.koiPaused(runID) == n })
		before := s.settledRequests(t, 5*time.Second)
		time.Sleep(time.Second)
		if d := s.p.Stats().RequestsTotal - before; d != 0 {
			t.Errorf("%d requests reached pond while paused", d)
		}
		if ws := s.p.Stats().WebsocketsOpen; ws != n {
			t.Errorf("%d websockets while paused, want %d (pause keeps them)", ws, n)
		}
		screenshot(t, ctx, "paused")
		label := get(t, ctx, "read the button", chromedp.Text(chromedp.CSS("#btn-pause")))
		if label != "Resume all" {
			t.Errorf("paused header button says %q, want Resume all", label)
		}
		run(t, ctx, "press Resume", chromedp.Click(chromedp.CSS("#btn-pause")))
		waitJS(t, ctx, 5*time.Second, "the header to say running", `document.querySelector('#sw-state').dataset.state === 'running'`)
		wiretest.Until(t, 15*time.Second, "requests after resume", func() bool { return s.p.Stats().RequestsTotal > before+n/2 })
	})

	t.Run("formation launched from the dialog starts the planned koi", func(t *testing.T) {
		opening := time.Now()
		run(t, ctx, "open the formation", chromedp.Navigate(s.ui+"/#/formations/"+fm.Hash), chromedp.WaitVisible(chromedp.CSS("#launch-open")))
		screenshot(t, ctx, "formations")
		run(t, ctx, "open the launch dialog", chromedp.Click(chromedp.CSS("#launch-open")), chromedp.WaitVisible(chromedp.CSS("#launch-form")))
		// A local date-time 5–6 s ahead (the field has whole seconds), or
		// further when this browser is slow: the steps up to the launch
		// (a screenshot, a click) are of the kind that just took opened,
		// and the launch must reach the keeper before its instant.
		opened := time.Since(opening)
		lead := max(6*time.Second, 2*opened)
		t.Logf("the browser opened the dialog in %v: launching %v ahead", opened.Round(time.Millisecond), lead.Round(time.Millisecond))
		atMS := get(t, ctx, "pick a start time", chromedp.Evaluate[float64](`(() => {
			const d = new Date(Math.floor((Date.now() + `+strconv.FormatInt(lead.Milliseconds(), 10)+`) / 1000) * 1000);
			const p = n => String(n).padStart(2, '0');
			const el = document.querySelector('#launch-form [name=at]');
			el.value = d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
			el.dispatchEvent(new Event('input', { bubbles: true }));
			return d.getTime();
		})()`))
		at := time.UnixMilli(int64(atMS))
		utc := get(t, ctx, "read the UTC line", chromedp.Text(chromedp.CSS("#launch-utc")))
		if want := at.UTC().Format("2006-01-02 15:04:05") + " UTC"; !bytes.Contains([]byte(utc), []byte(want)) {
			t.Errorf("launch dialog shows %q; want the keeper's UTC %q", utc, want)
		}
		screenshot(t, ctx, "launch-dialog")
		run(t, ctx, "launch", chromedp.Click(chromedp.CSS("#launch-go")), chromedp.WaitVisible(chromedp.CSS("#launch-countdown")))
		screenshot(t, ctx, "launch-countdown")
		formationRequests := func() uint64 { return s.p.Stats().Requests["users.list"]["200"] }
		if polls, _ := wiretest.NoneBefore(t, at, "formation requests", formationRequests, s.clockError); polls == 0 {
			t.Logf("no poll of pond ended before the launch instant: the browser took until %v after it to launch", time.Since(at).Round(time.Millisecond))
		}
		const planned = 6 // round(10% × 60)
		var ls []struct {
			ID                        string
			Count, Started, Connected int
			State, Outcome            string
		}
		wiretest.WaitFor(t, 15*time.Second, "the launch's started koi", func() error {
			s.call(t, "GET", "/launches?run="+runID, nil, &ls)
			if len(ls) != 1 || ls[0].Started != planned {
				return fmt.Errorf("the launch to report %d koi started: %+v", planned, ls)
			}
			return nil
		})
		if ls[0].Count != planned || ls[0].Connected != n {
			t.Errorf("launch = %+v, want %d planned of %d connected", ls[0], planned, n)
		}
		wiretest.Until(t, 10*time.Second, "6 formation requests", func() bool { return formationRequests() >= planned })
		waitJS(t, ctx, 5*time.Second, "the dialog to show 6 of 6 started",
			`(() => { const e = document.querySelector('#launch-started'); return !!e && e.dataset.started === '6' && e.dataset.count === '6'; })()`)
		waitJS(t, ctx, 5*time.Second, "step latencies in the dialog", `!!document.querySelector('#launch-steps td.mono')`)
		if got := s.p.Stats().Requests["users.list"]["200"]; got != planned {
			t.Errorf("%d koi took part, want exactly %d", got, planned)
		}
		screenshot(t, ctx, "launch-progress")
		run(t, ctx, "close the dialog", chromedp.Click(chromedp.CSS("#launch-close")), chromedp.WaitNotPresent(chromedp.CSS("#launch-dialog")))
	})

	t.Run("run detail charts", func(t *testing.T) {
		run(t, ctx, "open the run", chromedp.Navigate(s.ui+"/#/runs/"+runID), chromedp.WaitVisible(chromedp.CSS("#charts")))
		waitJS(t, ctx, 10*time.Second, "chart lines", `document.querySelectorAll('#charts path.line').length >= 4`)
		waitJS(t, ctx, 5*time.Second, "the launch in the run's launches", `!!document.querySelector('#launches tr[data-launch]')`)
		time.Sleep(3 * time.Second) // a few seconds of lines
		screenshot(t, ctx, "run-detail")

		// Live edit: 60 → 50 koi from the size form.
		run(t, ctx, "shrink the run", chromedp.SetValue(chromedp.CSS("#run-edit [name=koi]"), "50"),
			chromedp.Click(chromedp.CSS("#run-edit button[type=submit]")))
		wiretest.Until(t, 30*time.Second, "50 websockets at pond", func() bool { return s.p.Stats().WebsocketsOpen == 50 })
		waitJS(t, ctx, 5*time.Second, "the page to show 50 / 50", `document.querySelector('#stat-koi').textContent === '50 / 50'`)
		var rv struct{ Koi int }
		s.call(t, "GET", "/runs/"+runID, nil, &rv)
		if rv.Koi != 50 {
			t.Errorf("run has %d koi after the edit, want 50", rv.Koi)
		}
	})

	t.Run("per-run pause and resume from the table", func(t *testing.T) {
		run(t, ctx, "back to runs", chromedp.Navigate(s.ui+"/#/runs"),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-run=%q] button[data-act=pause]`, runID))))
		clickLive(t, ctx, "pause the run", fmt.Sprintf(`tr[data-run=%q] button[data-act=pause]`, runID))
		waitJS(t, ctx, 5*time.Second, "the row to say paused", fmt.Sprintf(`document.querySelector('tr[data-run=%q]').dataset.state === 'paused'`, runID))
		wiretest.Until(t, 10*time.Second, "every koi of the run to pause", func() bool { return s.koiPaused(runID) == 50 })
		before := s.settledRequests(t, 5*time.Second)
		time.Sleep(time.Second)
		if d := s.p.Stats().RequestsTotal - before; d != 0 {
			t.Errorf("%d requests reached pond while the run was paused", d)
		}
		clickLive(t, ctx, "resume the run", fmt.Sprintf(`tr[data-run=%q] button[data-act=resume]`, runID))
		wiretest.Until(t, 15*time.Second, "requests after the run resumed", func() bool { return s.p.Stats().RequestsTotal > before+20 })
	})

	t.Run("schools", func(t *testing.T) {
		run(t, ctx, "open schools", chromedp.Navigate(s.ui+"/#/schools"), chromedp.WaitVisible(chromedp.CSS("#schools-table")))
		waitJS(t, ctx, 5*time.Second, "two live schools", `document.querySelectorAll('#schools-table tr[data-school] [data-state=live]').length === 2`)
		screenshot(t, ctx, "schools")
	})

	t.Run("invalid behavior upload shows the error at its line", func(t *testing.T) {
		run(t, ctx, "open a new behavior set", chromedp.Navigate(s.ui+"/#/behaviors/new"), chromedp.WaitVisible(chromedp.CSS("#behavior-form textarea")),
			chromedp.SetValue(chromedp.CSS("#behavior-form [name=name]"), "broken"),
			chromedp.SetValue(chromedp.CSS("#behavior-form textarea"), badBehavior),
			chromedp.Click(chromedp.CSS("#behavior-form button[type=submit]")))
		waitJS(t, ctx, 5*time.Second, "line 4 marked", `!!document.querySelector('#behavior-form .gutter div.err[data-line="4"]')`)
		msg := get(t, ctx, "read the message", chromedp.Text(chromedp.CSS(`#behavior-form .diags li[data-line="4"]`)))
		if !bytes.Contains([]byte(msg), []byte("frequency")) || !bytes.Contains([]byte(msg), []byte("line 4")) {
			t.Errorf("diagnostic at line 4 reads %q", msg)
		}
		var sets []struct{ Name string }
		s.call(t, "GET", "/behavior-sets", nil, &sets)
		if len(sets) != 1 {
			t.Errorf("%d behavior sets after a bad upload, want 1 (nothing half-applied)", len(sets))
		}
		screenshot(t, ctx, "behaviors-error")
		run(t, ctx, "open the good set", chromedp.Navigate(s.ui+"/#/behaviors/"+bs.Hash), chromedp.WaitVisible(chromedp.CSS("#behavior-form textarea")))
		screenshot(t, ctx, "behaviors")
	})

	t.Run("generate from a warehouse export and save beside the sequences", func(t *testing.T) {
		// A split set: frequencies in one file, sequences in another.
		s.call(t, "POST", "/behavior-sets", map[string]any{"name": "split", "files": []map[string]string{
			{"name": "frequencies.json", "content": `{"behaviors": {"auth.test": {"frequency": 0.5}}}`},
			{"name": "sequences.json", "content": `{"behaviors": {"auth.test": {"steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`}}}, nil)
		// 50 users × 4 minutes: auth.test every minute, users.list in one.
		var csv strings.Builder
		csv.WriteString("user,method,timestamp\n")
		for u := range 50 {
			for m := range 4 {
				at := time.Date(2026, 11, 2, 9, m, u, 0, time.UTC).Format(time.RFC3339)
				fmt.Fprintf(&csv, "U%d,auth.test,%s\n", u, at)
				if m == 2 {
					fmt.Fprintf(&csv, "U%d,users.list,%s\n", u, at)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(s.warehouse, "calls.csv"), []byte(csv.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		var sets []struct{ Name, Hash string }
		s.call(t, "GET", "/behavior-sets", nil, &sets)
		split := ""
		for _, x := range sets {
			if x.Name == "split" {
				split = x.Hash
			}
		}
		run(t, ctx, "fill the generate form", chromedp.Navigate(s.ui+"/#/behaviors/generate"), chromedp.WaitVisible(chromedp.CSS("#generate-form")),
			chromedp.SetValue(chromedp.CSS(`#generate-form [name=from]`), "calls.csv"),
			chromedp.SetValue(chromedp.CSS(`#generate-form [name=sequences]`), split),
			chromedp.Click(chromedp.CSS(`#generate-form button[type=submit]`)))
		waitJS(t, ctx, 10*time.Second, "the preview", `!!document.querySelector('#generate-coverage')`)
		freq := get(t, ctx, "read auth.test's frequency", chromedp.Text(chromedp.CSS(`#generate-result tr[data-method="auth.test"] td.num`)))
		if freq != "1.0000" {
			t.Errorf("auth.test frequency in the preview = %q, want 1.0000", freq)
		}
		cov := get(t, ctx, "read the coverage", chromedp.Text(chromedp.CSS(`#generate-coverage`)))
		if !strings.Contains(cov, "no sequence for users.list") {
			t.Errorf("coverage reads %q", cov)
		}
		screenshot(t, ctx, "generate")
		// Saving over the compared set is asked first (the default name
		// is a new one); yes stores its next version.
		// A notice (the toast at the bottom of the window, here "always-on
		// chat: resumed.") may lie over the save button once the preview
		// is long: it must let the click through, or saving does nothing.
		waitJS(t, ctx, 5*time.Second, "notices that let clicks through", `getComputedStyle(document.getElementById('toast')).pointerEvents === 'none'`)
		run(t, ctx, "save over split", chromedp.SetValue(chromedp.CSS(`#generate-save [name=name]`), "split"),
			chromedp.Click(chromedp.CSS(`#generate-save button[type=submit]`)))
		waitJS(t, ctx, 10*time.Second, "asked before overwriting", `!!document.querySelector('#generate-overwrite-yes')`)
		run(t, ctx, "confirm", chromedp.Click(chromedp.CSS(`#generate-overwrite-yes`)))
		waitJS(t, ctx, 10*time.Second, "the saved set opened", `location.hash.startsWith('#/behaviors/') && location.hash !== '#/behaviors/generate'`)
		var latest []struct {
			Name    string
			Version int
			Files   []string
		}
		s.call(t, "GET", "/behavior-sets", nil, &latest)
		found := false
		for _, x := range latest {
			if x.Name == "split" && x.Version == 2 {
				found = len(x.Files) == 2
			}
		}
		if !found {
			t.Errorf("no split v2 with generated frequencies and the sequences: %+v", latest)
		}
	})

	t.Run("stop with confirmation closes every websocket", func(t *testing.T) {
		run(t, ctx, "back to runs", chromedp.Navigate(s.ui+"/#/runs"), chromedp.WaitVisible(chromedp.CSS("#runs-table")))
		waitJS(t, ctx, 5*time.Second, "the stop button", `!document.querySelector('#btn-stop').disabled`)
		run(t, ctx, "press Stop", chromedp.Click(chromedp.CSS("#btn-stop")), chromedp.WaitVisible(chromedp.CSS("#confirm-stop-yes")))
		if ws := s.p.Stats().WebsocketsOpen; ws != 50 {
			t.Errorf("%d websockets before confirming, want 50: Stop must ask first", ws)
		}
		screenshot(t, ctx, "stop-confirm")
		stopAt := time.Now()
		run(t, ctx, "confirm", chromedp.Click(chromedp.CSS("#confirm-stop-yes")))
		wiretest.Until(t, 3*time.Second, "every websocket closed", func() bool { return s.p.Stats().WebsocketsOpen == 0 })
		t.Logf("stop: all websockets closed %v after the click", time.Since(stopAt).Round(time.Millisecond))
		waitJS(t, ctx, 5*time.Second, "the header to confirm the stop", `!!document.querySelector('#stop-done')`)
		waitJS(t, ctx, 2*time.Second, "both schools confirmed", `document.querySelectorAll('#stop-progress .chip.ok').length === 2`)
		screenshot(t, ctx, "stopped")
	})

	t.Run("keeper unreachable is said plainly", func(t *testing.T) {
		s.k.Close()
		waitJS(t, ctx, 5*time.Second, "the unreachable banner", `!document.querySelector('#unreachable').hidden`)
		screenshot(t, ctx, "unreachable")
	})
}

// With auth on, the page asks for a token, keeps it for the tab and sends
// it; a viewer's Pause is refused by the keeper, the header stays true
// (still running) and the controls the role may not use are disabled.
func TestUILoginAndRoles(t *testing.T) {
	const viewer, admin = "viewer-token-0123456789", "admin-token-0123456789"
	k, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler), Tokens: []keeper.Token{
			{Name: "vera", Role: keeper.RoleViewer, Secret: viewer}, {Name: "ada", Role: keeper.RoleAdmin, Secret: admin}}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	target, _ := url.Parse("http://" + k.HTTPAddr())
	mux := http.NewServeMux()
	mux.Handle("/", ui.Handler())
	mux.Handle("/api/", httputil.NewSingleHostReverseProxy(target))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := newBrowser(t)

	run(t, ctx, "open the page", chromedp.Navigate(srv.URL+"/#/runs"))
	waitJS(t, ctx, 5*time.Second, "the login field", `!document.querySelector('#login').hidden`)
	screenshot(t, ctx, "login")
	run(t, ctx, "sign in as a viewer",
		chromedp.SetValue(chromedp.CSS("#login-token"), viewer),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	waitJS(t, ctx, 5*time.Second, "the header after login", `document.querySelector('#login').hidden && document.querySelector('#sw-state').dataset.state === 'running'`)
	if got := get(t, ctx, "the stored token", chromedp.Evaluate[string](`sessionStorage.getItem('koipond.token')`)); got != viewer {
		t.Errorf("sessionStorage token = %q", got)
	}
	run(t, ctx, "press Pause as a viewer", chromedp.Click(chromedp.CSS("#btn-pause")))
	waitJS(t, ctx, 5*time.Second, "operator and admin controls disabled",
		`document.querySelector('#btn-pause').disabled && document.querySelector('#btn-stop').disabled && document.querySelector('#new-run').disabled`)
	if st := get(t, ctx, "the header state", chromedp.Evaluate[string](`document.querySelector('#sw-state').dataset.state`)); st != "running" {
		t.Errorf("header says %q after a refused pause, want running", st)
	}
	req, _ := http.NewRequest("GET", "http://"+k.HTTPAddr()+"/api/v1/control", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ctl struct{ State string }
	json.NewDecoder(resp.Body).Decode(&ctl)
	resp.Body.Close()
	if ctl.State != "running" {
		t.Errorf("keeper switch is %q after a viewer's pause, want running", ctl.State)
	}
	screenshot(t, ctx, "viewer")
}
