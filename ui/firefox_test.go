package ui_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// bidi is a minimal WebDriver BiDi client: Firefox speaks the protocol
// itself (no geckodriver), so the same page is driven in Firefox as in
// Chromium.
type bidi struct {
	conn *websocket.Conn
	mu   sync.Mutex
	next int
	ctx  string // the browsing context (tab)
}

func (b *bidi) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	if err := b.conn.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		t.Fatalf("bidi %s: %v", method, err)
	}
	_ = b.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var msg struct {
			ID      int             `json:"id"`
			Type    string          `json:"type"`
			Result  json.RawMessage `json:"result"`
			Error   string          `json:"error"`
			Message string          `json:"message"`
		}
		if err := b.conn.ReadJSON(&msg); err != nil {
			t.Fatalf("bidi %s: reading: %v", method, err)
		}
		if msg.ID != id { // an event, or another reply
			continue
		}
		if msg.Type == "error" {
			t.Fatalf("bidi %s: %s: %s", method, msg.Error, msg.Message)
		}
		return msg.Result
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func (b *bidi) eval(t *testing.T, expr string) any {
	t.Helper()
	res := b.call(t, "script.evaluate", map[string]any{"expression": expr, "awaitPromise": true,
		"target": map[string]string{"context": b.ctx}})
	var r struct {
		Type   string `json:"type"`
		Result struct {
			Type  string `json:"type"`
			Value any    `json:"value"`
		} `json:"result"`
		ExceptionDetails any `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if r.Type == "exception" {
		t.Fatalf("script %s: %v", expr, r.ExceptionDetails)
	}
	return r.Result.Value
}

func (b *bidi) waitTrue(t *testing.T, d time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for b.eval(t, expr) != true {
		if time.Now().After(deadline) {
			t.Fatalf("Firefox: timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newFirefox starts headless Firefox with a throwaway profile that makes
// no connection of its own, and opens a BiDi session.
func newFirefox(t *testing.T) *bidi {
	t.Helper()
	bin := ""
	for _, name := range []string{"firefox-esr", "firefox"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("firefox not found: .ci/run must install Debian's firefox-esr")
		}
		t.Skip("firefox not found: install it (apt-get install -y firefox-esr) to run the Firefox test")
	}
	profile := t.TempDir()
	prefs := []string{
		`user_pref("remote.active-protocols", 1);`,
		`user_pref("app.update.enabled", false);`,
		`user_pref("app.normandy.enabled", false);`,
		`user_pref("browser.shell.checkDefaultBrowser", false);`,
		`user_pref("browser.safebrowsing.malware.enabled", false);`,
		`user_pref("browser.safebrowsing.phishing.enabled", false);`,
		`user_pref("browser.safebrowsing.downloads.enabled", false);`,
		`user_pref("datareporting.policy.dataSubmissionEnabled", false);`,
		`user_pref("toolkit.telemetry.enabled", false);`,
		`user_pref("extensions.update.enabled", false);`,
		`user_pref("network.captive-portal-service.enabled", false);`,
		`user_pref("network.connectivity-service.enabled", false);`,
		`user_pref("browser.newtabpage.enabled", false);`,
		`user_pref("browser.startup.homepage_override.mstone", "ignore");`,
	}
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(fmt.Sprintln(joinLines(prefs))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-remote", "--profile", profile, "--remote-debugging-port", "0",
		"--width", "1440", "--height", "1000", "about:blank")
	cmd.Env = append(os.Environ(), "MOZ_HEADLESS=1", "HOME="+profile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	var url string
	select {
	case url = <-addr:
	case <-time.After(30 * time.Second):
		t.Fatal("Firefox did not start its WebDriver BiDi server within 30s")
	}
	conn, _, err := websocket.DefaultDialer.DialContext(context.Background(), url+"/session", nil)
	if err != nil {
		t.Fatalf("connecting to Firefox's BiDi server: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	b := &bidi{conn: conn}
	b.call(t, "session.new", map[string]any{"capabilities": map[string]any{}})
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := json.Unmarshal(b.call(t, "browsingContext.getTree", map[string]any{}), &tree); err != nil || len(tree.Contexts) == 0 {
		t.Fatalf("no browsing context: %v", err)
	}
	b.ctx = tree.Contexts[0].Context
	return b
}

func joinLines(ls []string) string {
	out := ""
	for _, l := range ls {
		out += l + "\n"
	}
	return out
}

// The same page in Firefox: the runs table shows the run's koi connected,
// the header's Pause silences pond and Resume brings requests back, the
// run's charts draw, and a screenshot is saved.
func TestUIInFirefox(t *testing.T) {
	s := startSystem(t)
	ff := newFirefox(t)
	const n = 30
	var bs struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "chat-basics", "files": []map[string]string{{"name": "chat-basics.json", "content": behaviorSet}}}, &bs)
	var run struct{ ID string }
	s.call(t, "POST", "/runs", map[string]any{"name": "firefox run", "behavior_set": bs.Hash, "koi": n, "ramp": 0, "time_scale": 60,
		"target": map[string]string{"api_base": s.p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"}}, &run)

	ff.call(t, "browsingContext.navigate", map[string]any{"context": ff.ctx, "url": s.ui + "/#/runs", "wait": "complete"})
	ff.waitTrue(t, 20*time.Second, "the runs table to show 30 of 30 connected",
		fmt.Sprintf(`(() => { const c = document.querySelector('tr[data-run=%q] td.koi'); return !!c && c.dataset.connected === '%d'; })()`, run.ID, n))
	ff.waitTrue(t, 10*time.Second, "the header to show running", `document.querySelector('#sw-state').dataset.state === 'running'`)

	ff.eval(t, `document.getElementById('btn-pause').click()`)
	ff.waitTrue(t, 5*time.Second, "the header to show paused", `document.querySelector('#sw-state').dataset.state === 'paused'`)
	time.Sleep(300 * time.Millisecond)
	before := s.p.Stats().RequestsTotal
	time.Sleep(time.Second)
	if d := s.p.Stats().RequestsTotal - before; d != 0 {
		t.Errorf("Firefox: %d requests reached pond after Pause", d)
	}
	ff.eval(t, `document.getElementById('btn-pause').click()`)
	ff.waitTrue(t, 5*time.Second, "the header to show running again", `document.querySelector('#sw-state').dataset.state === 'running'`)
	deadline := time.Now().Add(5 * time.Second)
	for s.p.Stats().RequestsTotal == before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s.p.Stats().RequestsTotal == before {
		t.Error("Firefox: Resume did not bring requests back")
	}

	ff.call(t, "browsingContext.navigate", map[string]any{"context": ff.ctx, "url": s.ui + "/#/runs/" + run.ID, "wait": "complete"})
	ff.waitTrue(t, 15*time.Second, "the run's charts to draw lines of several points",
		`[...document.querySelectorAll('svg path.line')].filter(p => (p.getAttribute('d') || '').split('L').length > 3).length >= 3`)
	var shot struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(ff.call(t, "browsingContext.captureScreenshot", map[string]any{"context": ff.ctx}), &shot); err != nil {
		t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	dir := os.Getenv("UI_SCREENSHOTS")
	if *update {
		dir = filepath.Join("testdata", "screenshots")
	}
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, "firefox-run-detail.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
