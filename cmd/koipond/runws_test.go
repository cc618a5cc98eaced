package main

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/wire/wiretest"
)

// A set that only speaks on its websocket: one text frame per koi-minute
// per behavior firing, no api step, no boot.
const wsOnlySet = `{"behaviors": {"ping": {"frequency": 1, "steps": [{"request": {"type": "ws", "text": "ping"}}]}}}`

// wsSink is a websocket server that counts the text frames it receives
// and remembers each handshake's headers by the koi they name.
type wsSink struct {
	frames atomic.Int64
	mu     sync.Mutex
	seen   map[string]http.Header
}

func (s *wsSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := (&websocket.Upgrader{Subprotocols: []string{"chat.v1"}}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	s.mu.Lock()
	h := r.Header.Clone()
	h.Set("Negotiated", c.Subprotocol())
	s.seen[r.Header.Get("X-Koi")] = h
	s.mu.Unlock()
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
		s.frames.Add(1)
	}
}

// `run create` without --api-base for a websocket-only set, with the
// websocket URL, subprotocol and per-koi headers on the command line:
// every koi dials with them, --wait's progress counts the ws sends in its
// req/s (it once summed only api keys and showed 0.0 for such a run), and
// `run show` prints the target and the request rate. A set with api steps
// and no --api-base is refused, naming the field.
func TestRunCreateWebsocketOnly(t *testing.T) {
	k := testKeeper(t)
	testSchool(t, k, "a", 100)
	sink := &wsSink{seen: map[string]http.Header{}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http")
	base := "http://" + k.HTTPAddr()
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/behavior-sets", map[string]any{"name": "wsonly", "files": []map[string]string{{"name": "ws.json", "content": wsOnlySet}}}, nil)
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/behavior-sets", map[string]any{"name": "gate", "files": []map[string]string{{"name": "gate.json", "content": tickSet}}}, nil)

	const koi = 5
	out, progress, code := runCmd(t, "run", "create", "--keeper", base, "--name", "ws", "--behaviors", "wsonly",
		"--ws-url", wsURL, "--ws-subprotocol", "chat.v1", "--ws-header", "X-Koi=koi-{{.Index}}", "--ws-header", "Authorization=Bearer {{.Token}}",
		"--token-template", "tok-{{.Index}}", "--koi", strconv.Itoa(koi), "--ramp", "0", "--time-scale", "300", "--duration", "6s", "--wait", "--progress-every", "1s")
	t.Logf("exit %d\n--- progress\n%s--- report\n%s", code, progress, out)
	if code != 0 {
		t.Fatalf("run create --wait: exit %d", code)
	}
	if !strings.Contains(progress, "target "+wsURL+" (chat.v1)") {
		t.Errorf("the created run does not show its websocket target:\n%s", progress)
	}
	// Some progress line reports the sends: 5 koi × 1 per behavior
	// minute × 300 = 25 frames a second, counted as requests.
	var best float64
	for _, m := range regexp.MustCompile(`connected  ([0-9.]+) req/s`).FindAllStringSubmatch(progress, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		best = max(best, v)
	}
	if best <= 0 {
		t.Errorf("progress never counted a request of a websocket-only run:\n%s", progress)
	}
	if !strings.Contains(out, "ws:") {
		t.Errorf("the report has no ws key:\n%s", out)
	}
	sink.mu.Lock()
	for i := range koi {
		h := sink.seen["koi-"+strconv.Itoa(i)]
		if h == nil || h.Get("Authorization") != "Bearer tok-"+strconv.Itoa(i) || h.Get("Negotiated") != "chat.v1" {
			t.Errorf("koi %d handshake: %v", i, h)
		}
	}
	sink.mu.Unlock()
	if n := sink.frames.Load(); n == 0 {
		t.Error("the server received no frame")
	}

	// run show: target and request rate while an always-on run runs.
	out, errOut, code := runCmd(t, "run", "create", "--keeper", base, "--name", "ws-live", "--behaviors", "wsonly",
		"--ws-url", wsURL, "--koi", "3", "--ramp", "0", "--time-scale", "300", "--json")
	if code != 0 {
		t.Fatalf("run create: exit %d\n%s%s", code, out, errOut)
	}
	id := regexp.MustCompile(`"id": "([^"]+)"`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no run id in\n%s", out)
	}
	rateLine := regexp.MustCompile(`last 5s: ([0-9.]+) req/s`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, errOut, code = runCmd(t, "run", "show", "--keeper", base, id[1])
		m := rateLine.FindStringSubmatch(out)
		if code == 0 && m != nil && m[1] != "0.0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run show never reported requests:\n%s%s", out, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out, "target "+wsURL) {
		t.Errorf("run show:\n%s", out)
	}
	runCmd(t, "run", "stop", "--keeper", base, id[1])

	// A set with api steps needs --api-base.
	_, errOut, code = runCmd(t, "run", "create", "--keeper", base, "--name", "noapi", "--behaviors", "gate", "--ws-url", wsURL)
	if code == 0 || !strings.Contains(errOut, "target.api_base") || !strings.Contains(errOut, "sends api requests") {
		t.Errorf("a set with api steps and no --api-base: exit %d\n%s", code, errOut)
	}
}
