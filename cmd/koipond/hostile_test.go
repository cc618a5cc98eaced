package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats.go"
)

// The hostile-input suite: each test attacks a running system (keeper with
// embedded NATS, pond, a school running busy koi) the way a stranger, a
// careless user or a lying peer would, then proves that the keeper is
// still healthy and serving, the school is still alive and polling, the
// run still reaches pond, and a global stop takes pond to zero requests
// within a second.

// hostileKoi is the size of the rig's run: small enough for a test under
// the race detector, busy enough that a missed stop shows at pond.
const hostileKoi = 20

// hostileRig is a whole system on loopback with a busy run.
type hostileRig struct {
	k    *keeper.Keeper
	p    *pond.Server
	s    *school.School
	base string
	run  string
	// token is sent as the bearer on the rig's own calls (empty: none).
	token string
}

// startHostileRig starts the system and waits until the run's koi are
// connected and calling pond; cfg adjusts the keeper's configuration.
func startHostileRig(t *testing.T, cfg func(*keeper.Config)) *hostileRig {
	t.Helper()
	kc := keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if cfg != nil {
		cfg(&kc)
	}
	k, err := api.Open(context.Background(), kc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	r := &hostileRig{k: k, p: testPond(t, 200, 10, nil), s: testSchool(t, k, "school-1", 1000), base: "http://" + k.HTTPAddr()}
	for _, tok := range kc.Tokens {
		if tok.Role == keeper.RoleAdmin {
			r.token = tok.Secret
		}
	}
	var bs struct{ Hash string }
	r.call(t, "POST", "/behavior-sets", map[string]any{"name": "tick", "files": []map[string]string{{"name": "tick.json", "content": tickSet}}}, &bs)
	r.run = r.createRun(t, "busy", bs.Hash, hostileKoi)
	wiretest.Until(t, 30*time.Second, "the run's koi connected at pond", func() bool { return r.p.Stats().WebsocketsOpen == hostileKoi })
	before := r.p.Stats().RequestsTotal
	wiretest.Until(t, 10*time.Second, "koi calling pond", func() bool { return r.p.Stats().RequestsTotal > before+hostileKoi })
	return r
}

// createRun starts a run of n koi of a behavior set against the rig's
// pond; each koi's behavior minute lasts one second.
func (r *hostileRig) createRun(t *testing.T, name, set string, n int) string {
	t.Helper()
	var run struct{ ID string }
	r.call(t, "POST", "/runs", map[string]any{"name": name, "behavior_set": set, "koi": n, "ramp": 0,
		"time_scale": 60, "target": map[string]string{"api_base": r.p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"}}, &run)
	return run.ID
}

// call sends JSON to the rig's keeper as its operator and decodes the
// reply into out; anything but a 2xx fails the test.
func (r *hostileRig) call(t *testing.T, method, path string, body, out any) {
	t.Helper()
	wiretest.API{Base: r.base + "/api/v1", Token: r.token}.Call(t, method, path, body, out)
}

// raw sends a request as an attacker would and returns the status and at
// most 64 KiB of the reply.
func (r *hostileRig) raw(t *testing.T, method, path, contentType string, body io.Reader, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range header {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(data)
}

// survivedAndStops asserts that the keeper serves reads and writes, the
// school is connected and polling, the run still reaches pond, and a
// global stop takes pond to zero requests within one second.
func (r *hostileRig) survivedAndStops(t *testing.T) {
	t.Helper()
	if st, body := r.raw(t, "GET", "/healthz", "", nil, nil); st != http.StatusOK {
		t.Fatalf("keeper unhealthy after the attack: HTTP %d %s", st, clip(body))
	}
	var runs []json.RawMessage
	r.call(t, "GET", "/runs", nil, &runs)
	if len(runs) == 0 {
		t.Fatal("the keeper lists no runs after the attack")
	}
	// A write still commits: a fresh behavior set is stored.
	r.call(t, "POST", "/behavior-sets", map[string]any{"name": "after-attack", "files": []map[string]string{{"name": "tick.json", "content": tickSet}}}, nil)
	polled := r.s.Status().LastPoll
	wiretest.Until(t, 10*time.Second, "the school to poll again", func() bool {
		st := r.s.Status()
		return st.NATSConnected && st.LastPoll.After(polled)
	})
	before := r.p.Stats().RequestsTotal
	wiretest.Until(t, 10*time.Second, "the run still calling pond", func() bool { return r.p.Stats().RequestsTotal > before+hostileKoi/2 })

	stopAt := time.Now()
	r.call(t, "POST", "/control", map[string]string{"state": "stopped"}, nil)
	called := time.Since(stopAt)
	// The stop's promise is one second from the press; the API call itself
	// is part of it.
	time.Sleep(time.Second - called)
	quiet := r.p.Stats()
	if quiet.WebsocketsOpen != 0 {
		t.Errorf("%d websockets still open at pond 1 s after the global stop", quiet.WebsocketsOpen)
	}
	time.Sleep(500 * time.Millisecond)
	if d := r.p.Stats().RequestsTotal - quiet.RequestsTotal; d != 0 {
		t.Errorf("%d requests reached pond more than 1 s after the global stop", d)
	}
	t.Logf("after the attack: keeper healthy, school polling, stop quiet at pond within 1 s (API call took %v)", called.Round(time.Millisecond))
}

// clip keeps failure messages short.
func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// attackerConn connects to the keeper's NATS with a school's credentials
// (none when the keeper runs without authentication): the strongest
// position a compromised school, or a stranger on an open server, has.
func attackerConn(t *testing.T, r *hostileRig) *nats.Conn {
	t.Helper()
	opts := []nats.Option{nats.Name("attacker"), nats.CustomInboxPrefix(wire.SchoolInboxPrefix)}
	if f := r.k.SchoolNKeyFile(); f != "" {
		o, err := nats.NkeyOptionFromSeed(f)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(r.k.NATSURL(), opts...)
	if err != nil {
		t.Fatalf("attacker connecting as a school: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// A control message with the largest epoch and a spoofed actor: a
// stranger without credentials cannot connect; a school's credentials
// cannot publish control; and on a keeper run without authentication the
// unsigned switch is ignored by keeper and school alike. Either way the
// keeper's epoch never wraps and its next stop still stops.
func TestHostileControlEpoch(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("insecure=%v", insecure), func(t *testing.T) {
			r := startHostileRig(t, func(c *keeper.Config) { c.NATSAuth.Insecure = insecure })
			if !insecure {
				if nc, err := nats.Connect(r.k.NATSURL(), nats.Name("stranger")); err == nil {
					nc.Close()
					t.Error("a client without credentials connected to the keeper's NATS")
				}
			}
			nc := attackerConn(t, r)
			for _, st := range []wire.State{wire.Paused, wire.Running} {
				data, err := wire.Encode(&wire.Control{Epoch: math.MaxUint64, State: st, By: "admin", At: time.Now()})
				if err != nil {
					t.Fatal(err)
				}
				_ = nc.Publish(wire.SubjectControl, data) // a permission error is the defence working
				_ = nc.FlushTimeout(time.Second)
			}
			var ctl struct {
				State string
				Epoch uint64
			}
			r.call(t, "GET", "/control", nil, &ctl)
			if ctl.Epoch > math.MaxUint32 || ctl.State != "running" {
				t.Errorf("the keeper adopted the forged switch: %+v", ctl)
			}
			if st := r.s.Status(); st.Epoch > math.MaxUint32 || st.Switch != wire.Running {
				t.Errorf("the school adopted the forged switch: epoch %d, %s", st.Epoch, st.Switch)
			}
			var audit []struct{ Actor string }
			r.call(t, "GET", "/audit", nil, &audit)
			for _, a := range audit {
				if a.Actor == "admin" {
					t.Errorf("the forged actor %q reached the audit log", a.Actor)
				}
			}
			r.survivedAndStops(t)
		})
	}
}

// 3 MB of '[' as a behavior set, inside a JSON body and as the body
// itself: refused with a clear error, no stack overflow.
func TestHostileDeepNesting(t *testing.T) {
	r := startHostileRig(t, nil)
	deep := strings.Repeat("[", 3<<20)
	body, _ := json.Marshal(map[string]any{"name": "deep", "files": []map[string]string{{"name": "deep.json", "content": deep}}})
	st, msg := r.raw(t, "POST", "/api/v1/behavior-sets", "application/json", bytes.NewReader(body), nil)
	if st < 400 || st >= 500 {
		t.Errorf("deep behavior set: HTTP %d, want a 4xx refusal: %s", st, clip(msg))
	}
	if len(msg) > 2000 {
		t.Errorf("the refusal echoes %d bytes of input", len(msg))
	}
	st, msg = r.raw(t, "POST", "/api/v1/behavior-sets", "application/json", strings.NewReader(deep), nil)
	if st < 400 || st >= 500 {
		t.Errorf("deep body: HTTP %d, want a 4xx refusal: %s", st, clip(msg))
	}
	form, _ := json.Marshal(map[string]any{"file": map[string]string{"name": "deep.json", "content": deep}})
	if st, msg = r.raw(t, "POST", "/api/v1/formations", "application/json", bytes.NewReader(form), nil); st < 400 || st >= 500 {
		t.Errorf("deep formation: HTTP %d, want a 4xx refusal: %s", st, clip(msg))
	}
	r.survivedAndStops(t)
}

// A school id of 2,100 characters: refused at the edge; the keeper's
// NATS connection survives (the id once overflowed a KV key's control
// line and the server closed the keeper's connection for good).
func TestHostileLongSchoolID(t *testing.T) {
	r := startHostileRig(t, nil)
	id := strings.Repeat("s", 2100)
	if _, err := school.Open(context.Background(), school.Config{ID: id, NATSURL: r.k.NATSURL(), Capacity: 10}); err == nil {
		t.Error("school.Open accepted a 2,100-character id")
	}
	nc := attackerConn(t, r)
	data, err := wire.Encode(&wire.PollRequest{School: id, Capacity: 10, Clock: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := nc.Request(wire.SubjectPoll, data, 2*time.Second); err == nil {
		var rep wire.PollReply
		if err := wire.Decode(m.Data, &rep); err == nil && rep.Error == "" {
			t.Errorf("the keeper answered a poll from a 2,100-character id without an error")
		}
	}
	r.survivedAndStops(t)
}

// A poll claiming capacity 2^63−1: the scheduler's sums saturate instead
// of wrapping, and the real school keeps its koi.
func TestHostileHugeCapacity(t *testing.T) {
	r := startHostileRig(t, nil)
	nc := attackerConn(t, r)
	for i, c := range []int{math.MaxInt64} {
		data, err := wire.Encode(&wire.PollRequest{School: fmt.Sprintf("liar-%d", i), Capacity: c, Clock: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = nc.Request(wire.SubjectPoll, data, 2*time.Second)
	}
	// The liars hold no koi; whatever share the scheduler gave them comes
	// back to the real school after their lease, but the run must never
	// drop to nothing in between.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		var run struct {
			Koi      int
			Assigned int
		}
		r.call(t, "GET", "/runs/"+r.run, nil, &run)
		if run.Assigned == 0 {
			t.Fatalf("the run dropped to 0 assigned koi after a poll with a huge capacity: %+v", run)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wiretest.Until(t, 15*time.Second, "the real school to hold every koi again", func() bool { return r.p.Stats().WebsocketsOpen == hostileKoi })
	r.survivedAndStops(t)
}

// Template memory bombs: nested repeats and a doubling print chain. They
// either fail validation or fail their step within the template budget;
// the school never runs out of memory and the other run keeps going.
func TestHostileTemplateBomb(t *testing.T) {
	r := startHostileRig(t, nil)
	constant := `{"behaviors": {"bomb": {"frequency": 1, "steps": [{"pre_actions": ["{{ $x := repeat 10000 (repeat 10000 (repeat 10000 \"x\")) }}"], "request": {"type": "api", "method": "auth.test"}}]}}}`
	body, _ := json.Marshal(map[string]any{"name": "bomb", "files": []map[string]string{{"name": "bomb.json", "content": constant}}})
	if st, msg := r.raw(t, "POST", "/api/v1/behavior-sets", "application/json", bytes.NewReader(body), nil); st < 400 || st >= 500 {
		t.Errorf("constant repeat bomb: HTTP %d, want refused at validation: %s", st, clip(msg))
	}
	// A doubling chain of constants is refused at validation too.
	doubling := `{{ $s := "xxxxxxxxxxxxxxxx" }}` + strings.Repeat(`{{ $s = print $s $s }}`, 26) + `{{ set "s" $s }}`
	body, _ = json.Marshal(map[string]any{"name": "doubling", "files": []map[string]string{{"name": "doubling.json", "content": `{"behaviors": {"doubling": {"frequency": 1, "steps": [{"pre_actions": [` + strconv.Quote(doubling) + `], "request": {"type": "api", "method": "auth.test"}}]}}}`}}})
	if st, msg := r.raw(t, "POST", "/api/v1/behavior-sets", "application/json", bytes.NewReader(body), nil); st < 400 || st >= 500 {
		t.Errorf("constant doubling bomb: HTTP %d, want refused at validation: %s", st, clip(msg))
	}
	// Sizes that only exist at run time: the budget stops them while they run.
	doubling = `{{ $s := get "nothing" }}{{ if not $s }}{{ $s = randAlphaNum 16 }}{{ end }}` + strings.Repeat(`{{ $s = print $s $s }}`, 26) + `{{ set "s" $s }}`
	dynamic := `{{ $n := len (get "n") | add 10000 }}{{ $x := repeat $n (repeat $n (repeat $n "x")) }}`
	set, _ := json.Marshal(map[string]any{"behaviors": map[string]any{
		"doubling": map[string]any{"frequency": 1, "steps": []any{map[string]any{"pre_actions": []string{doubling}, "request": map[string]any{"type": "api", "method": "auth.test"}}}},
		"dynamic":  map[string]any{"frequency": 1, "steps": []any{map[string]any{"pre_actions": []string{dynamic}, "request": map[string]any{"type": "api", "method": "auth.test"}}}},
	}})
	var bs struct{ Hash string }
	r.call(t, "POST", "/behavior-sets", map[string]any{"name": "bombs", "files": []map[string]string{{"name": "bombs.json", "content": string(set)}}}, &bs)
	bomb := r.createRun(t, "bombs", bs.Hash, 5)
	wiretest.Until(t, 30*time.Second, "the bombs to go off and fail their steps", func() bool {
		var m struct {
			Keys []struct{ Failures uint64 } `json:"keys"`
		}
		st, body := r.raw(t, "GET", "/api/v1/runs/"+bomb+"/metrics", "", nil, nil)
		if st != 200 || json.Unmarshal([]byte(body), &m) != nil {
			return false
		}
		var errs uint64
		for _, v := range m.Keys {
			errs += v.Failures
		}
		return errs >= 5
	})
	r.survivedAndStops(t)
}

// A cross-site page the operator opens cannot drive a tokenless keeper:
// a text/plain POST from a foreign Origin, and a DNS-rebound Host, are
// refused and the switch does not move.
func TestHostileCrossSite(t *testing.T) {
	r := startHostileRig(t, nil)
	for _, c := range []struct {
		name   string
		ctype  string
		header map[string]string
	}{
		{"simple form post", "text/plain", map[string]string{"Origin": "http://evil.example"}},
		{"json from a foreign origin", "application/json", map[string]string{"Origin": "http://evil.example"}},
		{"dns rebinding", "application/json", map[string]string{"Host": "evil.example:" + strings.Split(r.k.HTTPAddr(), ":")[1]}},
		{"no content type", "", nil},
	} {
		st, msg := r.raw(t, "POST", "/api/v1/control", c.ctype, strings.NewReader(`{"state":"paused"}`), c.header)
		if st < 400 {
			t.Errorf("%s: HTTP %d, want refused: %s", c.name, st, clip(msg))
		}
	}
	var ctl struct{ State string }
	r.call(t, "GET", "/control", nil, &ctl)
	if ctl.State != "running" {
		t.Errorf("the switch moved to %q after refused cross-site requests", ctl.State)
	}
	r.survivedAndStops(t)
}

// A 100 MB body is refused while it is read, and the keeper carries on.
func TestHostileHugeBody(t *testing.T) {
	r := startHostileRig(t, nil)
	big := io.MultiReader(strings.NewReader(`{"name":"big","files":[{"name":"a.json","content":"`), &repeatReader{b: 'x', n: 100 << 20}, strings.NewReader(`"}]}`))
	st, msg := r.raw(t, "POST", "/api/v1/behavior-sets", "application/json", big, nil)
	if st != http.StatusRequestEntityTooLarge && (st < 400 || st >= 500) {
		t.Errorf("100 MB body: HTTP %d, want 413: %s", st, clip(msg))
	}
	if len(msg) > 2000 {
		t.Errorf("the refusal echoes %d bytes", len(msg))
	}
	r.survivedAndStops(t)
}

// repeatReader yields n copies of one byte without holding them.
type repeatReader struct {
	b byte
	n int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = r.b
	}
	r.n -= len(p)
	return len(p), nil
}

// Warehouse exports under the keeper's --warehouse-dir: one line of
// 256 MiB (a few hundred KiB gzipped) is refused at the line cap, and a
// symlink out of the folder is not followed, its target never quoted.
func TestHostileWarehouseExport(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret.csv")
	if err := os.WriteFile(secret, []byte("SECRET-CONTENT-NEVER-QUOTED,b,c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "leak.csv")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "long.csv.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	io.WriteString(zw, "user,method,timestamp\n")
	if _, err := io.Copy(zw, &repeatReader{b: 'a', n: 256 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(zw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
	r := startHostileRig(t, func(c *keeper.Config) { c.WarehouseDir = dir })
	for _, c := range []struct{ from, want string }{
		{"long.csv.gz", "row"},
		{"leak.csv", ""},
		{"../" + filepath.Base(filepath.Dir(secret)) + "/secret.csv", ""},
	} {
		body, _ := json.Marshal(map[string]string{"from": c.from})
		st, msg := r.raw(t, "POST", "/api/v1/behavior-sets/generate", "application/json", bytes.NewReader(body), nil)
		if st < 400 || st >= 500 {
			t.Errorf("%s: HTTP %d, want a 4xx refusal: %s", c.from, st, clip(msg))
		}
		if strings.Contains(msg, "SECRET-CONTENT") {
			t.Errorf("%s: the refusal quotes a file outside the warehouse folder: %s", c.from, clip(msg))
		}
		if len(msg) > 2000 {
			t.Errorf("%s: the refusal is %d bytes long", c.from, len(msg))
		}
		if c.want != "" && !strings.Contains(msg, c.want) {
			t.Errorf("%s: the refusal does not say which %s: %s", c.from, c.want, clip(msg))
		}
	}
	r.survivedAndStops(t)
}

// With tokens configured, a viewer never reads a webhook's secret path
// and /metrics wants a token; a tokenless caller gets nothing.
func TestHostileViewerSecrets(t *testing.T) {
	const viewer = "viewer-secret-0123456789abcdef"
	r := startHostileRig(t, func(c *keeper.Config) {
		c.Tokens = []keeper.Token{{Name: "ops", Role: keeper.RoleAdmin, Secret: "admin-secret-0123456789abcdef"},
			{Name: "watcher", Role: keeper.RoleViewer, Secret: viewer}}
	})
	const hook = "https://hooks.slack.com/services/T0000/B0000/XSECRETPATHX"
	r.call(t, "POST", "/webhooks", map[string]any{"name": "slack", "url": hook, "format": "slack"}, nil)
	for _, path := range []string{"/api/v1/webhooks", "/api/v1/webhooks/slack"} {
		st, body := r.raw(t, "GET", path, "", nil, map[string]string{"Authorization": "Bearer " + viewer})
		if st != http.StatusOK {
			t.Errorf("viewer GET %s: HTTP %d %s", path, st, clip(body))
		}
		if strings.Contains(body, "XSECRETPATHX") {
			t.Errorf("viewer GET %s shows the webhook's secret path: %s", path, clip(body))
		}
	}
	if st, _ := r.raw(t, "GET", "/metrics", "", nil, map[string]string{"Authorization": ""}); st != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token: HTTP %d, want 401 once tokens are configured", st)
	}
	if st, _ := r.raw(t, "GET", "/metrics", "", nil, map[string]string{"Authorization": "Bearer " + viewer}); st != http.StatusOK {
		t.Errorf("GET /metrics as a viewer: HTTP %d, want 200", st)
	}
	r.survivedAndStops(t)
}

// A 2 MB behavior set of 10,000 behaviors (validation was once quadratic:
// a minute of keeper CPU for this file, an hour for 16 MiB) is stored
// while the system keeps serving.
func TestHostileLargeValidUpload(t *testing.T) {
	r := startHostileRig(t, nil)
	var b strings.Builder
	b.WriteString(`{"behaviors": {`)
	for i := range 10_000 {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `"b%05d": {"frequency": 0.0001, "steps": [{"pre_actions": ["{{ set \"c\" (randomChannel false) }}"], "request": {"type": "api", "method": "conversations.info", "args": {"channel": "{{ (get \"c\").ID }}"}}}]}`, i)
	}
	b.WriteString("}}")
	if b.Len() > 2<<20 {
		t.Fatalf("the generated set has %d bytes", b.Len())
	}
	start := time.Now()
	r.call(t, "POST", "/behavior-sets", map[string]any{"name": "large", "files": []map[string]string{{"name": "large.json", "content": b.String()}}}, nil)
	t.Logf("stored %d bytes, 10,000 behaviors, in %v", b.Len(), time.Since(start).Round(time.Millisecond))
	r.survivedAndStops(t)
}
