package keeper

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"
)

// A school lost for longer than the school expiry that holds no koi is
// forgotten, in memory and in the bucket; not before the expiry, and not
// before its loss was counted against the run whose koi it held. It was
// kept for ever, its last poll with it.
func TestLostSchoolsAreForgottenAfterTheExpiry(t *testing.T) {
	const expiry = 3 * time.Second
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.SchoolExpiry = expiry })
	ctx := context.Background()
	run := seedRun(t, k, 10)
	live, holder := newFakeSchool(t, k, "live", 100), newFakeSchool(t, k, "holder", 100)
	stopHolder := runSchools(t, holder)
	wiretest.WaitFor(t, 10*time.Second, "the holder to report the run's koi", func() error {
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != 10 {
			return fmt.Errorf("%d of 10 koi connected", v.KoiNow.Connected)
		}
		return nil
	})
	runSchools(t, live)
	idle := newFakeSchool(t, k, "idle", 0)
	idle.poll()
	stopHolder(holder) // dies holding koi: they move to live
	wiretest.WaitFor(t, 10*time.Second, "live to hold the run", func() error {
		if span(live, run.ID) != 10 {
			return fmt.Errorf("live holds %d", span(live, run.ID))
		}
		return nil
	})
	if q := k.State().Run(nil, run.ID).Quarantine; q == nil || len(q.Failures) != 1 || q.Failures[0].School != "holder" {
		t.Errorf("the holder's loss was not counted against the run: %+v", q)
	}
	last := map[string]time.Time{"holder": k.State().School(nil, "holder").LastSeen, "idle": k.State().School(nil, "idle").LastSeen}
	stored := func(id string) (mem, bucket bool) {
		recs, err := k.kv.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, bucket = recs["school."+id]
		return k.State().School(nil, id) != nil, bucket
	}
	for _, id := range []string{"holder", "idle"} {
		wiretest.WaitFor(t, 5*expiry, "the lost school to be forgotten", func() error {
			if mem, bucket := stored(id); mem || bucket {
				return fmt.Errorf("%s lost for %v, still stored: in memory %v, in the bucket %v", id, time.Since(last[id]), mem, bucket)
			}
			return nil
		})
		if lost := time.Since(last[id]); lost < expiry {
			t.Errorf("%s forgotten when lost for %v, under the expiry of %v", id, lost, expiry)
		}
	}
	if mem, bucket := stored("live"); !mem || !bucket {
		t.Errorf("the live school: in memory %v, in the bucket %v", mem, bucket)
	}
	// Forgotten is not banned: it registers again when it polls.
	if rep := idle.poll(); rep == nil || rep.Error != "" {
		t.Fatalf("a forgotten school's poll: %+v", rep)
	}
	if sc := k.State().School(nil, "idle"); sc == nil || time.Since(sc.FirstSeen) > time.Second {
		t.Errorf("the forgotten school polled again: %+v", sc)
	}
}

// A restarted keeper keeps the schools it should and only those: one
// lost for longer than the school expiry while the keeper was down is
// forgotten (memory and bucket); one that polled until the restart is
// kept, with a last-seen time close to its last poll; one holding koi is
// kept with a fresh lease. The bucket held each school's first poll
// time as its last, for ever.
func TestRestartedKeeperForgetsSchoolsLostPastTheExpiry(t *testing.T) {
	const expiry = 6 * time.Second
	dir := t.TempDir()
	cfg := func(c *Config) { c.SchoolExpiry = expiry }
	k := openKeeper(t, dir, cfg)
	run := seedRun(t, k, 10)
	holder, recent, gone := newFakeSchool(t, k, "holder", 100), newFakeSchool(t, k, "recent", 0), newFakeSchool(t, k, "gone", 0)
	gone.poll()
	goneAt := k.State().School(nil, "gone").LastSeen
	stop := runSchools(t, holder, recent)
	wiretest.WaitFor(t, 10*time.Second, "the holder to hold the run", func() error {
		if span(holder, run.ID) != 10 {
			return fmt.Errorf("holder holds %d", span(holder, run.ID))
		}
		return nil
	})
	// Until gone has been silent for nearly the expiry.
	time.Sleep(time.Until(goneAt.Add(expiry - time.Second)))
	if k.State().School(nil, "gone") == nil {
		t.Fatalf("gone forgotten %v after its poll, before the expiry of %v", time.Since(goneAt), expiry)
	}
	stop(holder)
	stop(recent)
	recentAt := k.State().School(nil, "recent").LastSeen
	k.Close()

	k = openKeeper(t, dir, cfg)
	sc := k.State().School(nil, "recent")
	if sc == nil {
		t.Fatal("recent, polling until the restart, not restored")
	}
	if a := k.State().Assignment(nil, run.ID, "holder"); a == nil || a.Count() != 10 {
		t.Errorf("the holder's koi after the restart: %+v", a)
	}
	if saved := k.cfg.saveEvery(); sc.LastSeen.Before(recentAt.Add(-saved - 2*testPoll)) {
		t.Errorf("recent restored as last seen %v before its last poll, over %v", recentAt.Sub(sc.LastSeen), saved)
	}
	wiretest.WaitFor(t, 10*time.Second, "gone to be forgotten", func() error {
		recs, err := k.kv.Load(context.Background())
		if err != nil {
			return err
		}
		if _, bucket := recs["school.gone"]; bucket || k.State().School(nil, "gone") != nil {
			return fmt.Errorf("gone, lost %v, still stored (in the bucket: %v)", time.Since(goneAt), bucket)
		}
		return nil
	})
	for _, id := range []string{"holder", "recent"} {
		if k.State().School(nil, id) == nil {
			t.Errorf("%s forgotten after the restart", id)
		}
	}
}
