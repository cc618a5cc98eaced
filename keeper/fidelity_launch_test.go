package keeper

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire/wiretest"
)

// End to end, real keeper, school and pond: 60 koi launched over a 5 s
// window start uniformly (the KS test passes), while a school with the
// test-only clumping fault (school.Config.TestClumpLaunches: every koi at
// the launch instant) fails it; the verdict names the clumped launch.
func TestFidelityLaunchUniformity(t *testing.T) {
	const koi = 60
	for _, c := range []struct {
		name  string
		clump bool
		want  string
	}{
		{"normal", false, state.FidelityUniform},
		{"clumped", true, state.FidelityClumped},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			k := openKeeper(t, t.TempDir())
			p := openPond(t, nil)
			s, err := school.Open(ctx, school.Config{ID: "s1", NATSURL: k.NATSURL(), NATSNKeySeedFile: k.SchoolNKeyFile(), Capacity: 100,
				TestClumpLaunches: c.clump})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "f.json", Data: []byte(paramHerd("look", 5))}); err != nil {
				t.Fatal(err)
			}
			// Time scale 1: the school scales the window by the run's time
			// scale, and at 60 a 5 s window lasts 83 ms, within the
			// scheduling jitter of a busy machine under -race.
			if _, err := k.PutBehaviorSet(ctx, "test", "pond", []behaviors.File{{Name: "pond.json", Data: []byte(pondSet)}}); err != nil {
				t.Fatal(err)
			}
			run, err := k.CreateRun(ctx, "test", RunSpec{Name: "herd", BehaviorSet: "pond", Koi: koi, TimeScale: 1,
				Target: state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}})
			if err != nil {
				t.Fatal(err)
			}
			wiretest.WaitFor(t, 30*time.Second, "every koi connected", func() error {
				if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != koi {
					return fmt.Errorf("%d of %d connected", v.KoiNow.Connected, koi)
				}
				return nil
			})
			// The instant is a few seconds out, so the school has planned
			// every start before it: a school hearing of a launch after its
			// instant starts the overdue koi at once, which is clumping.
			l, err := k.Launch(ctx, "op", LaunchSpec{Formation: "look", Run: run.ID, Params: map[string]string{"channel_id": pond.ChannelID(1)},
				At: time.Now().Add(3 * time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			waitLaunch(t, k, l.ID, state.LaunchDone, 40*time.Second)
			var fl state.FidelityLaunch
			wiretest.WaitFor(t, 10*time.Second, "the launch's offsets judged", func() error {
				f := k.RunFidelity(run.ID)
				if len(f.Launches) != 1 || f.Launches[0].Starts != koi {
					return fmt.Errorf("launches %+v", f.Launches)
				}
				fl = f.Launches[0]
				return nil
			})
			ks, pv := -1.0, -1.0
			if fl.KS != nil {
				ks, pv = *fl.KS, *fl.P
			}
			t.Logf("%s launch: %d planned, %d started, %d completed; %d starts, KS D %.3f, p %.3g: %s %s",
				c.name, fl.Planned, fl.Started, fl.Completed, fl.Starts, ks, pv, fl.Uniformity, fl.Note)
			if fl.Uniformity != c.want || fl.Planned != koi || fl.Started != koi {
				t.Errorf("%s launch judged %s (%s), want %s", c.name, fl.Uniformity, fl.Note, c.want)
			}
		})
	}
}
