package school_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A behavior set for pond: boot opens the websocket, one behavior calls
// auth.test once every koi-minute.
const pondSet = `{
  "boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`

// addSet registers a behavior set with the fake keeper and returns its hash.
func addSet(t testing.TB, k *fakeKeeper, src string) string {
	t.Helper()
	f := behaviors.File{Name: "set.json", Data: []byte(src)}
	set, diags := behaviors.Parse(f)
	if set == nil {
		t.Fatal(diags)
	}
	k.set(func(k *fakeKeeper) { k.blobs[set.Hash] = []wire.File{{Name: f.Name, Data: f.Data}} })
	return set.Hash
}

func openSchool(t testing.TB, url string, cfg school.Config) *school.School {
	t.Helper()
	cfg.NATSURL = url
	s, err := school.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPond(t testing.TB) *pond.Server {
	t.Helper()
	p, err := pond.Open(context.Background(), pond.Config{Users: 200, Channels: 10, DisableRateLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func requests(p *pond.Server, method string) uint64 {
	return p.Stats().Requests[method]["200"]
}

// The whole life of an assignment against pond: koi boot no faster than
// the ramp, behaviors reach pond at their rate, pause silences them while
// websockets stay open, resume brings them back without a new boot, stop
// closes every websocket.
func TestAssignmentLifecycleAgainstPond(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	hash := addSet(t, k, pondSet)
	const n, ramp = 40, 20.0
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = []wire.Assignment{{Run: "r1", From: 0, To: n, Ramp: ramp, Spec: wire.RunSpec{
			Name: "lifecycle", BehaviorSet: hash, APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}", TimeScale: 60}}}
	})
	s := openSchool(t, url, school.Config{ID: "s1"})

	// Ramp: never more koi than ramp × elapsed (+1 for the first).
	start := time.Now()
	for {
		st := s.Status()
		running := st.KoiRunning
		if lim := int(ramp*time.Since(start).Seconds()) + 2; running > lim {
			t.Fatalf("%d koi running after %v: faster than the %v/s ramp", running, time.Since(start), ramp)
		}
		if p.Stats().WebsocketsOpen == n {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("only %d of %d websockets after 15s", p.Stats().WebsocketsOpen, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); took < time.Duration(float64(n-2)/ramp*float64(time.Second)) {
		t.Errorf("%d koi connected in %v: the ramp was not honoured", n, took)
	}
	if got := requests(p, "rtm.connect"); got != n {
		t.Errorf("%d rtm.connect calls, want one boot per koi (%d)", got, n)
	}

	// Behaviors: f = 1 at time scale 60 is one call per koi per second.
	before := requests(p, "auth.test")
	time.Sleep(3 * time.Second)
	got := float64(requests(p, "auth.test") - before)
	if want := float64(n * 3); got < 0.8*want || got > 1.2*want {
		t.Errorf("%v auth.test calls in 3s, want about %v", got, want)
	}

	// Pause (pushed on the control subject): nothing reaches pond.
	k.publish(wire.Control{Epoch: 2, State: wire.Paused, By: "test", At: time.Now()})
	time.Sleep(200 * time.Millisecond)
	paused := p.Stats().RequestsTotal
	time.Sleep(1500 * time.Millisecond)
	if after := p.Stats().RequestsTotal; after != paused {
		t.Errorf("%d requests reached pond while paused", after-paused)
	}
	if ws := p.Stats().WebsocketsOpen; ws != n {
		t.Errorf("pause closed websockets: %d open, want %d", ws, n)
	}

	// Resume: behaviors again, no second boot.
	k.publish(wire.Control{Epoch: 3, State: wire.Running, At: time.Now()})
	wiretest.Until(t, 5*time.Second, "requests after resume", func() bool { return p.Stats().RequestsTotal > paused+uint64(n/2) })
	if got := requests(p, "rtm.connect"); got != n {
		t.Errorf("resume booted koi again: %d rtm.connect calls", got)
	}

	// An old epoch is ignored.
	k.publish(wire.Control{Epoch: 2, State: wire.Paused, At: time.Now()})
	time.Sleep(300 * time.Millisecond)
	if st := s.Status(); st.Switch != wire.Running || st.Epoch != 3 {
		t.Errorf("stale epoch applied: %+v", st)
	}

	// Stop: every websocket closes, fast.
	stopAt := time.Now()
	k.publish(wire.Control{Epoch: 4, State: wire.Stopped, At: time.Now()})
	wiretest.Until(t, 2*time.Second, "all websockets closed", func() bool { return p.Stats().WebsocketsOpen == 0 })
	t.Logf("stop: all %d websockets closed %v after the control message", n, time.Since(stopAt))
	wiretest.Until(t, 3*time.Second, "the stop confirmed in a poll", func() bool {
		pr, ok := k.lastPoll("s1")
		return ok && pr.KoiRunning == 0 && pr.WebsocketsOpen == 0 && pr.Epoch == 4
	})

	// Metrics reports arrived with the run's api keys.
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.reports) < 3 {
		t.Fatalf("%d metrics reports", len(k.reports))
	}
	var framesIn uint64
	for _, r := range k.reports {
		for _, rm := range r.Runs {
			framesIn += rm.FramesIn
		}
	}
	if framesIn < n { // at least each koi's hello
		t.Errorf("reports counted %d frames in", framesIn)
	}
}

// With no reply from the keeper for the lease, the school pauses itself;
// after two leases it closes its koi; it resumes when the keeper answers.
func TestLeaseExpiryPauses(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	hash := addSet(t, k, pondSet)
	k.set(func(k *fakeKeeper) {
		k.leaseMS = 1000
		k.assignments["*"] = []wire.Assignment{{Run: "r1", From: 0, To: 10, Spec: wire.RunSpec{
			BehaviorSet: hash, APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}", TimeScale: 60}}}
	})
	s := openSchool(t, url, school.Config{ID: "s1"})
	wiretest.Until(t, 10*time.Second, "10 websockets", func() bool { return p.Stats().WebsocketsOpen == 10 })
	k.set(func(k *fakeKeeper) { k.silent = true })
	wiretest.Until(t, 3*time.Second, "self-pause", func() bool { return s.Status().SelfPaused })
	time.Sleep(100 * time.Millisecond)
	before := p.Stats().RequestsTotal
	time.Sleep(500 * time.Millisecond)
	if after := p.Stats().RequestsTotal; after != before {
		t.Errorf("%d requests while self-paused", after-before)
	}
	// Self-paused, the koi keep their websockets until two leases have
	// passed since the last answered poll; a starved machine may reach
	// that before this check, which then has nothing to say.
	ws, lastPoll := p.Stats().WebsocketsOpen, s.Status().LastPoll
	if since := time.Since(lastPoll); since < 2*time.Second-200*time.Millisecond && ws != 10 {
		t.Errorf("self-pause closed websockets (%d open %v after the last answered poll)", ws, since)
	} else if since >= 2*time.Second-200*time.Millisecond {
		t.Logf("the check ran %v after the last answered poll, past the two 1 s leases: websockets not checked while self-paused", since)
	}
	// Two leases without the keeper: its koi belong to other schools now,
	// so the websockets close.
	wiretest.Until(t, 3*time.Second, "websockets closed after two leases", func() bool { return p.Stats().WebsocketsOpen == 0 })
	k.set(func(k *fakeKeeper) { k.silent = false })
	wiretest.Until(t, 3*time.Second, "resume after the keeper answers", func() bool { return !s.Status().SelfPaused })
	wiretest.Until(t, 5*time.Second, "koi back", func() bool { return p.Stats().WebsocketsOpen == 10 })
	wiretest.Until(t, 3*time.Second, "requests again", func() bool { return p.Stats().RequestsTotal > before+5 })
}

// recorder is an API server recording when each call arrived.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]time.Time
	srv   *httptest.Server
}

func newRecorder(t testing.TB) *recorder {
	r := &recorder{calls: map[string][]time.Time{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m := strings.TrimPrefix(req.URL.Path, "/api/")
		r.mu.Lock()
		r.calls[m] = append(r.calls[m], time.Now())
		r.mu.Unlock()
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) times(method string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls[method]...)
}

// probeAt sends n GET requests to url at the instant at, each from its
// own goroutine after a timer, as a launch's koi do.
func probeAt(t testing.TB, at time.Time, url string, n int) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-time.NewTimer(time.Until(at)).C
			if resp, err := http.Get(url); err == nil {
				resp.Body.Close()
			}
		}()
	}
	return &wg
}

// Two schools whose clocks are off by +2 s and −3 s start a formation at
// the keeper's instant: every first step arrives within 50 ms of it.
func TestFormationStartsTogetherDespiteSkew(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	rec := newRecorder(t)
	hash := addSet(t, k, `{"behaviors": {}}`)
	form := []byte(`{"name": "herd", "begin_within_secs": 0, "percent": 100,
	  "sequence": {"steps": [{"request": {"type": "api", "method": "herd.go"}}]}}`)
	k.set(func(k *fakeKeeper) {
		k.blobs["formhash"] = []wire.File{{Name: "herd.json", Data: form}}
		spec := wire.RunSpec{BehaviorSet: hash, APIBase: rec.srv.URL + "/api", Token: "t{{.Index}}"}
		k.assignments["a"] = []wire.Assignment{{Run: "r1", From: 0, To: 5, Spec: spec}}
		k.assignments["b"] = []wire.Assignment{{Run: "r1", From: 5, To: 10, Spec: spec}}
	})
	a := openSchool(t, url, school.Config{ID: "a", Clock: func() time.Time { return time.Now().Add(2 * time.Second) }})
	b := openSchool(t, url, school.Config{ID: "b", Clock: func() time.Time { return time.Now().Add(-3 * time.Second) }})
	wiretest.Until(t, 10*time.Second, "koi ready on both schools", func() bool {
		sa, sb := a.Status(), b.Status()
		return len(sa.Runs) == 1 && sa.Runs[0].Koi.Connected == 5 && len(sb.Runs) == 1 && sb.Runs[0].Koi.Connected == 5
	})
	time.Sleep(time.Second) // a few polls for the clock estimate
	startAt := time.Now().Add(1500 * time.Millisecond)
	// Probes take the koi's path at the instant (a timer on its own
	// goroutine, then a request to the recorder): how late they arrive is
	// how late this busy machine lets anything arrive.
	probes := probeAt(t, startAt, rec.srv.URL+"/api/probe", 10)
	k.set(func(k *fakeKeeper) {
		k.launches = []wire.Launch{{ID: "l1", Run: "r1", Formation: "formhash", Name: "herd", Start: startAt, Count: 5}}
	})
	wiretest.Until(t, 5*time.Second, "10 first steps", func() bool { return len(rec.times("herd.go")) == 10 })
	probes.Wait()
	var late time.Duration
	for _, at := range rec.times("probe") {
		late = max(late, at.Sub(startAt))
	}
	// Each school's error in estimating the keeper's clock (a is 2 s
	// ahead, b 3 s behind).
	clockErr := max(time.Duration(math.Abs(a.Status().ClockOffsetMS+2000)*float64(time.Millisecond)),
		time.Duration(math.Abs(b.Status().ClockOffsetMS-3000)*float64(time.Millisecond)))
	t.Logf("probes arrived up to %v after the instant; clock estimates off by up to %v", late, clockErr)
	for _, at := range rec.times("herd.go") {
		if d := at.Sub(startAt); d < -5*time.Millisecond-clockErr || d > 50*time.Millisecond+late+clockErr {
			t.Errorf("a koi started %v from the launch instant (probes %v late, clock error %v)", d, late, clockErr)
		}
	}
	// A poll carrying each school's launch status, with every start and
	// every koi's end (the recorder answers ok: all finished).
	wiretest.Until(t, 5*time.Second, "both schools to report their starts", func() bool {
		for _, id := range []string{"a", "b"} {
			if pr, _ := k.lastPoll(id); len(pr.Launches) != 1 || pr.Launches[0].LastStart.IsZero() ||
				pr.Launches[0].Finished+pr.Launches[0].Failed+pr.Launches[0].Cancelled != 5 {
				return false
			}
		}
		return true
	})
	bound := 50*time.Millisecond + late + clockErr
	for _, id := range []string{"a", "b"} {
		pr, _ := k.lastPoll(id)
		if len(pr.Launches) != 1 || pr.Launches[0].Started != 5 || pr.Launches[0].Finished != 5 {
			t.Errorf("school %s reported %+v", id, pr.Launches)
		} else if ls := pr.Launches[0]; ls.FirstStart.Sub(startAt).Abs() > bound || ls.LastStart.Sub(startAt).Abs() > bound {
			// The school reports real starts in keeper time, skew removed.
			t.Errorf("school %s reports starts %v and %v from the instant", id, ls.FirstStart.Sub(startAt), ls.LastStart.Sub(startAt))
		}
		if off := pr.OffsetMS; id == "a" && (off > -1950 || off < -2050) || id == "b" && (off < 2950 || off > 3050) {
			t.Errorf("school %s clock offset estimate %.1f ms", id, off)
		}
	}
}

// Assignments the school must not run are refused with the reason and
// reported; nothing is contacted.
func TestRefusedAssignments(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	good := addSet(t, k, `{"behaviors": {}}`)
	k.set(func(k *fakeKeeper) {
		k.blobs["broken"] = []wire.File{{Name: "broken.json", Data: []byte(`{"behaviors": {"x": {"frequency": 2}}}`)}}
		k.assignments["*"] = []wire.Assignment{
			{Run: "outside", From: 0, To: 5, Spec: wire.RunSpec{BehaviorSet: good, APIBase: "http://192.0.2.10:9090/api"}},
			{Run: "broken", From: 5, To: 10, Spec: wire.RunSpec{BehaviorSet: "broken", APIBase: "http://127.0.0.1:1/api"}},
			{Run: "missing", From: 10, To: 15, Spec: wire.RunSpec{BehaviorSet: "nope", APIBase: "http://127.0.0.1:1/api"}},
			{Run: "badtoken", From: 15, To: 20, Spec: wire.RunSpec{BehaviorSet: good, APIBase: "http://127.0.0.1:1/api", Token: "{{.Nope}}"}},
		}
	})
	openSchool(t, url, school.Config{ID: "s1"})
	want := map[string]string{
		"outside":  "not in --allow-target",
		"broken":   "outside [0, 1]",
		"missing":  "could not be fetched",
		"badtoken": "token template",
	}
	wiretest.Until(t, 5*time.Second, "refusals reported", func() bool {
		pr, ok := k.lastPoll("s1")
		if !ok || len(pr.Runs) != 4 {
			return false
		}
		for _, r := range pr.Runs {
			if !strings.Contains(r.Refused, want[r.Run]) || r.Koi != (wire.KoiCounts{}) {
				return false
			}
		}
		return true
	})
}

// Garbage and unknown versions on the control subject are counted and do
// not disturb the school.
func TestBadControlMessages(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	s := openSchool(t, url, school.Config{ID: "s1"})
	wiretest.Until(t, 5*time.Second, "first poll", func() bool { _, ok := k.lastPoll("s1"); return ok })
	for _, raw := range []string{`nonsense`, `{"v": 99, "epoch": 50, "state": "stopped"}`, `{"v": 1, "epoch": 51, "state": "exploded"}`} {
		k.nc.Publish(wire.SubjectControl, []byte(raw))
	}
	k.nc.Flush()
	wiretest.Until(t, 2*time.Second, "bad messages counted", func() bool { return s.Status().BadMessages >= 2 })
	if st := s.Status(); st.Switch != wire.Running || st.Epoch != 1 {
		t.Errorf("a bad message changed the switch: %+v", st)
	}
}

// /healthz says what the school is doing (503 while it has paused itself)
// and /metrics exposes koi by state for Prometheus.
func TestStatusServer(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	hash := addSet(t, k, pondSet)
	k.set(func(k *fakeKeeper) {
		k.leaseMS = 600
		k.assignments["*"] = []wire.Assignment{{Run: "r1", From: 0, To: 5, Spec: wire.RunSpec{
			BehaviorSet: hash, APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}}}
	})
	s := openSchool(t, url, school.Config{ID: "s1"})
	addr, err := s.ServeHTTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	wiretest.Until(t, 10*time.Second, "5 koi", func() bool { return p.Stats().WebsocketsOpen == 5 })
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/healthz")
	var st school.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || !st.NATSConnected || st.WebsocketsOpen != 5 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	code, body = get("/metrics")
	if code != 200 || !strings.Contains(body, `koipond_school_koi{run="r1",state="connected"} 5`) || !strings.Contains(body, "koipond_school_websockets_open 5") ||
		!strings.Contains(body, "koipond_school_memory_limit_bytes ") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	k.set(func(k *fakeKeeper) { k.silent = true })
	wiretest.Until(t, 3*time.Second, "self-pause", func() bool { return s.Status().SelfPaused })
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"self_paused":true`) {
		t.Errorf("/healthz while self-paused: %d %s", code, body)
	}
}

// Close (what SIGTERM does) stops every koi with a close frame and returns
// well within 5 s.
func TestCloseIsPrompt(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	hash := addSet(t, k, pondSet)
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = []wire.Assignment{{Run: "r1", From: 0, To: 30, Spec: wire.RunSpec{
			BehaviorSet: hash, APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}", TimeScale: 60}}}
	})
	s, err := school.Open(context.Background(), school.Config{ID: "s1", NATSURL: url})
	if err != nil {
		t.Fatal(err)
	}
	wiretest.Until(t, 10*time.Second, "30 koi", func() bool { return p.Stats().WebsocketsOpen == 30 })
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	wiretest.Until(t, time.Second, "websockets closed at pond", func() bool { return p.Stats().WebsocketsOpen == 0 })
	// The school flushed its last report to NATS before Close returned;
	// the stand-in keeper's subscription receives it asynchronously.
	wiretest.Until(t, 2*time.Second, "a final metrics report ending after Close began", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return len(k.reports) > 0 && !k.reports[len(k.reports)-1].End.Before(start)
	})
}

// A keeper slower to answer than the poll interval (and than a second: a
// busy keeper, or a school whose NATS reader waits behind thousands of
// koi) does not cost the school its lease: each poll waits for the reply
// instead of giving up and asking again.
func TestSlowKeeperKeepsLease(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	const lease = 3 * time.Second
	k.set(func(k *fakeKeeper) {
		k.leaseMS = lease.Milliseconds()
		k.delay = 1100 * time.Millisecond
	})
	s := openSchool(t, url, school.Config{ID: "s1", Lease: lease})
	first := s.Status().LastPoll
	answered := map[time.Time]bool{}
	deadline := time.Now().Add(2 * lease)
	for time.Now().Before(deadline) {
		st := s.Status()
		if st.SelfPaused {
			t.Fatalf("self-paused after %d answered polls and %d failed ones", len(answered), st.PollFailures)
		}
		if st.LastPoll.After(first) {
			answered[st.LastPoll] = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := s.Status()
	if st.PollFailures != 0 {
		t.Errorf("%d polls gave up on the slow keeper", st.PollFailures)
	}
	if len(answered) < 3 {
		t.Errorf("%d polls answered in two leases, want at least 3", len(answered))
	}
}
