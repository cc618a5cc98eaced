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
	"github.com/koipond/koipond/wire/wiretest"
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

// Whatever is stored (here launches written as a keeper before the
// bounds could have: one named past every bound, and more open launches
// than a reply holds), a poll reply stays within the wire's bounds: the
// school keeps acting on its replies, no koi pauses, the launches that fit
// reach the school and the first of them runs; what was left out is
// counted, and new launches are refused past the cap of open ones.
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
		if err := tx.PutLaunch(soon); err != nil {
			return err
		}
		for i := range wire.MaxLaunchesPerMessage {
			if err := tx.PutLaunch(planned("look", now.Add(time.Hour+time.Duration(i)*time.Second))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Three leases: a school ignoring its replies would have paused.
	until := time.Now().Add(3 * testLease)
	for time.Now().Before(until) {
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Paused > 0 || v.KoiNow.Connected != koi {
			t.Fatalf("koi paused or lost at %v: %+v; school %+v; %d polls, mean %v; %v", time.Since(now), v.KoiNow, k.State().School(nil, "s1"), k.stats.polls.Load(), time.Duration(k.stats.pollNanos.Load()/max(1, k.stats.polls.Load())), k.Rejections())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := k.Rejections()
	if r["poll reply: launch out of bounds"] == 0 || r["poll reply: too many launches"] == 0 {
		t.Errorf("rejections %v, want the long-named launch and the launch past the cap counted", r)
	}
	// The school heard of the launches that fit: it reports them.
	wiretest.WaitFor(t, 5*time.Second, "the school to report the launches it was sent", func() error {
		n := 0
		for _, l := range k.State().LaunchesIn(nil, state.LaunchPending) {
			if len(l.Shares) == 1 && l.Shares[0].Reported {
				n++
			}
		}
		if n < wire.MaxLaunchesPerMessage {
			return fmt.Errorf("%d launches reported by the school", n)
		}
		return nil
	})
	if l := waitLaunch(t, k, soon.ID, state.LaunchDone, 20*time.Second); l.Started != 1 || l.Finished != 1 {
		t.Errorf("the launch that fit and started first: %d started, %d finished, want 1 and 1 (%s)", l.Started, l.Finished, l.Outcome)
	}
	if l, err := k.Launch(ctx, "op", LaunchSpec{Formation: "look", Run: run.ID, Params: map[string]string{"channel_id": pond.ChannelID(1)}}); err == nil {
		t.Errorf("launch %s accepted past the cap of open launches", l.ID)
	}
}
