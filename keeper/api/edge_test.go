package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// edgeReq is one raw request to the keeper, headers as given (Host too).
type edgeReq struct {
	method, path, body string
	header             map[string]string
}

// do sends r and returns the status and the error body (if any).
func (r edgeReq) do(t testing.TB, k *keeper.Keeper) (int, apiErr) {
	t.Helper()
	var rd io.Reader
	if r.body != "" {
		rd = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, "http://"+k.HTTPAddr()+r.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for h, v := range r.header {
		if h == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(h, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e apiErr
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("%s %s: %d with a body that is not an API error: %.200s", r.method, r.path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, e
}

// A tokenless keeper is reachable from any web page the operator opens:
// writes that a form or a simple fetch can send (text/plain, form types,
// no type at all) are refused, so the page cannot pause, stop or upload.
func TestEdgeWritesNeedJSON(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 3)
	stop := `{"state": "stopped"}`
	for _, tc := range []struct {
		name string
		req  edgeReq
	}{
		// The cross-site form of the attack: enctype=text/plain.
		{"text/plain", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "text/plain"}}},
		// A urlencoded form.
		{"form", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}},
		// A multipart form (no endpoint takes uploads that way).
		{"multipart", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "multipart/form-data; boundary=x"}}},
		// fetch(url, {method: "POST", mode: "no-cors"}): no body, no type.
		{"no type, no body", edgeReq{"POST", "/api/v1/runs/" + run.ID + "/stop", "", nil}},
		// A type that merely contains json.
		{"json-ish", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "text/json+plain"}}},
		{"delete", edgeReq{"DELETE", "/api/v1/webhooks/x", "", map[string]string{"Content-Type": "text/plain"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, e := tc.req.do(t, k)
			if st != http.StatusUnsupportedMediaType || e.Error.Code != keeper.CodeUnsupportedMedia || !strings.Contains(e.Error.Message, "application/json") {
				t.Errorf("got %d %+v, want 415 naming application/json", st, e.Error)
			}
		})
	}
	if st := switchState(k); st != wire.Running {
		t.Fatalf("the switch moved to %s", st)
	}
	if r := k.State().Run(nil, run.ID); r.State != state.RunRunning {
		t.Fatalf("the run moved to %s", r.State)
	}
	// JSON with a charset is JSON; a body-less write with the type works.
	if st, e := (edgeReq{"POST", "/api/v1/runs/" + run.ID + "/pause", "", map[string]string{"Content-Type": "application/json; charset=utf-8"}}).do(t, k); st != 200 {
		t.Errorf("JSON pause: %d %+v", st, e.Error)
	}
	// The signed trigger call keeps its documented shape and more: its HMAC
	// is its credential, so a pipeline's curl -d (a form type) reaches the
	// signature check instead of a 415.
	if st, e := (edgeReq{"POST", "/api/v1/triggers/deploy", `{"labels": {}}`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}).do(t, k); st == http.StatusUnsupportedMediaType {
		t.Errorf("trigger call refused for its type: %+v", e.Error)
	}
}

// DNS rebinding: evil.example resolves to 127.0.0.1 after the page loads;
// the browser then sends the page's requests to the keeper with
// Host: evil.example. A keeper without tokens answers only to its
// loopback names.
func TestEdgeTokenlessKeeperRefusesForeignHost(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	_, port, _ := net.SplitHostPort(k.HTTPAddr())
	jsonType := map[string]string{"Content-Type": "application/json"}
	with := func(h map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for a, b := range h {
			m[a] = b
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost.evil.example:" + port, "10.0.0.1:" + port} {
		for _, r := range []edgeReq{
			{"POST", "/api/v1/control", `{"state": "stopped"}`, with(jsonType, "Host", host)},
			{"GET", "/api/v1/status", "", with(nil, "Host", host)},
			{"GET", "/metrics", "", with(nil, "Host", host)},
		} {
			st, e := r.do(t, k)
			if st != http.StatusForbidden || !strings.Contains(e.Error.Message, "DNS rebinding") {
				t.Errorf("%s %s with Host %q: %d %+v, want 403", r.method, r.path, host, st, e.Error)
			}
		}
	}
	if st := switchState(k); st != wire.Running {
		t.Fatalf("the switch moved to %s", st)
	}
	// Its own names, on any port (ssh -L and port-forwards change it).
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST:" + port, "[::1]:" + port, "localhost:9999", "localhost"} {
		if st, e := (edgeReq{"GET", "/api/v1/status", "", map[string]string{"Host": host}}).do(t, k); st != 200 {
			t.Errorf("Host %q: %d %+v, want 200", host, st, e.Error)
		}
	}
	// With tokens the keeper serves any name it is given (a Service, an
	// ingress): the token is the guard.
	kt := openKeeper(t, t.TempDir(), func(c *keeper.Config) {
		c.Tokens = []keeper.Token{{Name: "ada", Role: keeper.RoleAdmin, Secret: "admin-token-0123456789"}}
	})
	if st, e := (edgeReq{"GET", "/api/v1/status", "", map[string]string{"Host": "keeper.koipond.svc:8080", "Authorization": "Bearer admin-token-0123456789"}}).do(t, kt); st != 200 {
		t.Errorf("token keeper by its Service name: %d %+v", st, e.Error)
	}
}

// A page on another origin (another site, or another port of localhost)
// cannot write: its Origin or Sec-Fetch-Site gives it away. A keeper
// without tokens refuses foreign origins on reads too.
func TestEdgeRefusesForeignOrigin(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	self := "http://" + k.HTTPAddr()
	stop := `{"state": "stopped"}`
	for _, tc := range []struct {
		name string
		req  edgeReq
	}{
		{"foreign site", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}}},
		// Another local app: same host, another port.
		{"another local port", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"}}},
		// Sandboxed frames and file:// pages send Origin: null.
		{"null origin", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "application/json", "Origin": "null"}}},
		// A browser that says so without an Origin.
		{"cross-site fetch metadata", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}}},
		{"same-site fetch metadata", edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}}},
		// Reads too, on a keeper without tokens.
		{"foreign read", edgeReq{"GET", "/api/v1/status", "", map[string]string{"Origin": "https://evil.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, e := tc.req.do(t, k); st != http.StatusForbidden || !strings.Contains(strings.ToLower(e.Error.Message), "origin") {
				t.Errorf("got %d %+v, want 403 naming the origin", st, e.Error)
			}
		})
	}
	if st := switchState(k); st != wire.Running {
		t.Fatalf("the switch moved to %s", st)
	}
	// The keeper's own pages, and non-browser clients (no Origin).
	for _, h := range []map[string]string{
		{"Content-Type": "application/json", "Origin": self, "Sec-Fetch-Site": "same-origin"},
		{"Content-Type": "application/json", "Origin": self},
		{"Content-Type": "application/json"},
	} {
		if st, e := (edgeReq{"POST", "/api/v1/control", `{"state": "running"}`, h}).do(t, k); st != 200 {
			t.Errorf("own write with %v: %d %+v", h, st, e.Error)
		}
	}

	// With tokens: a cross-site page cannot send the bearer token, and a
	// write that claims a foreign origin is refused even with one.
	const admin = "admin-token-0123456789"
	kt := openKeeper(t, t.TempDir(), func(c *keeper.Config) {
		c.Tokens = []keeper.Token{{Name: "ada", Role: keeper.RoleAdmin, Secret: admin}}
	})
	bearer := "Bearer " + admin
	if st, e := (edgeReq{"POST", "/api/v1/control", stop, map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example", "Authorization": bearer}}).do(t, kt); st != http.StatusForbidden {
		t.Errorf("token keeper, foreign write: %d %+v", st, e.Error)
	}
	if st := switchState(kt); st != wire.Running {
		t.Fatalf("the token keeper's switch moved to %s", st)
	}
	if st, e := (edgeReq{"POST", "/api/v1/control", `{"state": "paused"}`, map[string]string{"Content-Type": "application/json", "Origin": "http://" + kt.HTTPAddr(), "Authorization": bearer}}).do(t, kt); st != 200 {
		t.Errorf("token keeper, own write: %d %+v", st, e.Error)
	}
}

// A webhook URL is its receiver's credential (a Slack hook URL is all it
// takes to post into a channel): viewers and operators see its scheme and
// host, admins its path without the secret parts; nobody reads it whole,
// not in the list, the detail, the audit log or a delivery error.
func TestEdgeViewersSeeWebhookURLsRedacted(t *testing.T) {
	const (
		viewer   = "viewer-token-0123456789"
		operator = "operator-token-0123456789"
		admin    = "admin-token-0123456789"
	)
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) {
		c.Tokens = []keeper.Token{{Name: "vera", Role: keeper.RoleViewer, Secret: viewer}, {Name: "otto", Role: keeper.RoleOperator, Secret: operator}, {Name: "ada", Role: keeper.RoleAdmin, Secret: admin}}
		c.WebhookTimeout = time.Second
	})
	// Nothing listens at the address: deliveries fail, with an error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	slack := "http://" + dead + "/services/T0/B0/SLACKSECRET"
	jsonHook := "http://user:PASSWORD@" + dead + "/hooks/PATHSECRET?token=QUERYSECRET"
	for name, spec := range map[string]map[string]any{
		"slack": {"name": "slack", "url": slack, "format": "slack"},
		"ops":   {"name": "ops", "url": jsonHook},
	} {
		if st := (wiretest.API{Base: "http://" + k.HTTPAddr(), Token: admin}).Do(t, "POST", "/api/v1/webhooks", spec, nil); st != 201 {
			t.Fatalf("add %s: %d", name, st)
		}
	}
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr(), Token: admin}).Do(t, "POST", "/api/v1/webhooks/ops/test", nil, nil); st != 200 {
		t.Fatalf("test delivery: %d", st)
	}
	secrets := []string{"SLACKSECRET", "PATHSECRET", "QUERYSECRET", "PASSWORD", "services", "hooks"}
	for _, tok := range []string{viewer, operator} {
		for _, path := range []string{"/api/v1/webhooks", "/api/v1/webhooks/slack", "/api/v1/webhooks/ops", "/api/v1/audit"} {
			raw := apiTextAs(t, k, tok, path)
			for _, s := range secrets {
				if strings.Contains(raw, s) {
					t.Errorf("%s as %s shows %s: %.600s", path, tok[:4], s, raw)
				}
			}
		}
		var views []keeper.WebhookView
		wiretest.API{Base: "http://" + k.HTTPAddr(), Token: tok}.Do(t, "GET", "/api/v1/webhooks", nil, &views)
		for _, v := range views {
			if v.URL != "http://"+dead+"/…" {
				t.Errorf("%s sees %s as %q, want scheme and host", tok[:4], v.Name, v.URL)
			}
		}
	}
	var ops keeper.WebhookView
	wiretest.API{Base: "http://" + k.HTTPAddr(), Token: viewer}.Do(t, "GET", "/api/v1/webhooks/ops", nil, &ops)
	if ops.Status.LastError == "" {
		t.Errorf("no delivery error to check: %+v", ops.Status)
	}
	// Admins see the path, never user info, query values or Slack's key.
	var views []keeper.WebhookView
	wiretest.API{Base: "http://" + k.HTTPAddr(), Token: admin}.Do(t, "GET", "/api/v1/webhooks", nil, &views)
	got := map[string]string{}
	for _, v := range views {
		got[v.Name] = v.URL
	}
	if got["slack"] != "http://"+dead+"/services/T0/B0/***" || got["ops"] != "http://"+dead+"/hooks/PATHSECRET?token=***" {
		t.Errorf("admin sees %v", got)
	}
}

// With API tokens, /metrics (run names, ids, webhook and trigger names)
// needs a viewer's token, unless the keeper is told to serve it openly.
func TestEdgeMetricsNeedAToken(t *testing.T) {
	const viewer = "viewer-token-0123456789"
	tokens := func(c *keeper.Config) {
		c.Tokens = []keeper.Token{{Name: "vera", Role: keeper.RoleViewer, Secret: viewer}}
	}
	get := func(k *keeper.Keeper, token string) int {
		t.Helper()
		h := map[string]string{}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		st, _ := (edgeReq{"GET", "/metrics", "", h}).do(t, k)
		return st
	}
	k := openKeeper(t, t.TempDir(), tokens)
	if st := get(k, ""); st != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", st)
	}
	if st := get(k, "wrong-token-0123456789"); st != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", st)
	}
	if st := get(k, viewer); st != 200 {
		t.Errorf("viewer: %d, want 200", st)
	}
	open := openKeeper(t, t.TempDir(), tokens, func(c *keeper.Config) { c.MetricsPublic = true })
	if st := get(open, ""); st != 200 {
		t.Errorf("MetricsPublic, no token: %d, want 200", st)
	}
	// Without tokens (loopback only) it stays open, as every route.
	if st := get(openKeeper(t, t.TempDir()), ""); st != 200 {
		t.Errorf("tokenless keeper: %d, want 200", st)
	}
}

// A body over the limit is refused while it is read: the keeper holds at
// most the route's limit of it, never the whole body and never a doubled
// buffer. 100 MB sent over a real socket, once declared (refused before
// reading) and once chunked (refused at the limit), must each cost the
// keeper's process well under 40 MiB of allocation.
func TestEdgeHugeBodyRefusedWithBoundedMemory(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	const huge = 100 << 20
	const bound = 40 << 20
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			status, sent := postHuge(t, k.HTTPAddr(), "/api/v1/behavior-sets", huge, chunked)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("sent %d MiB before the keeper answered %d; the process allocated %.1f MiB meanwhile (heap %.1f → %.1f MiB)",
				sent>>20, status, float64(alloc)/(1<<20), float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20))
			if status != http.StatusRequestEntityTooLarge {
				t.Errorf("status %d, want 413", status)
			}
			if alloc > bound {
				t.Errorf("refusing the body allocated %d MiB, over %d MiB", alloc>>20, bound>>20)
			}
		})
	}
	// And the keeper serves on.
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/healthz", nil, nil); st != 200 {
		t.Errorf("healthz after: %d", st)
	}
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/behavior-sets", map[string]any{"name": "bg",
		"files": []map[string]string{{"name": "bg.json", "content": bgSet}}}, nil); st != 201 {
		t.Errorf("upload after: %d", st)
	}
}

// postHuge sends size bytes of a JSON-looking body to path over a raw TCP
// connection, from one reused buffer (the client allocates nothing per
// chunk), until the keeper answers or closes. It returns the status and
// how much was sent.
func postHuge(t testing.TB, addr, path string, size int, chunked bool) (status, sent int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	head := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n"
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
	}
	done := make(chan int, 1)
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = 'x'
		}
		// A JSON string that never ends: no parser stops early.
		prefix := `{"name": "big", "files": [{"name": "a.json", "content": "`
		var chunkHead, chunkTail []byte
		if chunked {
			chunkHead, chunkTail = fmt.Appendf(nil, "%x\r\n", len(buf)), []byte("\r\n")
			prefix = fmt.Sprintf("%x\r\n%s\r\n", len(prefix), prefix)
		}
		if _, err := io.WriteString(conn, head+prefix); err != nil {
			return
		}
		n := len(prefix)
		for n < size {
			if chunked {
				if _, err := conn.Write(chunkHead); err != nil {
					break
				}
			}
			m, err := conn.Write(buf)
			n += m
			if err != nil {
				break
			}
			if chunked {
				if _, err := conn.Write(chunkTail); err != nil {
					break
				}
			}
		}
		done <- n
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	conn.Close() // ends the writer if the keeper kept reading
	return resp.StatusCode, <-done
}

// Errors quote at most a short prefix of what the caller sent: an unknown
// field of a megabyte, a path parameter of 100 KB, a header, a behavior
// file with thousands of bad lines.
func TestEdgeErrorsClipTheirInput(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	long := strings.Repeat("A", 1<<20)
	var manyBad strings.Builder
	manyBad.WriteString(`{"behaviors": {`)
	for i := range 1000 {
		if i > 0 {
			manyBad.WriteString(",")
		}
		fmt.Fprintf(&manyBad, `"b%d-%s": {"frequency": 7}`, i, long[:300])
	}
	manyBad.WriteString("}}")
	for _, tc := range []struct {
		name string
		req  edgeReq
	}{
		{"unknown field", edgeReq{"POST", "/api/v1/runs", `{"` + long[:500<<10] + `": 1}`, map[string]string{"Content-Type": "application/json"}}},
		{"path parameter", edgeReq{"GET", "/api/v1/runs/" + long[:100<<10], "", nil}},
		{"no route", edgeReq{"GET", "/api/v1/" + long[:100<<10], "", nil}},
		{"content type", edgeReq{"POST", "/api/v1/control", `{}`, map[string]string{"Content-Type": "text/" + long[:100<<10]}}},
		{"query", edgeReq{"GET", "/api/v1/audit?limit=" + long[:100<<10], "", nil}},
		{"behavior file", edgeReq{"POST", "/api/v1/behavior-sets", mustJSON(t, map[string]any{"name": "bad",
			"files": []map[string]string{{"name": "bad.json", "content": manyBad.String()}}}), map[string]string{"Content-Type": "application/json"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, e := tc.req.do(t, k)
			msg := e.Error.Message + e.Error.Field
			run := longestRun(msg, 'A')
			t.Logf("%d, %d bytes, %d lines, longest run of input %d: %.160s", st, len(msg), strings.Count(msg, "\n")+1, run, msg)
			if st < 400 || e.Error.Message == "" {
				t.Fatalf("got %d %+v, want an error", st, e.Error)
			}
			if run > maxErrorLine || strings.Count(msg, "\n") > maxErrorLines+1 || len(msg) > (maxErrorLines+2)*(maxErrorLine+40) {
				t.Errorf("the error quotes %d bytes of input in %d bytes", run, len(msg))
			}
		})
	}
}

// longestRun is the length of the longest run of c in s.
func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

func TestClipMessage(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		ok   func(string) bool
	}{
		{"short stays", "no run \"x\"", func(s string) bool { return s == "no run \"x\"" }},
		{"long line cut", strings.Repeat("x", 10000), func(s string) bool {
			return len(s) < maxErrorLine+40 && strings.HasSuffix(s, "(9680 bytes cut)")
		}},
		{"many lines cut", strings.Repeat("line\n", 1000) + "last", func(s string) bool {
			return strings.Count(s, "\n") == maxErrorLines && strings.HasSuffix(s, "… and 951 more lines")
		}},
		{"invalid UTF-8 mended", "bad \xff byte", func(s string) bool { return s == "bad \uFFFD byte" }},
	} {
		if got := clipMessage(c.in); !c.ok(got) {
			t.Errorf("%s: clipMessage(%.40q) = %.200q", c.name, c.in, got)
		}
	}
}

// Uploads hold up to MaxUploadBody each (and the copies parsing makes): at
// most uploadSlots are read at once, the others wait their turn, so
// concurrent uploads cannot multiply the keeper's memory.
func TestEdgeUploadsTakeTurns(t *testing.T) {
	k := openKeeper(t, t.TempDir()) // without tokens, as the keeper it replaced
	s := &server{k: k, cfg: k.Config(), log: k.Config().Logger}
	var inside, most atomic.Int32
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	e := echo.New()
	e.Use(s.edgeGuard())
	e.POST("/api/v1/behavior-sets", func(c echo.Context) error {
		n := inside.Add(1)
		defer inside.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- struct{}{}
		<-release
		return c.NoContent(http.StatusNoContent)
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	const uploads = uploadSlots + 2
	var wg sync.WaitGroup
	for range uploads {
		wg.Go(func() {
			resp, err := http.Post(srv.URL+"/api/v1/behavior-sets", "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	for range uploadSlots {
		<-entered
	}
	// The others wait: none enters while the slots are held (a slow
	// machine can only make this pass, never fail).
	select {
	case <-entered:
		t.Errorf("an upload entered beyond the %d slots", uploadSlots)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	if m := most.Load(); m != uploadSlots {
		t.Errorf("at most %d uploads inside at once, want %d", m, uploadSlots)
	}
}

// stallBody opens a connection, sends a POST's headers declaring a body
// of length bytes, and only the first bytes of it, then leaves it open:
// a caller that is slow on purpose, or broken.
func stallBody(t *testing.T, addr, path string, length int, first string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, length, first); err != nil {
		t.Fatal(err)
	}
	return c
}

// answerOf waits (until giveUp) for the keeper's answer on a stalled
// connection and for the connection to be closed after it.
func answerOf(t *testing.T, c net.Conn, giveUp time.Time) (status int, body string, closed bool) {
	t.Helper()
	_ = c.SetReadDeadline(giveUp)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err.Error(), false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp.StatusCode, string(b), err == io.EOF
}

// Upload bodies that stop arriving (two connections declaring 100 kB and
// sending 16 bytes) held both upload slots for ever, and every other
// upload waited as long as its client would. Now a body that falls
// behind is cut BodyTimeout after its slot was taken, answered 408 and
// its connection closed, and the upload waiting behind it goes through.
func TestEdgeStalledUploadsAreCutAndFreeTheirSlots(t *testing.T) {
	const bodyTimeout = time.Second
	// How long the test waits for what must happen at all; on the code
	// that held slots for ever, that is how long it takes to fail.
	const failAfter = 30 * bodyTimeout
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) {
		c.BodyTimeout = bodyTimeout
		c.UploadWait = failAfter // waits for a slot, here, rather than giving up
	})
	start := time.Now()
	var stalled []net.Conn
	for i := range uploadSlots {
		stalled = append(stalled, stallBody(t, k.HTTPAddr(), "/api/v1/behavior-sets", 100_000, fmt.Sprintf(`{"name":"slow%d"`, i)))
	}
	done := make(chan struct{})
	var code int
	var answer string
	go func() {
		defer close(done)
		body := fmt.Sprintf(`{"name":"ok","files":[{"name":"bg.json","content":%q}]}`, bgSet)
		c := http.Client{Timeout: failAfter}
		resp, err := c.Post("http://"+k.HTTPAddr()+"/api/v1/behavior-sets", "application/json", strings.NewReader(body))
		if err != nil {
			answer = err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, answer = resp.StatusCode, string(b)
	}()
	for i, c := range stalled {
		status, body, closed := answerOf(t, c, start.Add(failAfter))
		took := time.Since(start)
		t.Logf("stalled upload %d: %d %s after %v, closed %v", i, status, strings.TrimSpace(body), took.Round(time.Millisecond), closed)
		if status != http.StatusRequestTimeout || !strings.Contains(body, "too slowly") || !closed {
			t.Errorf("stalled upload %d: %d %q, connection closed %v; want 408 saying too slowly, and closed", i, status, body, closed)
		}
		if took < bodyTimeout {
			t.Errorf("stalled upload %d cut after %v, before the body timeout of %v", i, took, bodyTimeout)
		}
	}
	<-done
	t.Logf("the upload waiting behind them: %d after %v", code, time.Since(start).Round(time.Millisecond))
	if code != http.StatusCreated && code != http.StatusOK {
		t.Errorf("the upload waiting behind the stalled ones: %d %.300s", code, answer)
	}
}

// While every upload slot is held by uploads still arriving, another
// upload waits UploadWait for one, then is answered 503 with Retry-After
// and a message that says why, instead of waiting as long as its client
// will.
func TestEdgeUploadWaitsForASlotThenIsTurnedAway(t *testing.T) {
	const uploadWait = 300 * time.Millisecond
	const bodyTimeout = 30 * time.Second // the slots stay held through the test
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) {
		c.BodyTimeout = bodyTimeout
		c.UploadWait = uploadWait
	})
	for i := range uploadSlots {
		stallBody(t, k.HTTPAddr(), "/api/v1/formations", 100_000, fmt.Sprintf(`{"name":"slow%d"`, i))
	}
	// The stalled ones take their slots as soon as they are read: wait
	// until a further upload is turned away, never longer than the slots
	// stay held.
	body := fmt.Sprintf(`{"file":{"name":"herd.json","content":%q}}`, herd)
	c := http.Client{Timeout: bodyTimeout / 2}
	for {
		start := time.Now()
		resp, err := c.Post("http://"+k.HTTPAddr()+"/api/v1/formations", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("an upload while the slots are held: %v (upload wait %v)", err, uploadWait)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
			if took > bodyTimeout/4 {
				t.Fatalf("an upload went through after %v, with the slots held", took)
			}
			time.Sleep(10 * time.Millisecond) // the stalled ones have not reached the edge yet
			continue
		}
		t.Logf("while the slots are held: %d after %v, Retry-After %q: %s", resp.StatusCode, took.Round(time.Millisecond), resp.Header.Get("Retry-After"), strings.TrimSpace(string(b)))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "busy") {
			t.Errorf("%d, Retry-After %q, %s; want 503 with Retry-After: 1, saying busy", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
		if took < uploadWait {
			t.Errorf("turned away after %v, before the upload wait of %v", took, uploadWait)
		}
		break
	}
	// Commands do not wait for upload slots: the global stop is answered.
	var sw struct{ State string }
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/control", map[string]string{"state": "stopped"}, &sw); st != 200 || sw.State != "stopped" {
		t.Errorf("global stop while the slots are held: %d %+v", st, sw)
	}
}

// The signed trigger route takes calls without a token: callers that
// declare a body and trickle it, many at once, each hold a goroutine and
// up to 64 KiB. Each is cut BodyTimeout after it falls behind and its
// connection closed, so they cannot pile up.
func TestEdgeSlowTriggerBodiesAreCut(t *testing.T) {
	const bodyTimeout = 500 * time.Millisecond
	const failAfter = 30 * bodyTimeout
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) { c.BodyTimeout = bodyTimeout })
	const callers = 20
	start := time.Now()
	var conns []net.Conn
	for range callers {
		c := stallBody(t, k.HTTPAddr(), "/api/v1/triggers/deploy", 60_000, `{"labels": {`)
		conns = append(conns, c)
	}
	var last time.Duration
	for i, c := range conns {
		status, body, closed := answerOf(t, c, start.Add(failAfter))
		last = time.Since(start)
		if status != http.StatusRequestTimeout || !closed {
			t.Errorf("slow trigger call %d: %d %q, connection closed %v; want 408 and closed", i, status, body, closed)
		}
	}
	if last < bodyTimeout {
		t.Errorf("slow trigger calls cut after %v, before the body timeout of %v", last, bodyTimeout)
	}
	t.Logf("%d slow trigger calls: the last answered after %v (body timeout %v)", callers, last.Round(time.Millisecond), bodyTimeout)
}
