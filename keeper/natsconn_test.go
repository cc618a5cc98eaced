package keeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// healthz returns /healthz's status code and body.
func healthz(t testing.TB, k *Keeper) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + k.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// probeWrite writes one audit entry through to the KV bucket.
func probeWrite(ctx context.Context, k *Keeper) error {
	return k.store.Write(ctx, func(tx *state.Txn) error {
		return tx.Audit("test", "probe", "nats", "write")
	})
}

// assigned sums the koi of run the schools hold per their last replies.
func assigned(run string, schools ...*fakeSchool) int {
	n := 0
	for _, s := range schools {
		from, to := s.holds(run)
		n += to - from
	}
	return n
}

// hostilePoll sends one raw poll and returns the keeper's reply.
func hostilePoll(t testing.TB, nc *nats.Conn, req *wire.PollRequest) *wire.PollReply {
	t.Helper()
	data, err := wire.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(wire.SubjectPoll, data, 5*time.Second)
	if err != nil {
		t.Fatalf("hostile poll got no reply: %v", err)
	}
	var rep wire.PollReply
	if err := wire.Decode(msg.Data, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// A poll with a 2,100-character school id made the keeper write a KV key
// longer than NATS's control line: the server closed the keeper's
// connection for good. A poll with capacity 2^63-1 overflowed the
// scheduler's capacity sum: every run dropped to 0 koi. Both are refused
// now, counted by cause, and the other schools keep their koi.
func TestHostilePollsRefused(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	a, b := newFakeSchool(t, k, "a", 1000), newFakeSchool(t, k, "b", 1000)
	a.run(ctx, &wg)
	b.run(ctx, &wg)
	wiretest.WaitFor(t, 10*time.Second, "all 100 koi assigned", func() error {
		if n := assigned(run.ID, a, b); n != 100 {
			return fmt.Errorf("%d of 100 koi assigned", n)
		}
		return nil
	})

	nc := schoolConn(t, k) // what any school may send
	defer nc.Close()
	for _, tc := range []struct {
		name  string
		req   *wire.PollRequest
		cause string
	}{
		{"2,100-character id", &wire.PollRequest{School: strings.Repeat("x", 2100), Capacity: 100, Clock: time.Now()}, "poll: invalid school"},
		{"capacity 2^63-1", &wire.PollRequest{School: "liar", Capacity: math.MaxInt64, Clock: time.Now()}, "poll: invalid capacity"},
		{"negative koi counts", &wire.PollRequest{School: "liar", Capacity: 10, Clock: time.Now(),
			Runs: []wire.RunStatus{{Run: run.ID, To: 10, Koi: wire.KoiCounts{Connected: -1 << 40}}}}, "poll: invalid runs.koi.connected"},
		{"id with a KV wildcard", &wire.PollRequest{School: "a.>", Capacity: 10, Clock: time.Now()}, "poll: invalid school"},
	} {
		before := k.Rejections()[tc.cause]
		for range 3 { // counted each time, logged once
			if rep := hostilePoll(t, nc, tc.req); rep.Error == "" || len(rep.Assignments) != 0 {
				t.Errorf("%s: accepted: %+v", tc.name, rep)
			}
		}
		if got := k.Rejections()[tc.cause] - before; got != 3 {
			t.Errorf("%s: rejections[%q] = %d, want 3 (all: %v)", tc.name, tc.cause, got, k.Rejections())
		}
	}
	if k.State().School(nil, "liar") != nil {
		t.Error("a school that lied was registered")
	}

	// The keeper is healthy, has not needed a new connection, still
	// writes, and the honest schools keep every koi.
	if code, body := healthz(t, k); code != http.StatusOK || !strings.Contains(body, `"redials":0`) {
		t.Errorf("healthz after the attack: %d %s", code, body)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := probeWrite(wctx, k); err != nil {
		t.Errorf("write after the attack: %v", err)
	}
	k.Kick()
	time.Sleep(3 * testPoll) // a few scheduler passes and polls
	if n := assigned(run.ID, a, b); n != 100 {
		t.Errorf("after the attack %d of 100 koi assigned", n)
	}
	resp, err := http.Get("http://" + k.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `koipond_keeper_rejected_total{cause="poll: invalid school"} 6`) {
		t.Errorf("/metrics lacks the rejection by cause:\n%s", body)
	}
}

// Metrics reports and blob requests outside their bounds are refused
// before they are acted on.
func TestHostileReportsRefused(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 10)
	nc := schoolConn(t, k) // what any school may send
	defer nc.Close()
	rep, _ := wire.Encode(&wire.MetricsReport{School: "s1", End: time.Now(),
		Runs: []wire.RunMetrics{{Run: run.ID, BytesIn: math.MaxUint64}}})
	if err := nc.Publish(wire.SubjectMetrics, rep); err != nil {
		t.Fatal(err)
	}
	req, _ := wire.Encode(&wire.BlobRequest{Kind: wire.BlobFormation, Hash: strings.Repeat("h", 5000)})
	msg, err := nc.Request(wire.SubjectBlob, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var br wire.BlobReply
	if err := wire.Decode(msg.Data, &br); err != nil || br.Error == "" || len(br.Error) > 500 {
		t.Errorf("oversized blob hash: %v %q", err, br.Error)
	}
	wiretest.WaitFor(t, 5*time.Second, "the bad metrics and blob rejections", func() error {
		r := k.Rejections()
		if r["metrics: invalid runs.traffic"] != 1 || r["blob: invalid hash"] != 1 {
			return fmt.Errorf("rejections %v", r)
		}
		return nil
	})
}

// waitResumed polls the keeper through school until a poll is answered
// with its koi and a write goes through to the bucket; it returns how
// long that took from since.
func waitResumed(t testing.TB, k *Keeper, s *fakeSchool, run string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	var polled, wrote time.Duration
	deadline := since.Add(within)
	for time.Now().Before(deadline) && (polled == 0 || wrote == 0) {
		if polled == 0 {
			if rep := s.poll(); rep != nil && rep.Error == "" && len(rep.Assignments) > 0 {
				polled = time.Since(since)
			}
		}
		if wrote == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			if probeWrite(ctx, k) == nil {
				wrote = time.Since(since)
			}
			cancel()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if polled == 0 || wrote == 0 {
		code, body := healthz(t, k)
		t.Fatalf("not resumed within %v: poll after %v, write after %v; healthz %d %s", within, polled, wrote, code, body)
	}
	return max(polled, wrote)
}

// The server closes the keeper's connection for good (here: a protocol
// violation, a subject beyond the server's control line, the same way the
// over-long KV key did): the keeper dials a new connection, its
// responders and KV handle come back, and polls and writes resume within
// 5 s. /healthz says degraded meanwhile (when caught) and ok after.
func TestKeeperRedialsClosedConnection(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 20)
	s := newFakeSchool(t, k, "s1", 100)
	wiretest.WaitFor(t, 10*time.Second, "20 koi assigned", func() error {
		if s.poll(); assigned(run.ID, s) != 20 {
			return errors.New("koi not assigned yet")
		}
		return nil
	})
	for round := 1; round <= 3; round++ { // every closed connection is redialed
		old := k.conn()
		start := time.Now()
		if err := old.Publish(strings.Repeat("x", 8000), nil); err != nil {
			t.Fatalf("round %d: publish: %v", round, err)
		}
		_ = old.Flush()
		wiretest.WaitFor(t, 5*time.Second, "the server to close the old connection", func() error {
			if !old.IsClosed() {
				return errors.New("the server has not closed the connection")
			}
			return nil
		})
		took := waitResumed(t, k, s, run.ID, start, 5*time.Second)
		t.Logf("round %d: connection closed by the server (%v); polls and writes resumed after %v", round, old.LastError(), took.Round(time.Millisecond))
		if k.conn() == old {
			t.Errorf("round %d: still on the closed connection", round)
		}
		wiretest.WaitFor(t, 5*time.Second, "healthz to count the redial", func() error {
			if code, body := healthz(t, k); code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"redials":%d`, round)) {
				return fmt.Errorf("healthz %d %s", code, body)
			}
			return nil
		})
	}
	// The switch still reaches schools on the new connection.
	sub, err := s.nc.SubscribeSync(wire.SubjectControl)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.nc.Flush()
	if _, err := k.SetSwitch(context.Background(), "test", wire.Paused); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("no switch published after the redial: %v", err)
	}
}

// The NATS server restarts under the keeper (same port, same store): the
// keeper is degraded while it is down, and polls and writes resume
// within 5 s of the server's return.
func TestKeeperSurvivesServerRestart(t *testing.T) {
	port, store := freePort(t), t.TempDir()
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{Port: port, StoreDir: store}).Server
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.NATS = url })
	run := seedRun(t, k, 20)
	s := newFakeSchool(t, k, "s1", 100)
	wiretest.WaitFor(t, 10*time.Second, "20 koi assigned", func() error {
		if s.poll(); assigned(run.ID, s) != 20 {
			return errors.New("koi not assigned yet")
		}
		return nil
	})
	ns.Shutdown()
	ns.WaitForShutdown()
	wiretest.WaitFor(t, 5*time.Second, "healthz degraded with NATS down", func() error {
		if code, body := healthz(t, k); code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"degraded"`) {
			return fmt.Errorf("healthz with NATS down: %d %s", code, body)
		}
		return nil
	})
	ns = wiretest.StartNATS(t, wiretest.NATSConfig{Port: port, StoreDir: store}).Server
	start := time.Now()
	took := waitResumed(t, k, s, run.ID, start, 5*time.Second)
	t.Logf("NATS server restarted; polls and writes resumed after %v", took.Round(time.Millisecond))
	wiretest.WaitFor(t, 5*time.Second, "healthz ok after the restart", func() error {
		if code, body := healthz(t, k); code != http.StatusOK {
			return fmt.Errorf("healthz after the restart: %d %s", code, body)
		}
		return nil
	})
}

// The keeper does not log a state change more than once.
func TestNATSLinkLogsOncePerChange(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	h := slog.NewTextHandler(writerFunc(func(p []byte) {
		mu.Lock()
		lines = append(lines, string(p))
		mu.Unlock()
	}), nil)
	l := newNATSLink(slog.New(h), "nats://127.0.0.1:1", nil)
	l.set(linkConnected, "") // the first connection: silent
	for range 5 {
		l.set(linkReconnecting, "down")
	}
	l.set(linkConnected, "")
	l.set(linkConnected, "")
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 2 {
		t.Errorf("logged %d lines, want 2:\n%s", len(lines), strings.Join(lines, ""))
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
