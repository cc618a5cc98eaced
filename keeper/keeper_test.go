package keeper

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		bad  int
	}{
		// Defaults are valid.
		{"defaults", Config{}, 0},
		// API beyond loopback without tokens is refused.
		{"open http", Config{HTTP: "0.0.0.0:8080"}, 1},
		// Embedded NATS beyond loopback is fine with its nkeys, refused
		// without authentication.
		{"open nats", Config{NATSListen: "0.0.0.0:4222"}, 0},
		{"open insecure nats", Config{NATSListen: "0.0.0.0:4222", NATSAuth: NATSAuth{Insecure: true}}, 1},
		// Every problem at once.
		{"many", Config{HTTP: "nope", Replicas: 9, PollInterval: time.Hour, Lease: time.Second}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errs := tc.cfg.Validate(); len(errs) != tc.bad {
				t.Errorf("got %d problems, want %d: %v", len(errs), tc.bad, errs)
			}
		})
	}
}

func TestNonLoopbackWithoutTokensRefused(t *testing.T) {
	_, err := Open(context.Background(), Config{HTTP: "0.0.0.0:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err == nil {
		t.Fatal("keeper started on 0.0.0.0 without tokens")
	}
}

func TestRestartRestoresEverything(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	ctx := context.Background()
	run := seedRun(t, k, 40)
	fm, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)})
	if err != nil {
		t.Fatal(err)
	}
	s := newFakeSchool(t, k, "s1", 100)
	wiretest.WaitFor(t, 5*time.Second, "the school to hold all 40 koi", func() error {
		if _, to := s.holds(run.ID); s.poll() == nil || to != 40 {
			return fmt.Errorf("school holds [0,%d) of 40", to)
		}
		return nil
	})
	s.poll() // report the koi connected
	l, err := k.Launch(ctx, "test", LaunchSpec{Formation: "herd", Run: run.ID, At: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.SetSwitch(ctx, "alice", wire.Paused); err != nil {
		t.Fatal(err)
	}
	epoch := k.store.Epoch()
	audit := len(k.State().Audit(nil, 0, 100))

	// Crash: NATS goes away under the keeper, nothing is flushed.
	k.ns.Shutdown()
	k.ns.WaitForShutdown()
	k.Close()

	k2 := openKeeper(t, dir)
	r := k2.State()
	if b := r.LatestBehaviorSet(nil, "bg"); b == nil || b.Files[0].Content != bgSet {
		t.Errorf("behavior set not restored: %+v", b)
	}
	if f := r.Formation(nil, fm.Hash); f == nil || f.Name != "herd" {
		t.Errorf("formation not restored: %+v", f)
	}
	if got := r.Run(nil, run.ID); got == nil || got.Koi != 40 || got.State != state.RunRunning {
		t.Errorf("run not restored: %+v", got)
	}
	if got := r.Launch(nil, l.ID); got == nil || got.State != state.LaunchPending {
		t.Errorf("launch not restored: %+v", got)
	}
	if g := r.Switch(nil); g.State != wire.Paused || g.Epoch != epoch || g.By != "alice" {
		t.Errorf("switch not restored: %+v (epoch %d)", g, epoch)
	}
	if n := len(r.Audit(nil, 0, 100)); n != audit {
		t.Errorf("audit entries: %d, want %d", n, audit)
	}
	if a := r.AssignmentsOfRun(nil, run.ID); len(a) != 1 || a[0].School != "s1" || a[0].To != 40 {
		t.Errorf("assignments not restored: %+v", a)
	}
	// The school carries on with the same range: no koi rebooted.
	s2 := newFakeSchool(t, k2, "s1", 100)
	rep := s2.poll()
	if rep == nil || len(rep.Assignments) != 1 || rep.Assignments[0].From != 0 || rep.Assignments[0].To != 40 || rep.Switch.State != wire.Paused {
		t.Fatalf("after restart the school is told %+v", rep)
	}
	// Epochs keep increasing.
	g, err := k2.SetSwitch(ctx, "alice", wire.Running)
	if err != nil || g.Epoch != epoch+1 {
		t.Errorf("epoch after restart: %+v %v, want %d", g, err, epoch+1)
	}
}

func TestFailoverWithinLeasePlusPoll(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 100)
	a, b := newFakeSchool(t, k, "a", 1000), newFakeSchool(t, k, "b", 1000)
	stop := runSchools(t, a, b)
	wiretest.WaitFor(t, 5*time.Second, "the per-school ramp", func() error {
		if v := k.RunView(k.State(), run.ID); len(v.Assignments) != 2 || v.Assignments[0].Ramp != 50 {
			return fmt.Errorf("per-school ramp: %+v", v.Assignments)
		}
		if span(a, run.ID) != 50 || span(b, run.ID) != 50 {
			return fmt.Errorf("a %d, b %d", span(a, run.ID), span(b, run.ID))
		}
		return nil
	})
	stop(b)
	died := time.Now()
	wiretest.WaitFor(t, 5*time.Second, "school a to hold 100 koi", func() error {
		if span(a, run.ID) != 100 {
			return fmt.Errorf("a holds %d", span(a, run.ID))
		}
		return nil
	})
	// The keeper notices within lease + half a poll (its pass), and a
	// learns it at its next poll; allow scheduling slack under -race.
	if took := time.Since(died); took > testLease+2*testPoll+300*time.Millisecond {
		t.Errorf("failover took %v; want ≤ lease %v + poll %v", took, testLease, testPoll)
	}
	if v := k.RunView(k.State(), run.ID); v.Assigned != 100 || v.Partial != "" || v.Assignments[0].Ramp != 100 {
		t.Errorf("run view %+v", v)
	}
}

func TestOpenFailsCleanlyWhenPortTaken(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	_, err := OpenWithAPI(context.Background(), Config{HTTP: k.HTTPAddr(), NATSListen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second keeper on %s: %v", k.HTTPAddr(), err)
	}
}

func TestNewSchoolTakesFairShareMovingLeast(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 90)
	a, b := newFakeSchool(t, k, "a", 1000), newFakeSchool(t, k, "b", 1000)
	runSchools(t, a, b)
	wiretest.WaitFor(t, 5*time.Second, "a and b to hold 45 koi each", func() error {
		if span(a, run.ID) != 45 || span(b, run.ID) != 45 {
			return fmt.Errorf("a %d, b %d", span(a, run.ID), span(b, run.ID))
		}
		return nil
	})
	af, at := a.holds(run.ID)
	bf, bt := b.holds(run.ID)
	c := newFakeSchool(t, k, "c", 1000)
	runSchools(t, c)
	wiretest.WaitFor(t, 5*time.Second, "a, b and c to hold 30 koi each", func() error {
		if span(a, run.ID) != 30 || span(b, run.ID) != 30 || span(c, run.ID) != 30 {
			return fmt.Errorf("a %d, b %d, c %d", span(a, run.ID), span(b, run.ID), span(c, run.ID))
		}
		return nil
	})
	// Only c's share moved: what a and b keep is inside what they had.
	af2, at2 := a.holds(run.ID)
	bf2, bt2 := b.holds(run.ID)
	if af2 < af || at2 > at || bf2 < bf || bt2 > bt {
		t.Errorf("a [%d,%d)→[%d,%d), b [%d,%d)→[%d,%d): kept koi moved", af, at, af2, at2, bf, bt, bf2, bt2)
	}
}

func TestCapacityNeverExceededAndPartialReported(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	r1 := seedRun(t, k, 60)
	r2, err := k.CreateRun(context.Background(), "test", RunSpec{Name: "second", BehaviorSet: "bg", Koi: 60,
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api"}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newFakeSchool(t, k, "a", 30), newFakeSchool(t, k, "b", 50)
	runSchools(t, a, b)
	wiretest.WaitFor(t, 5*time.Second, "80 koi assigned over two runs", func() error {
		if got := span(a, r1.ID) + span(b, r1.ID) + span(a, r2.ID) + span(b, r2.ID); got != 80 {
			return fmt.Errorf("%d koi assigned, want 80", got)
		}
		return nil
	})
	for i := 0; i < 10; i++ {
		for _, s := range []*fakeSchool{a, b} {
			if n := span(s, r1.ID) + span(s, r2.ID); n > s.capacity {
				t.Fatalf("%s holds %d koi, capacity %d", s.id, n, s.capacity)
			}
		}
		time.Sleep(testPoll)
	}
	v1, v2 := k.RunView(k.State(), r1.ID), k.RunView(k.State(), r2.ID)
	if v1.Assigned != 60 || v2.Assigned != 20 || v2.Partial == "" {
		t.Errorf("run 1 %d (%q), run 2 %d (%q)", v1.Assigned, v1.Partial, v2.Assigned, v2.Partial)
	}
	// Live scale-down frees room for the second run.
	koi := 20
	if _, err := k.UpdateRun(context.Background(), "test", r1.ID, RunPatch{Koi: &koi}); err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 5*time.Second, "run 2 to hold 60 koi", func() error {
		if v := k.RunView(k.State(), r2.ID); v.Assigned != 60 {
			return fmt.Errorf("run 2 has %d", v.Assigned)
		}
		return nil
	})
}

func TestLaunchCountsExact(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	run := seedRun(t, k, 101)
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	a, b, c := newFakeSchool(t, k, "a", 1000), newFakeSchool(t, k, "b", 1000), newFakeSchool(t, k, "c", 1000)
	runSchools(t, a, b, c)
	wiretest.WaitFor(t, 5*time.Second, "101 koi connected", func() error {
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != 101 {
			return fmt.Errorf("%d connected", v.KoiNow.Connected)
		}
		return nil
	})
	start := time.Now().Add(1500 * time.Millisecond)
	l, err := k.Launch(ctx, "op", LaunchSpec{Formation: "herd", Run: run.ID, At: start, Params: map[string]string{"channel_id": "C1"}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Planned() {
		t.Error("planned more than planLead ahead")
	}
	wiretest.WaitFor(t, 3*time.Second, "the launch to be planned", func() error {
		if l = k.State().Launch(nil, l.ID); !l.Planned() {
			return fmt.Errorf("not planned")
		}
		return nil
	})
	// 10% of 101 connected = 10.1 → 10, split 34/34/33 → 3.4/3.4/3.3 → 4/3/3.
	if !l.Planned() || l.Count != 10 || l.Connected != 101 || len(l.Shares) != 3 {
		t.Fatalf("launch %+v", l)
	}
	sum := 0
	for _, sh := range l.Shares {
		sum += sh.Count
	}
	if sum != 10 {
		t.Errorf("shares sum to %d", sum)
	}
	wiretest.WaitFor(t, 3*time.Second, "the launch to run", func() error {
		if got := k.State().Launch(nil, l.ID); got.State != state.LaunchRunning {
			return fmt.Errorf("state %s", got.State)
		}
		return nil
	})
	if time.Now().Before(start) {
		t.Error("launch running before its start")
	}
	wiretest.WaitFor(t, 5*time.Second, "the launch to be done with 10 started", func() error {
		got := k.State().Launch(nil, l.ID)
		if got.State != state.LaunchDone || got.Started != 10 {
			return fmt.Errorf("state %s, started %d (%s)", got.State, got.Started, got.Outcome)
		}
		return nil
	})
	// A launch in the past beyond the grace is refused.
	if _, err := k.Launch(ctx, "op", LaunchSpec{Formation: "herd", Run: run.ID, At: time.Now().Add(-time.Minute)}); err == nil {
		t.Error("launch in the past accepted")
	}
}

func TestControlEpochsMonotonicAndStopConfirmed(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	nc := schoolConn(t, k)
	defer nc.Close()
	ch := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe(wire.SubjectControl, ch); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	run := seedRun(t, k, 20)
	a := newFakeSchool(t, k, "a", 100)
	silent := newFakeSchool(t, k, "silent", 100)
	stopSilent := runSchools(t, a, silent)
	wiretest.WaitFor(t, 5*time.Second, "20 koi assigned", func() error {
		if span(a, run.ID)+span(silent, run.ID) != 20 {
			return fmt.Errorf("not assigned yet")
		}
		return nil
	})
	steps := []func() error{
		func() error { _, err := k.SetRunState(ctx, "op", run.ID, wire.Paused); return err },
		func() error { _, err := k.SetSwitch(ctx, "op", wire.Paused); return err },
		func() error { _, err := k.SetRunState(ctx, "op", run.ID, wire.Running); return err },
		func() error { _, err := k.SetSwitch(ctx, "op", wire.Running); return err },
		func() error { _, err := k.SetRunState(ctx, "op", run.ID, wire.Stopped); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	for i := range steps {
		select {
		case m := <-ch:
			var c wire.Control
			if err := wire.Decode(m.Data, &c); err != nil {
				t.Fatal(err)
			}
			if c.Epoch <= last {
				t.Errorf("control %d: epoch %d after %d", i, c.Epoch, last)
			}
			last = c.Epoch
		case <-time.After(5 * time.Second):
			t.Fatalf("control %d not published", i)
		}
	}
	if _, err := k.SetRunState(ctx, "op", run.ID, wire.Running); err == nil {
		t.Error("a stopped run resumed")
	}
	// Both schools confirm the run's stop; then the global stop, which
	// the silent school never confirms.
	wiretest.WaitFor(t, 5*time.Second, "the run stop to be confirmed", func() error {
		if r := k.State().Run(nil, run.ID); !r.Stop.Complete() {
			return fmt.Errorf("stop not confirmed: %+v", r.Stop)
		}
		return nil
	})
	stopSilent(silent)
	if _, err := k.SetSwitch(ctx, "op", wire.Stopped); err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 5*time.Second, "the global stop to name the silent school late", func() error {
		g := k.State().Switch(nil)
		if _, ok := g.Stop.Acks["a"]; !ok || len(g.Stop.Late) != 1 || g.Stop.Late[0] != "silent" {
			return fmt.Errorf("stop track %+v", g.Stop)
		}
		return nil
	})
}

func TestMalformedMessagesCountedNeverFatal(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	nc := schoolConn(t, k)
	defer nc.Close()
	for _, tc := range []struct {
		subject string
		data    string
		cause   string
	}{
		{wire.SubjectPoll, `not json`, "poll: malformed"},
		{wire.SubjectPoll, `{"v": 99, "school": "x"}`, "poll: unknown version"},
		{wire.SubjectPoll, `{"v": 1}`, "poll: invalid school"}, // no school id
		{wire.SubjectBlob, `[]`, "blob: malformed"},
		{wire.SubjectMetrics, `{"v": 1, "school": "x", "runs": [{"run": "nope"}]}`, "metrics: unknown run"},
		{wire.SubjectMetrics, `{"v": 0}`, "metrics: unknown version"},
	} {
		for range 3 {
			if tc.subject == wire.SubjectMetrics {
				nc.Publish(tc.subject, []byte(tc.data))
				nc.Flush()
			} else if _, err := nc.Request(tc.subject, []byte(tc.data), 5*time.Second); err != nil {
				t.Errorf("%s: no reply to a bad request: %v", tc.subject, err)
			}
		}
		wiretest.WaitFor(t, 2*time.Second, "3 rejections", func() error {
			if n := k.Rejections()[tc.cause]; n != 3 {
				return fmt.Errorf("%s: %d rejections, want 3 (%v)", tc.cause, n, k.Rejections())
			}
			return nil
		})
	}
	// Still serving.
	if rep := newFakeSchool(t, k, "ok", 10).poll(); rep == nil || rep.Error != "" {
		t.Errorf("poll after garbage: %+v", rep)
	}
}

func TestMetricsMergedPerRun(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 10)
	nc := schoolConn(t, k)
	defer nc.Close()
	for school := range 2 {
		var rec metrics.Recorder
		for i := range 100 {
			rec.Observe("api:chat.postMessage", time.Duration(i+1)*time.Millisecond, metrics.OK)
		}
		rec.Count("api:chat.postMessage", metrics.RateLimited)
		snap, _ := rec.Snapshot().MarshalBinary()
		data, _ := wire.Encode(&wire.MetricsReport{School: fmt.Sprint("s", school), Seq: 1, Start: time.Now().Add(-time.Second),
			End: time.Now(), Runs: []wire.RunMetrics{{Run: run.ID, Snapshot: snap, FramesIn: 5}}})
		nc.Publish(wire.SubjectMetrics, data)
	}
	nc.Flush()
	wiretest.WaitFor(t, 3*time.Second, "the run metrics summary", func() error {
		sum := k.RunMetrics(run.ID, time.Minute)
		if len(sum.Keys) != 1 || sum.Keys[0].Count != 202 || sum.Keys[0].Failures != 2 || sum.Traffic.FramesIn != 10 {
			return fmt.Errorf("summary %+v", sum)
		}
		if p := *sum.Keys[0].P50; p < 49 || p > 52 {
			return fmt.Errorf("p50 %v ms", p)
		}
		return nil
	})
}

func TestRefusingSchoolGetsNoKoi(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 60)
	a, picky := newFakeSchool(t, k, "a", 1000), newFakeSchool(t, k, "picky", 1000)
	picky.refuse = "api_base: 127.0.0.1:9090 is not in --allow-target"
	runSchools(t, a, picky)
	wiretest.WaitFor(t, 5*time.Second, "the picky school to refuse the run", func() error {
		v := k.RunView(k.State(), run.ID)
		if span(a, run.ID) != 60 || span(picky, run.ID) != 0 || v.Refused["picky"] == "" {
			return fmt.Errorf("a %d, picky %d, refused %v", span(a, run.ID), span(picky, run.ID), v.Refused)
		}
		return nil
	})
}

func TestSwitchSetAroundTheKeeperIsAdopted(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	if _, err := k.SetSwitch(ctx, "op", wire.Paused); err != nil {
		t.Fatal(err)
	}
	nc := keeperConn(t, k)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := state.OpenKV(ctx, js, DefaultBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := state.EmergencySwitch(ctx, kv, wire.Stopped, "cli")
	if err != nil || g.Epoch != 2 {
		t.Fatalf("%+v %v", g, err)
	}
	c := wire.Control{Epoch: g.Epoch, State: g.State, By: g.By, At: g.At}
	k.signControl(&c) // as koipond stop --nats does with the data dir's key
	data, _ := wire.Encode(&c)
	nc.Publish(wire.SubjectControl, data)
	wiretest.WaitFor(t, 3*time.Second, "the switch stopped at epoch 2", func() error {
		if s := k.State().Switch(nil); s.State != wire.Stopped || s.Epoch != 2 {
			return fmt.Errorf("switch %+v", s)
		}
		return nil
	})
	if s, err := k.SetSwitch(ctx, "op", wire.Running); err != nil || s.Epoch != 3 {
		t.Errorf("next epoch %+v %v, want 3", s, err)
	}
	if a := k.State().Audit(nil, 0, 10); len(a) < 3 || a[1].Actor != "cli" {
		t.Errorf("audit after restart of the view: %+v", a)
	}
}

func TestSwitchPublishedWithoutBucketIsAdopted(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	nc := keeperConn(t, k)
	defer nc.Close()
	huge := wire.EpochFromClock(time.Now())
	c := wire.Control{Epoch: huge, State: wire.Stopped, By: "cli", At: time.Now()}
	k.signControl(&c) // as koipond stop --nats does with the data dir's key
	data, _ := wire.Encode(&c)
	nc.Publish(wire.SubjectControl, data)
	wiretest.WaitFor(t, 3*time.Second, "the switch stopped at the huge epoch", func() error {
		if s := k.State().Switch(nil); s.State != wire.Stopped || s.Epoch != huge {
			return fmt.Errorf("switch %+v", s)
		}
		return nil
	})
	if s, err := k.SetSwitch(context.Background(), "op", wire.Running); err != nil || s.Epoch != huge+1 {
		t.Errorf("next epoch %+v %v, want %d", s, err, huge+1)
	}
}

func TestRestartMovesNoKoi(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	run := seedRun(t, k, 100)
	a, b, c := newFakeSchool(t, k, "a", 1000), newFakeSchool(t, k, "b", 1000), newFakeSchool(t, k, "c", 1000)
	stop := runSchools(t, a, b, c)
	wiretest.WaitFor(t, 5*time.Second, "a third of the koi on each school", func() error {
		if span(a, run.ID) != 33 && span(a, run.ID) != 34 || span(b, run.ID) < 33 || span(c, run.ID) < 33 {
			return fmt.Errorf("a %d, b %d, c %d", span(a, run.ID), span(b, run.ID), span(c, run.ID))
		}
		return nil
	})
	stop(b) // b dies: a and c take its koi
	wiretest.WaitFor(t, 5*time.Second, "a and c to take over b's koi", func() error {
		if span(a, run.ID)+span(c, run.ID) != 100 {
			return fmt.Errorf("a %d, c %d", span(a, run.ID), span(c, run.ID))
		}
		return nil
	})
	stop(a)
	stop(c)
	af, at := a.holds(run.ID)
	cf, ct := c.holds(run.ID)
	k.ns.Shutdown() // crash
	k.ns.WaitForShutdown()
	k.Close()

	k2 := openKeeper(t, dir)
	a2, c2 := newFakeSchool(t, k2, "a", 1000), newFakeSchool(t, k2, "c", 1000)
	a2.last, c2.last = a.last, c.last // they carry on with what they run
	runSchools(t, a2, c2)
	// For more than a lease, nothing moves: dead b gets no share back,
	// a and c keep their ranges.
	for end := time.Now().Add(testLease + 3*testPoll); time.Now().Before(end); time.Sleep(testPoll / 2) {
		if f, to := a2.holds(run.ID); f != af || to != at {
			t.Fatalf("a moved from [%d,%d) to [%d,%d)", af, at, f, to)
		}
		if f, to := c2.holds(run.ID); f != cf || to != ct {
			t.Fatalf("c moved from [%d,%d) to [%d,%d)", cf, ct, f, to)
		}
	}
	if v := k2.RunView(k2.State(), run.ID); v.Assigned != 100 || len(v.Assignments) != 2 {
		t.Errorf("after restart: %+v", v.Assignments)
	}
}
