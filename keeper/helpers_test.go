package keeper

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// Fast clocks for tests: schools poll every 100 ms, leases last 1 s.
const (
	testPoll  = 100 * time.Millisecond
	testLease = time.Second
)

// openKeeper starts a keeper with embedded NATS on random ports, its data
// in dir.
func openKeeper(t testing.TB, dir string, mut ...func(*Config)) *Keeper {
	t.Helper()
	cfg := Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dir,
		PollInterval: testPoll, Lease: testLease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mut {
		m(&cfg)
	}
	k, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// checkFor polls cond until it returns nil or d passes.
func checkFor(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
		req.Launches = append(req.Launches, wire.LaunchStatus{Launch: id, Planned: n, Started: n})
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

// api calls the keeper's HTTP API; out, when not nil, receives the JSON.
func api(t testing.TB, k *Keeper, token, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = bytes.NewBufferString(s)
		} else {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
	}
	req, _ := http.NewRequest(method, "http://"+k.HTTPAddr()+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}
