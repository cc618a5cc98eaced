package keeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
)

// A formation whose name is longer than formations.MaxName is refused at
// upload with the reason, and nothing is stored. Before the bound, such a
// name travelled in every poll reply while its launch was pending, every
// school ignored those replies whole, and their leases paused every koi.
func TestFormationNameBoundedAtUpload(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	_, err := k.PutFormation(context.Background(), "test", behaviors.File{Name: "f.json", Data: []byte(paramHerd(strings.Repeat("F", 2100), 60))})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalid || !strings.Contains(err.Error(), "name: is 2100 bytes long; at most 200") {
		t.Fatalf("PutFormation = %v, want invalid with the name's length", err)
	}
	if fs := k.State().Formations(nil); len(fs) != 0 {
		t.Errorf("%d formations stored", len(fs))
	}
}

// At most wire.MaxLaunchesPerMessage launches are open (pending or
// running) at once: the next is refused with the reason until one ends.
func TestOpenLaunchesCapped(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 10)
	ctx := context.Background()
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "f.json", Data: []byte(paramHerd("later", 60))}); err != nil {
		t.Fatal(err)
	}
	spec := LaunchSpec{Formation: "later", Run: run.ID, At: time.Now().Add(24 * time.Hour), Params: map[string]string{"channel_id": "C1"}}
	var first *state.Launch
	for i := range wire.MaxLaunchesPerMessage {
		l, err := k.Launch(ctx, "op", spec)
		if err != nil {
			t.Fatalf("launch %d: %v", i+1, err)
		}
		if first == nil {
			first = l
		}
	}
	_, err := k.Launch(ctx, "op", spec)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeConflict || !strings.Contains(err.Error(), "1000 launches are pending or running") {
		t.Fatalf("launch %d = %v, want a conflict naming the cap", wire.MaxLaunchesPerMessage+1, err)
	}
	if _, err := k.CancelLaunch(ctx, "op", first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Launch(ctx, "op", spec); err != nil {
		t.Errorf("a launch after one was cancelled: %v", err)
	}
}

// Whatever is stored (here a launch written as a keeper before the name
// bound could have), a poll reply stays within the wire's bounds: the
// school keeps acting on its replies, no koi pauses, the launch out of
// bounds is left out and counted, and a good launch beside it runs.
func TestPollReplyWithinBoundsWhateverIsStored(t *testing.T) {
	const koi = 10
	k, _, run := launchRig(t, koi, paramHerd("look", 60))
	ctx := context.Background()
	fm := k.State().LatestFormation(nil, "look")
	now := time.Now()
	planned := func(name string, start time.Time) *state.Launch {
		return &state.Launch{ID: newID("launch"), Run: run.ID, Formation: fm.Hash, Name: name, Params: map[string]string{"channel_id": pond.ChannelID(1)},
			Start: start, BeginWithinMS: 1000, State: state.LaunchPending, CreatedAt: now, CreatedBy: "legacy", PlannedAt: now,
			Shares: []state.Share{{School: "s1", Count: 1}}}
	}
	soon := planned("look", now.Add(time.Second))
	err := k.store.Write(ctx, func(tx *state.Txn) error {
		if err := tx.PutLaunch(planned(strings.Repeat("L", 3000), now.Add(time.Hour))); err != nil {
			return err
		}
		return tx.PutLaunch(soon)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Three leases: a school ignoring its replies would have paused.
	until := time.Now().Add(3 * testLease)
	for time.Now().Before(until) {
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Paused > 0 || v.KoiNow.Connected != koi {
			t.Fatalf("koi paused or lost: %+v (rejections %v)", v.KoiNow, k.Rejections())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := k.Rejections()["poll reply: launch out of bounds"]; n == 0 {
		t.Errorf("rejections %v, want the long-named launch counted", k.Rejections())
	}
	if l := waitLaunch(t, k, soon.ID, state.LaunchDone, 20*time.Second); l.Started != 1 || l.Finished != 1 {
		t.Errorf("the good launch: %d started, %d finished, want 1 and 1 (%s)", l.Started, l.Finished, l.Outcome)
	}
}

// boundReply leaves out of a reply what is out of bounds, and past
// wire.MaxLaunchesPerMessage the launches that start last; what is left
// validates, and each left out is counted.
func TestBoundReplyKeepsTheFirstLaunches(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	now := time.Now()
	rep := &wire.PollReply{Switch: wire.Control{State: wire.Running, Epoch: 1}, KeeperTime: now, PollIntervalMS: 1000, LeaseMS: 5000,
		Assignments: []wire.Assignment{
			{Run: "ok", From: 0, To: 1},
			{Run: "bad", From: 0, To: 1, Spec: wire.RunSpec{Name: strings.Repeat("n", wire.MaxText+1)}},
		}}
	const extra = 5
	for i := range wire.MaxLaunchesPerMessage + extra {
		// Newest first, so that the cut is not the order given.
		rep.Launches = append(rep.Launches, wire.Launch{ID: fmt.Sprintf("l%04d", i), Run: "ok", Formation: "f", Name: "n",
			Start: now.Add(time.Duration(wire.MaxLaunchesPerMessage+extra-i) * time.Second), Count: 1})
	}
	rep.Launches = append(rep.Launches, wire.Launch{ID: "long", Run: "ok", Formation: "f", Name: strings.Repeat("L", 3000), Start: now, Count: 1})
	k.boundReply(rep)
	if err := rep.Validate(); err != nil {
		t.Fatalf("the bounded reply: %v", err)
	}
	if len(rep.Assignments) != 1 || rep.Assignments[0].Run != "ok" {
		t.Errorf("assignments %+v, want only ok", rep.Assignments)
	}
	if len(rep.Launches) != wire.MaxLaunchesPerMessage {
		t.Fatalf("%d launches, want %d", len(rep.Launches), wire.MaxLaunchesPerMessage)
	}
	for _, l := range rep.Launches {
		if l.ID == "long" || l.ID < fmt.Sprintf("l%04d", extra) {
			t.Errorf("launch %s kept: out of bounds or among the %d that start last", l.ID, extra)
		}
	}
	r := k.Rejections()
	if r["poll reply: assignment out of bounds"] != 1 || r["poll reply: launch out of bounds"] != 1 || r["poll reply: too many launches"] != 1 {
		t.Errorf("rejections %v", r)
	}
}
