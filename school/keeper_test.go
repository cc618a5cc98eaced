package school_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// fakeKeeper stands in for the keeper (until the school tests move to the
// real one): it answers polls with what the test sets, serves blobs, and
// records what schools report.
type fakeKeeper struct {
	t   testing.TB
	nc  *nats.Conn
	key nkeys.KeyPair // signs the switches, as the keeper does

	mu          sync.Mutex
	sw          wire.Control
	assignments map[string][]wire.Assignment // by school id; "*" for every school
	launches    []wire.Launch
	blobs       map[string][]wire.File
	blobAsked   map[string]int // blob requests by hash
	pollsSeen   int
	polls       map[string]wire.PollRequest
	reports     []wire.MetricsReport
	silent      bool
	pollMS      int64
	leaseMS     int64
	delay       time.Duration // how long a poll waits for its reply (a busy keeper)
}

func newFakeKeeper(t testing.TB, url string, opts ...nats.Option) *fakeKeeper {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	key, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKeeper{t: t, nc: nc, key: key, sw: wire.Control{Epoch: 1, State: wire.Running},
		assignments: map[string][]wire.Assignment{}, blobs: map[string][]wire.File{}, blobAsked: map[string]int{},
		polls: map[string]wire.PollRequest{}, pollMS: 200, leaseMS: 10000}
	nc.Subscribe(wire.SubjectPoll, k.onPoll)
	nc.Subscribe(wire.SubjectBlob, k.onBlob)
	nc.Subscribe(wire.SubjectMetrics, func(m *nats.Msg) {
		var r wire.MetricsReport
		if wire.Decode(m.Data, &r) == nil {
			k.mu.Lock()
			k.reports = append(k.reports, r)
			k.mu.Unlock()
		}
	})
	nc.Flush()
	t.Cleanup(nc.Close)
	return k
}

func (k *fakeKeeper) onPoll(m *nats.Msg) {
	var req wire.PollRequest
	if err := wire.Decode(m.Data, &req); err != nil {
		k.t.Errorf("school sent a bad poll: %v", err)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.polls[req.School] = req
	k.pollsSeen++
	if k.silent {
		return
	}
	as := k.assignments[req.School]
	if as == nil {
		as = k.assignments["*"]
	}
	rep := &wire.PollReply{Switch: k.sw, KeeperTime: time.Now(), PollIntervalMS: k.pollMS, LeaseMS: k.leaseMS,
		Assignments: append([]wire.Assignment(nil), as...), Launches: k.launches}
	rep.KeeperKey, _ = k.key.PublicKey()
	k.sign(&rep.Switch)
	for i := range rep.Assignments {
		k.sign(&rep.Assignments[i].Switch)
	}
	b, _ := wire.Encode(rep)
	if k.delay > 0 {
		time.AfterFunc(k.delay, func() { m.Respond(b) })
		return
	}
	m.Respond(b)
}

func (k *fakeKeeper) onBlob(m *nats.Msg) {
	var req wire.BlobRequest
	if err := wire.Decode(m.Data, &req); err != nil {
		return
	}
	k.mu.Lock()
	files, ok := k.blobs[req.Hash]
	k.blobAsked[req.Hash]++
	k.mu.Unlock()
	rep := &wire.BlobReply{Kind: req.Kind, Hash: req.Hash, Files: files}
	if !ok {
		rep.Error = "no such blob"
	}
	b, _ := wire.Encode(rep)
	m.Respond(b)
}

// publish pushes a switch change on the control subject, as the keeper's
// emergency stop does.
func (k *fakeKeeper) publish(c wire.Control) {
	k.mu.Lock()
	if c.Run == "" {
		k.sw = c
	}
	k.mu.Unlock()
	k.sign(&c)
	b, _ := wire.Encode(&c)
	if err := k.nc.Publish(wire.SubjectControl, b); err != nil {
		k.t.Fatal(err)
	}
	k.nc.Flush()
}

// sign signs a switch with the fake keeper's key.
func (k *fakeKeeper) sign(c *wire.Control) {
	c.Sig = nil
	sig, err := k.key.Sign(c.SigningBytes())
	if err != nil {
		k.t.Fatal(err)
	}
	c.Sig = sig
}

// waitPolls waits until the school has polled n more times: by then it
// has applied the replies to all but the last of them.
func (k *fakeKeeper) waitPolls(t testing.TB, n int) {
	t.Helper()
	k.mu.Lock()
	since := k.pollsSeen
	k.mu.Unlock()
	wiretest.Until(t, 30*time.Second, fmt.Sprintf("%d more polls", n), func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.pollsSeen >= since+n
	})
}

// pondAssignment assigns koi [0, n) of run, running set against pond
// with the pond's tokens at time scale 60.
func pondAssignment(run string, n int, set string, p *pond.Server) wire.Assignment {
	return wire.Assignment{Run: run, From: 0, To: n, Spec: wire.RunSpec{Name: run, BehaviorSet: set, APIBase: p.URL() + "/api",
		Token: "xoxp-pond-{{.Index}}", TimeScale: 60}}
}

func (k *fakeKeeper) set(f func(k *fakeKeeper)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

func (k *fakeKeeper) lastPoll(school string) (wire.PollRequest, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.polls[school]
	return p, ok
}
