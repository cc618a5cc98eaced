package keeper

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// Fast clocks for tests: schools poll every 100 ms, leases last 1 s.
const (
	testPoll  = 100 * time.Millisecond
	testLease = time.Second
)

// OpenWithAPI opens a keeper serving its HTTP API: keeper/api's Open,
// set by api_link_test.go (package keeper_test, which may import
// keeper/api), so the tests here reach the keeper over HTTP as clients
// do.
var OpenWithAPI func(context.Context, Config) (*Keeper, error)

// openKeeper starts a keeper with embedded NATS on random ports and its
// API on a random loopback port, its data in dir.
func openKeeper(t testing.TB, dir string, mut ...func(*Config)) *Keeper {
	t.Helper()
	cfg := Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dir,
		PollInterval: testPoll, Lease: testLease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mut {
		m(&cfg)
	}
	k, err := OpenWithAPI(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

const bgSet = `{"behaviors": {"api.test": {"frequency": 0.5, "steps": [
  {"request": {"type": "api", "method": "api.test"}}]}}}`

const herd = `{"name": "herd", "begin_within_secs": 2, "percent": 10,
  "sequence": {"steps": [{"request": {"type": "api", "method": "chat.postMessage"}}]}}`

// seedRun stores a behavior set and an always-on run of koi koi.
func seedRun(t testing.TB, k *Keeper, koi int) *state.Run {
	t.Helper()
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: "always", BehaviorSet: "bg", Koi: koi, Ramp: 100,
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api", Token: "xoxp-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// fakeSchool is a school made of a plain NATS client: it polls, "runs"
// exactly its assignments (every assigned koi connected at once, none
// after a stop), and starts every launch in full.
type fakeSchool struct {
	t        testing.TB
	nc       *nats.Conn
	id       string
	capacity int

	mu       sync.Mutex
	last     *wire.PollReply
	epoch    uint64
	launched map[string]int
	runSw    map[string]wire.State
	refuse   string // refuse every run, saying this
}

func newFakeSchool(t testing.TB, k *Keeper, id string, capacity int) *fakeSchool {
	t.Helper()
	nc := schoolConn(t, k)
	t.Cleanup(nc.Close)
	return &fakeSchool{t: t, nc: nc, id: id, capacity: capacity, launched: map[string]int{}, runSw: map[string]wire.State{}}
}

// request builds the school's next poll from what it was told last.
func (s *fakeSchool) request() *wire.PollRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := &wire.PollRequest{School: s.id, Software: "fake", Capacity: s.capacity, Clock: time.Now(), Epoch: s.epoch}
	if s.last == nil {
		return req
	}
	stopped := s.last.Switch.State == wire.Stopped
	for _, a := range s.last.Assignments {
		n := a.To - a.From
		if stopped || a.Switch.State == wire.Stopped || s.refuse != "" {
			n = 0
		}
		req.Runs = append(req.Runs, wire.RunStatus{Run: a.Run, From: a.From, To: a.To, Target: n, Koi: wire.KoiCounts{Connected: n}, Refused: s.refuse})
		req.KoiRunning += n
		req.WebsocketsOpen += n
	}
	for id, n := range s.launched {
		req.Launches = append(req.Launches, wire.LaunchStatus{Launch: id, Planned: n, Started: n, Finished: n}) // its koi finish at once
	}
	return req
}

// poll sends one poll and applies the reply.
func (s *fakeSchool) poll() *wire.PollReply {
	data, err := wire.Encode(s.request())
	if err != nil {
		s.t.Error(err)
		return nil
	}
	msg, err := s.nc.Request(wire.SubjectPoll, data, 5*time.Second)
	if err != nil {
		return nil // the keeper may be down in restart tests
	}
	var rep wire.PollReply
	if err := wire.Decode(msg.Data, &rep); err != nil {
		s.t.Errorf("bad poll reply: %v", err)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = &rep
	s.epoch = max(s.epoch, rep.Switch.Epoch)
	for _, l := range rep.Launches {
		if _, ok := s.launched[l.ID]; !ok {
			s.launched[l.ID] = l.Count
		}
	}
	return &rep
}

// run polls every testPoll until ctx ends.
func (s *fakeSchool) run(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			s.poll()
			select {
			case <-ctx.Done():
			case <-time.After(jitter(testPoll)):
			}
		}
	}()
}

// holds returns the school's ranges of a run from its last reply.
func (s *fakeSchool) holds(run string) (from, to int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return 0, 0
	}
	for _, a := range s.last.Assignments {
		if a.Run == run {
			return a.From, a.To
		}
	}
	return 0, 0
}

// apiErr is an API error's JSON with its fields as plain strings.
type apiErr struct {
	Error struct {
		Code, Message, Field string
	} `json:"error"`
}

// errorBody is the JSON of every API error, as clients decode it.
type errorBody struct {
	Error *Error `json:"error"`
}

// ComparedReport is a report with its comparison, as
// GET /api/v1/runs/:id/report?baseline=OTHER answers it.
type ComparedReport struct {
	*state.Report
	Comparison *verdict.Comparison `json:"comparison"`
}

// apiText GETs path from the keeper's API and returns the body.
func apiText(t testing.TB, k *Keeper, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + k.HTTPAddr() + path)
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

// delivery is one request a test receiver got.
type delivery struct {
	at     time.Time
	header http.Header
	body   []byte
}

// kind returns the notice kind of a JSON or Slack delivery.
func (d delivery) kind() string { return d.header.Get("X-Koipond-Event") }

// receiver is a real HTTP server on 127.0.0.1 recording what webhooks
// send; answer decides the response to the n-th request (1-based).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(n int, w http.ResponseWriter, r *http.Request)
}

func newReceiver(t testing.TB, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{at: time.Now(), header: r.Header.Clone(), body: body})
		n := len(rc.got)
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(n, w, r)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// waitKind waits for a delivery of kind and returns it.
func (rc *receiver) waitKind(t testing.TB, kind string, d time.Duration) delivery {
	t.Helper()
	var out delivery
	wiretest.WaitFor(t, d, "a delivery of the notice kind", func() error {
		for _, g := range rc.deliveries() {
			if g.kind() == kind {
				out = g
				return nil
			}
		}
		return fmt.Errorf("no %s delivery among %d", kind, len(rc.deliveries()))
	})
	return out
}

func addHook(t testing.TB, k *Keeper, spec WebhookSpec) {
	t.Helper()
	if _, err := k.PutWebhook(context.Background(), "test", spec, true); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// verify checks a delivery's signature as a receiver would.
func verify(t testing.TB, d delivery, secret string) {
	t.Helper()
	ts, err := strconv.ParseInt(d.header.Get(notify.HeaderTimestamp), 10, 64)
	if err != nil {
		t.Fatalf("timestamp header %q", d.header.Get(notify.HeaderTimestamp))
	}
	if got, want := d.header.Get(notify.HeaderSignature), notify.Sign(secret, ts, d.body); got != want || time.Since(time.Unix(ts, 0)) > time.Minute {
		t.Errorf("signature %q, want %q (ts %d)", got, want, ts)
	}
	if notify.Sign("another secret", ts, d.body) == d.header.Get(notify.HeaderSignature) {
		t.Error("the signature does not depend on the secret")
	}
}

// guardSet boots each koi (rtm.connect, websocket) and has it call
// auth.test once a minute of behavior time: at time scale 120, twice a
// second.
const guardSet = `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`

// rig is a real keeper, a real school and real ponds on loopback.
type rig struct {
	k    *Keeper
	hook *receiver // a webhook receiver subscribed to every notice
	dir  string
}

// noticesOf waits until the rig's webhook receiver has want deliveries of
// kind about run, then checks there are exactly want.
func (r *rig) noticesOf(t *testing.T, kind, run string, want int) {
	t.Helper()
	count := func() int {
		n := 0
		for _, d := range r.hook.deliveries() {
			var body struct {
				Run string `json:"run"`
			}
			if d.kind() == kind && json.Unmarshal(d.body, &body) == nil && body.Run == run {
				n++
			}
		}
		return n
	}
	wiretest.WaitFor(t, 10*time.Second, "the notice deliveries for the run", func() error {
		if n := count(); n < want {
			return fmt.Errorf("%d %s deliveries for %s, want %d", n, kind, run, want)
		}
		return nil
	})
	if n := count(); n != want {
		t.Errorf("%d %s deliveries for %s, want %d", n, kind, run, want)
	}
}

// newRig starts a keeper with a webhook to rig.hook and a school of
// capacity koi. Its lease is the default: nothing here tests failover,
// and on a starved machine the package's 1 s test lease expires between
// slow polls, pausing the school's koi (their canceled calls then read as
// a drop in success rate to the very rules under test).
func newRig(t *testing.T, capacity int) *rig {
	t.Helper()
	r := &rig{hook: newReceiver(t, nil), dir: t.TempDir()}
	r.k = openKeeper(t, r.dir, func(c *Config) { c.Lease = DefaultLease })
	addHook(t, r.k, WebhookSpec{Name: "team", URL: r.hook.srv.URL + "/koipond"})
	s, err := school.Open(context.Background(), school.Config{ID: "s1", NATSURL: r.k.NATSURL(), NATSNKeySeedFile: r.k.SchoolNKeyFile(), Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := r.k.PutBehaviorSet(context.Background(), "test", "guard", []behaviors.File{{Name: "guard.json", Data: []byte(guardSet)}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// newPond starts a pond without rate limits, faults given.
func newPond(t *testing.T, inject map[string]pond.Fault) *pond.Server {
	t.Helper()
	p, err := pond.Open(context.Background(), pond.Config{Addr: "127.0.0.1:0", Users: 200, Channels: 5, DisableRateLimits: true, Inject: inject})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// spec is a run of koi against p at time scale 120.
func spec(name string, p *pond.Server, koi int) RunSpec {
	return RunSpec{Name: name, BehaviorSet: "guard", Koi: koi, TimeScale: 120,
		Target: state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}}
}

func (r *rig) run(id string) *state.Run { return r.k.State().Run(nil, id) }

// auditWith returns the audit entries whose actor and detail contain the
// given strings.
func auditWith(k *Keeper, actor, detail string) []*state.AuditEntry {
	var out []*state.AuditEntry
	for _, e := range k.State().Audit(nil, 0, 10000) {
		if strings.Contains(e.Actor, actor) && strings.Contains(e.Detail, detail) {
			out = append(out, e)
		}
	}
	return out
}

// pondSet boots koi at pond and has each call auth.test and
// conversations.list once a (scaled) minute.
const pondSet = `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {
    "auth": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
    "list": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "conversations.list", "args": {"limit": "5"}}}]}}}`

// openPond starts a pond on loopback with the given faults.
func openPond(t testing.TB, inject map[string]pond.Fault) *pond.Server {
	t.Helper()
	p, err := pond.Open(context.Background(), pond.Config{Users: 200, Channels: 5, DisableRateLimits: true, Inject: inject})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// openSchool starts a real school polling k at natsURL, with k's school
// credentials.
func openSchool(t testing.TB, k *Keeper, natsURL, id string, capacity int) *school.School {
	t.Helper()
	s, err := school.Open(context.Background(), school.Config{ID: id, NATSURL: natsURL, NATSNKeySeedFile: k.SchoolNKeyFile(), Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pondRun creates a run of koi koi against p at time scale 60 (a behavior
// minute lasts a second), ending after secs seconds (0: always-on).
func pondRun(t testing.TB, k *Keeper, p *pond.Server, name string, koi int, secs float64) *state.Run {
	t.Helper()
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "pond", []behaviors.File{{Name: "pond.json", Data: []byte(pondSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: name, BehaviorSet: "pond", Koi: koi, TimeScale: 60, DurationSecs: secs,
		Target: state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// deref returns *f, or NaN for nil.
func deref(f *float64) float64 {
	if f == nil {
		return math.NaN()
	}
	return *f
}

// finalReport waits for a run's final report.
func finalReport(t testing.TB, k *Keeper, run string, d time.Duration) *state.Report {
	t.Helper()
	var rep *state.Report
	wiretest.WaitFor(t, d, "the final report", func() error {
		if rep = k.State().Report(nil, run); rep == nil {
			return fmt.Errorf("no final report of %s yet", run)
		}
		return nil
	})
	return rep
}

// runSchools polls with every school until the test ends.
func runSchools(t testing.TB, schools ...*fakeSchool) (stop func(*fakeSchool)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	cancels := map[*fakeSchool]context.CancelFunc{}
	for _, s := range schools {
		sctx, scancel := context.WithCancel(ctx)
		cancels[s] = scancel
		s.run(sctx, &wg)
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func(s *fakeSchool) { cancels[s]() }
}

func span(s *fakeSchool, run string) int {
	from, to := s.holds(run)
	return to - from
}

// schoolConn connects to k's NATS as a school does: with the school
// credentials of the embedded server (none for an external test server
// without authentication), replies under the school inbox prefix.
func schoolConn(t testing.TB, k *Keeper, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.CustomInboxPrefix(wire.SchoolInboxPrefix)}, opts...)
	if f := k.SchoolNKeyFile(); f != "" {
		seed, err := nats.NkeyOptionFromSeed(f)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, seed)
	}
	nc, err := nats.Connect(k.NATSURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// keeperConn connects with the keeper's own credentials (what koipond
// stop --nats uses from the data directory).
func keeperConn(t testing.TB, k *Keeper) *nats.Conn {
	t.Helper()
	seed, err := nats.NkeyOptionFromSeed(k.creds.keeperFile)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(k.NATSURL(), seed)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// samePortNATS returns an option giving every keeper opened with it the
// same embedded NATS port, and its URL: a keeper reopened on the same data
// dir is where its schools had it.
func samePortNATS(t testing.TB) (url string, opt func(*Config)) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	return "nats://" + addr, func(c *Config) { c.NATSListen = addr }
}

// freePort returns a loopback TCP port free right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
