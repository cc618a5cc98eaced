package keeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// openKeeperOn opens a keeper on an external NATS at url, its data in dir.
func openKeeperOn(t testing.TB, url, dir string) *Keeper {
	t.Helper()
	k, err := OpenWithAPI(context.Background(), Config{HTTP: "127.0.0.1:0", NATS: url, DataDir: dir,
		PollInterval: testPoll, Lease: testLease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// storeOldRun stores a run in s as an older keeper could have, its
// record of size bytes (padded with one label), bypassing what CreateRun
// checks.
func storeOldRun(t testing.TB, s *state.Store, name string, size int, mut func(*state.Run)) *state.Run {
	t.Helper()
	ctx := context.Background()
	b := s.Read().LatestBehaviorSet(nil, "bg")
	now := time.Now()
	run := &state.Run{ID: newID("run"), Name: name, Owner: "old", BehaviorSet: b.Hash, State: state.RunRunning,
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api"}, CreatedAt: now, StartedAt: now,
		Labels: map[string]string{"pad": ""}, Warnings: []string{"an old warning"}}
	mut(run)
	err := s.Write(ctx, func(tx *state.Txn) error {
		run.Switch = state.Switch{State: wire.Running, Epoch: tx.NextEpoch(), By: "old", At: now}
		if run.State == state.RunStopped {
			run.Switch.State = wire.Stopped
		}
		run.Labels["pad"] = strings.Repeat("v", size-int(recordSize(run)))
		return tx.PutRun(run)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := recordSize(s.Read().Run(nil, run.ID)); got != int64(size) {
		t.Fatalf("stored a record of %d bytes, want %d", got, size)
	}
	return run
}

// waitStopped waits until a run is stopped with its record within the
// NATS payload limit, and returns it.
func waitStopped(t testing.TB, k *Keeper, id string) *state.Run {
	t.Helper()
	var run *state.Run
	wiretest.WaitFor(t, 20*time.Second, "the run stopped", func() error {
		if run = k.State().Run(nil, id); run.State != state.RunStopped {
			return fmt.Errorf("run %s (%s) is %s", id, run.Name, run.State)
		}
		return nil
	})
	if n := recordSize(run); n > k.conn().MaxPayload() {
		t.Errorf("run %s's record is %d bytes, over the payload limit", run.Name, n)
	}
	return run
}

// Against a NATS of 1 MiB payloads, a run whose record sits a hundred
// bytes under the payload reaches its duration: its stop would take the
// record over. The scheduler's pass, one write over every run, still
// stops it (its record trimmed, saying what went), and every other run
// goes on: another run's duration is enforced, a new run's koi are
// assigned. The run that cannot grow is stopped by hand too; the global
// stop works. Before, the stop failed the whole pass, on every pass.
func TestSchedulerGoesOnWhenARunsStopIsOverThePayload(t *testing.T) {
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{})
	k := openKeeperOn(t, ns.URL, t.TempDir())
	limit := int(k.conn().MaxPayload())
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	jam := storeOldRun(t, k.store, "jam", limit-100, func(r *state.Run) {
		r.DurationMS, r.StartedAt = 1000, r.StartedAt.Add(-time.Minute)
		r.GuardActions = []state.GuardAction{{Rule: "old rule", Action: "pause"}}
	})
	held := storeOldRun(t, k.store, "held", limit-100, func(*state.Run) {})
	target := state.Target{APIBase: "http://127.0.0.1:9090/api", Token: "xoxp-{{.Index}}"}
	other, err := k.CreateRun(ctx, "test", RunSpec{Name: "other", BehaviorSet: "bg", Koi: 2, Target: target, DurationSecs: 1})
	if err != nil {
		t.Fatal(err)
	}
	s1 := newFakeSchool(t, k, "s1", 100)
	runSchools(t, s1)

	stopped := waitStopped(t, k, jam.ID)
	if stopped.EndReason != "duration elapsed" || len(stopped.Trimmed) == 0 || stopped.Labels != nil {
		t.Errorf("jam run: end reason %q, trimmed %q, %d labels; want its duration's stop, its labels left out and said so",
			stopped.EndReason, stopped.Trimmed, len(stopped.Labels))
	}
	if len(auditWith(k, "keeper", "left out")) == 0 {
		t.Error("no audit entry of the trimmed record")
	}
	waitStopped(t, k, other.ID)
	later, err := k.CreateRun(ctx, "test", RunSpec{Name: "later", BehaviorSet: "bg", Koi: 3, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 20*time.Second, "the later run's koi assigned", func() error {
		if n := span(s1, later.ID); n != 3 {
			return fmt.Errorf("school holds %d koi of the later run", n)
		}
		return nil
	})

	// By hand: the run whose stop is over the payload stops.
	run, err := k.SetRunState(ctx, "ops", held.ID, wire.Stopped)
	if err != nil {
		t.Fatalf("stopping the held run by hand: %v", err)
	}
	if run.State != state.RunStopped || len(run.Trimmed) == 0 || recordSize(k.State().Run(nil, held.ID)) > int64(limit) {
		t.Errorf("held run after its stop: %s, trimmed %q", run.State, run.Trimmed)
	}
	if _, err := k.SetSwitch(ctx, "ops", wire.Stopped); err != nil {
		t.Errorf("the global stop: %v", err)
	}
}

// A keeper restarted over records an older keeper stored under a larger
// max_payload, now over the NATS's 1 MiB: it starts, the scheduler stops
// the one past its duration (trimmed to fit), a school's poll confirms
// the other's stop (trimmed too) and gets its new work, and pausing a
// running run whose record cannot change fails saying why. Before, the
// pass and every poll of the school failed.
func TestRestartOverRunRecordsLargerThanThePayload(t *testing.T) {
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{MaxPayload: 8 << 20})
	dir := t.TempDir()
	ctx := context.Background()
	old := openKeeperOn(t, ns.URL, dir)
	if _, err := old.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	// The runs go straight to the bucket: a keeper's scheduler would stop
	// the one past its duration before the restart.
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := state.OpenExistingKV(ctx, js, DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := kv.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.New(kv)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(recs); err != nil {
		t.Fatal(err)
	}
	const size = 3 << 19 // 1.5 MiB
	due := storeOldRun(t, s, "due", size, func(r *state.Run) { r.DurationMS, r.StartedAt = 1000, r.StartedAt.Add(-time.Minute) })
	ending := storeOldRun(t, s, "ending", size, func(r *state.Run) {
		r.State, r.EndedAt, r.EndReason = state.RunStopped, r.StartedAt, "stopped by old"
		r.Stop = &state.StopTrack{RequestedAt: time.Now(), Acks: map[string]time.Time{}, Expected: []string{"s1"}}
	})
	big := storeOldRun(t, s, "big", size, func(*state.Run) {})
	nc.Close()
	ns.Config.MaxPayload = 0 // nats-server's default, 1 MiB
	ns.Restart(t)

	k := openKeeperOn(t, ns.URL, dir)
	if mp := k.conn().MaxPayload(); mp != 1<<20 {
		t.Fatalf("max payload %d, want 1 MiB", mp)
	}
	s1 := newFakeSchool(t, k, "s1", 100)
	runSchools(t, s1)
	waitStopped(t, k, due.ID)
	wiretest.WaitFor(t, 20*time.Second, "the school's confirmation of the old stop", func() error {
		if r := k.State().Run(nil, ending.ID); !r.Stop.Complete() || len(r.Trimmed) == 0 {
			return fmt.Errorf("stop track %+v, trimmed %q", r.Stop, r.Trimmed)
		}
		return nil
	})
	fresh, err := k.CreateRun(ctx, "test", RunSpec{Name: "fresh", BehaviorSet: "bg", Koi: 3,
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api", Token: "xoxp-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 20*time.Second, "the fresh run's koi assigned", func() error {
		if n := span(s1, fresh.ID); n != 3 {
			return fmt.Errorf("school holds %d koi of the fresh run", n)
		}
		return nil
	})
	_, err = k.SetRunState(ctx, "ops", big.ID, wire.Paused)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTooLarge || !strings.Contains(e.Message, "max_payload") || !strings.Contains(e.Message, "stop the run") {
		t.Errorf("pausing the big run: %v; want too_large saying to stop it or raise max_payload", err)
	}
	if _, err := k.SetRunState(ctx, "ops", big.ID, wire.Stopped); err != nil {
		t.Errorf("stopping the big run: %v", err)
	}
	if _, err := k.SetSwitch(ctx, "ops", wire.Stopped); err != nil {
		t.Errorf("the global stop: %v", err)
	}
}

// fitRun drops a run's oldest history first, then, from a stopped run
// only, what running it needed; an active run whose own fields are over
// the limit is refused, naming the run and what to do.
func TestFitRunDropsHistoryFirst(t *testing.T) {
	base := func() *state.Run {
		r := &state.Run{ID: "run-1", Name: "r", State: state.RunRunning, Labels: map[string]string{"team": "chat"},
			Target: state.Target{APIBase: "http://h/api", Tokens: tokensOf(20_000)}, Warnings: []string{"w"}}
		for i := range state.MaxGuardActions {
			r.GuardActions = append(r.GuardActions, state.GuardAction{Rule: fmt.Sprintf("rule %d", i), Detail: strings.Repeat("d", 500)})
		}
		return r
	}
	r := base()
	limit := recordSize(r) - 10_000 // the 20 oldest guard actions make room
	f, notes, err := fitRun(r, limit)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.GuardActions); n >= state.MaxGuardActions || n == 0 || f.GuardActions[n-1].Rule != "rule 49" ||
		len(f.Warnings) != 1 || len(f.Target.Tokens) != len(r.Target.Tokens) || recordSize(f) > limit-recordSlack || len(notes) != 1 {
		t.Errorf("%d guard actions (newest %q), %d warnings, %d tokens, %d bytes, notes %q: want only the oldest guard actions gone",
			n, f.GuardActions[n-1].Rule, len(f.Warnings), len(f.Target.Tokens), recordSize(f), notes)
	}
	if len(r.GuardActions) != state.MaxGuardActions {
		t.Error("fitRun changed the run it was given")
	}
	// Running, its tokens are its own: it does not fit.
	_, _, err = fitRun(r, 10_000)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTooLarge || tooLargeRun(err) != "run-1" || !strings.Contains(e.Message, "stop the run") {
		t.Errorf("an active run over the limit: %v", err)
	}
	// Stopped, it does.
	r.State = state.RunStopped
	f, notes, err = fitRun(r, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Target.Tokens) != 0 || len(f.GuardActions) != 0 || f.Target.APIBase != "http://h/api" || len(f.Trimmed) != len(notes) || recordSize(f) > 10_000 {
		t.Errorf("stopped: tokens %d, guard actions %d, api base %q, trimmed %q, %d bytes", len(f.Target.Tokens), len(f.GuardActions), f.Target.APIBase, f.Trimmed, recordSize(f))
	}
}
