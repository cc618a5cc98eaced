package keeper

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// offsetBins returns wire.LaunchOffsetBins bins with one start in each
// bin given.
func offsetBins(bins ...int) []uint32 {
	out := make([]uint32, wire.LaunchOffsetBins)
	for _, b := range bins {
		out[b]++
	}
	return out
}

// A school's start-offset bins are stored on its share of the launch,
// replaced by each report like the counts, kept through a keeper restart;
// bins of the wrong length or counting more starts than started are
// refused (the whole poll over the wire, the share's error when they
// reach the record step), the last good ones kept.
func TestLaunchOffsetsStoredPerShare(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	ctx := context.Background()
	run := seedRun(t, k, 10)
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	a := newFakeSchool(t, k, "a", 100)
	wiretest.WaitFor(t, 5*time.Second, "10 koi connected", func() error {
		a.poll()
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != 10 {
			return fmt.Errorf("%d connected", v.KoiNow.Connected)
		}
		return nil
	})
	l, err := k.Launch(ctx, "op", LaunchSpec{Formation: "herd", Run: run.ID, Params: map[string]string{"channel_id": "C1"}})
	if err != nil {
		t.Fatal(err)
	}
	var count int
	wiretest.WaitFor(t, 5*time.Second, "the launch planned for a", func() error {
		for _, wl := range a.poll().Launches {
			if wl.ID == l.ID {
				count = wl.Count
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	// say sends one poll with the launch status and returns the keeper's
	// error, if any, and the share as stored.
	say := func(ls wire.LaunchStatus) (string, state.Share) {
		t.Helper()
		req := a.request()
		ls.Launch, ls.Planned = l.ID, count
		req.Launches = []wire.LaunchStatus{ls}
		data, err := wire.Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := a.nc.Request(wire.SubjectPoll, data, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep wire.PollReply
		if err := wire.Decode(msg.Data, &rep); err != nil {
			t.Fatal(err)
		}
		return rep.Error, k.State().Launch(nil, l.ID).Shares[0]
	}
	first := offsetBins(5)
	if e, sh := say(wire.LaunchStatus{Started: 1, Offsets: first}); e != "" || !slices.Equal(sh.Offsets, first) {
		t.Fatalf("a good report: error %q, share %+v", e, sh)
	}
	// Refused over the wire: the poll is answered with the reason.
	for _, tt := range []struct {
		name string
		bins []uint32
		want string
	}{
		{"short", make([]uint32, wire.LaunchOffsetBins-1), "63 bins, want 64 or none"},
		{"long", make([]uint32, 1<<16), "65536 bins, want 64 or none"},
		{"more than started", offsetBins(1, 2), "2 starts binned, but 1 started"},
	} {
		e, sh := say(wire.LaunchStatus{Started: 1, Offsets: tt.bins})
		if !strings.Contains(e, "launches.offsets") || !strings.Contains(e, tt.want) || !slices.Equal(sh.Offsets, first) {
			t.Errorf("%s: error %q, share offsets %v; want the poll refused (%q), the offsets kept", tt.name, e, sh.Offsets, tt.want)
		}
	}
	// Refused at the record step too, whatever let them through.
	sh := state.Share{School: "s", Count: 5}
	for _, ls := range []wire.LaunchStatus{
		{Started: 1, Offsets: make([]uint32, 3)},
		{Started: 1, Offsets: offsetBins(0, 0)},
	} {
		if err := checkLaunchStatus(&ls, &sh, false); err == nil {
			t.Errorf("offsets %v with %d started accepted", ls.Offsets, ls.Started)
		}
	}
	// Replaced by the next report (the koi's start moved: a school
	// reports its bins whole each time).
	second := offsetBins(63)
	if e, sh := say(wire.LaunchStatus{Started: 1, Finished: 1, Offsets: second}); e != "" || !slices.Equal(sh.Offsets, second) {
		t.Fatalf("a second report: error %q, share %+v", e, sh)
	}
	// Kept through a restart.
	k.Close()
	k2 := openKeeper(t, dir)
	if got := k2.State().Launch(nil, l.ID).Shares[0].Offsets; !slices.Equal(got, second) {
		t.Errorf("after a restart the share's offsets are %v, want %v", got, second)
	}
}
