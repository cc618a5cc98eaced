package keeper

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// pressurePoll is a school's poll reporting that it closed run's koi at
// its memory ceiling in the episode that began at 'at', and runs the
// other's koi.
func pressurePoll(school, run string, at time.Time, other string) *wire.PollRequest {
	req := &wire.PollRequest{School: school, Capacity: 1000, Clock: time.Now(), Runs: []wire.RunStatus{
		{Run: run, From: 0, To: 10, Pressure: "memory ceiling: school at 1.8GiB of its 2GiB limit (92%)", PressureAt: at}}}
	if other != "" {
		req.Runs = append(req.Runs, wire.RunStatus{Run: other, From: 0, To: 10, Target: 10, Koi: wire.KoiCounts{Connected: 10}})
	}
	return req
}

// Three memory ceilings reported by schools (the same episode repeated in
// every poll counts once) quarantine the run: paused by the keeper with
// the reason on the run in the API, an audit entry by "quarantine", a
// run.quarantined notice; the other run keeps running, and resuming
// clears the count.
func TestMemoryCeilingsQuarantineTheRun(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	bomb := seedRun(t, k, 10)
	calm, err := k.CreateRun(ctx, "test", RunSpec{Name: "calm", BehaviorSet: "bg", Koi: 10, Ramp: 100,
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api", Token: "xoxp-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil)
	addHook(t, k, WebhookSpec{Name: "ops", URL: rc.srv.URL, Kinds: []string{notify.NoticeRunQuarantined}})

	holdKoi(t, k, bomb.ID, "s1", "s2")
	t0 := time.Now()
	for i, school := range []string{"s1", "s1", "s1", "s2"} {
		at := t0
		if i >= 2 {
			at = t0.Add(time.Duration(i) * time.Second) // a new episode
		}
		if _, err := k.Poll(ctx, pressurePoll(school, bomb.ID, at, calm.ID)); err != nil {
			t.Fatal(err)
		}
		if i < 3 && k.State().Run(nil, bomb.ID).State != state.RunRunning {
			t.Fatalf("run paused after poll %d, before three distinct failures", i+1)
		}
	}
	var view struct {
		State      state.RunState    `json:"state"`
		Quarantine *state.Quarantine `json:"quarantine"`
		Switch     state.Switch      `json:"switch"`
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/"+bomb.ID, nil, &view); code != 200 {
		t.Fatalf("GET run: %d", code)
	}
	q := view.Quarantine
	if view.State != state.RunPaused || view.Switch.By != "quarantine" || q == nil || len(q.Failures) != 3 ||
		!strings.Contains(q.Reason, "3 school failures") || !strings.Contains(q.Reason, "memory ceiling") {
		t.Fatalf("quarantined run in the API: %+v %+v", view, q)
	}
	if got := k.State().Run(nil, calm.ID); got.State != state.RunRunning || got.Quarantine != nil {
		t.Errorf("the calm run: %s %+v", got.State, got.Quarantine)
	}
	found := false
	for _, e := range k.State().Audit(nil, 0, 100) {
		found = found || (e.Actor == "quarantine" && e.Action == "quarantine run" && e.Object == bomb.ID)
	}
	if !found {
		t.Error("no audit entry by quarantine")
	}
	d := rc.waitKind(t, notify.NoticeRunQuarantined, 5*time.Second)
	if !strings.Contains(string(d.body), "3 school failures") {
		t.Errorf("notice: %s", d.body)
	}
	// A fourth report on a quarantined run changes nothing.
	if _, err := k.Poll(ctx, pressurePoll("s3", bomb.ID, t0.Add(time.Minute), "")); err != nil {
		t.Fatal(err)
	}
	if got := k.State().Run(nil, bomb.ID); len(got.Quarantine.Failures) != 3 {
		t.Errorf("failures on a quarantined run: %d", len(got.Quarantine.Failures))
	}
	// Resume clears it; an old episode reported again counts anew only
	// as one failure.
	if _, err := k.SetRunState(ctx, "alice", bomb.ID, wire.Running); err != nil {
		t.Fatal(err)
	}
	if got := k.State().Run(nil, bomb.ID); got.State != state.RunRunning || got.Quarantine != nil {
		t.Fatalf("after resume: %s %+v", got.State, got.Quarantine)
	}
}

// holdKoi has schools poll until the scheduler has given each of them
// koi of run.
func holdKoi(t *testing.T, k *Keeper, run string, schools ...string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(testPoll) {
		all := true
		for _, s := range schools {
			if _, err := k.Poll(context.Background(), &wire.PollRequest{School: s, Capacity: 1000, Clock: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if a := k.State().Assignment(nil, run, s); a == nil || a.Count() == 0 {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s, schools %v do not all hold koi of run %s", schools, run)
		}
	}
}

// A school that holds none of a run's koi cannot blame it: its memory
// ceilings count nothing (three of them, each a new episode, quarantined
// the run), and its refusals are not remembered (a map a liar could grow
// by a thousand runs a poll).
func TestStrangersCannotBlameOrRefuseARun(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	run := seedRun(t, k, 10)
	holdKoi(t, k, run.ID, "holder")
	t0 := time.Now()
	for i := range 3 {
		req := pressurePoll("stranger", run.ID, t0.Add(time.Duration(i)*time.Second), "")
		req.Capacity = 0 // so the scheduler never gives it koi of the run
		req.Runs = append(req.Runs, wire.RunStatus{Run: "run-made-up", Refused: "not on my allow list"})
		req.Runs[0].Refused = "not on my allow list"
		if _, err := k.Poll(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if got := k.State().Run(nil, run.ID); got.State != state.RunRunning || got.Quarantine != nil {
		t.Errorf("after a stranger's three memory ceilings the run is %s, quarantine %+v", got.State, got.Quarantine)
	}
	if r := k.refusing(run.ID, time.Now()); len(r) != 0 {
		t.Errorf("a stranger's refusals remembered: %v", r)
	}
	k.mu.Lock()
	n := len(k.refusals)
	k.mu.Unlock()
	if n != 0 {
		t.Errorf("%d refusals remembered, want none", n)
	}
	// The school that holds the run's koi is heard.
	if _, err := k.Poll(ctx, pressurePoll("holder", run.ID, t0, "")); err != nil {
		t.Fatal(err)
	}
	if got := k.State().Run(nil, run.ID); got.Quarantine == nil || len(got.Quarantine.Failures) != 1 {
		t.Errorf("the holder's memory ceiling: quarantine %+v, want one failure", got.Quarantine)
	}
}

// Schools that lose their lease while holding a run's koi count against
// it: after QuarantineAfter of them the keeper pauses the run instead of
// handing its koi to the next school.
func TestLostSchoolsQuarantineTheRun(t *testing.T) {
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.QuarantineAfter = 2 })
	// reported waits until the keeper has heard school s report n koi of
	// the run (a school holds koi once it says so).
	reported := func(s *fakeSchool, run string, n int) {
		t.Helper()
		wiretest.WaitFor(t, 10*time.Second, "the school to report the run", func() error {
			sc := k.State().School(nil, s.id)
			if sc != nil && sc.Status != nil {
				for _, rs := range sc.Status.Runs {
					if rs.Run == run && rs.Koi.Connected == n {
						return nil
					}
				}
			}
			return fmt.Errorf("school %s has not reported %d koi of %s", s.id, n, run)
		})
	}
	run := seedRun(t, k, 30)
	a, b, c := newFakeSchool(t, k, "a", 30), newFakeSchool(t, k, "b", 30), newFakeSchool(t, k, "c", 30)
	stop := runSchools(t, a)
	wiretest.WaitFor(t, 5*time.Second, "a to hold 30 koi", func() error {
		if span(a, run.ID) != 30 {
			return fmt.Errorf("a holds %d", span(a, run.ID))
		}
		return nil
	})
	reported(a, run.ID, 30)
	// a dies holding every koi: they move to b (one failure).
	stopB := runSchools(t, b)
	stop(a)
	wiretest.WaitFor(t, 10*time.Second, "b to hold 30 koi", func() error {
		if span(b, run.ID) != 30 {
			return fmt.Errorf("b holds %d", span(b, run.ID))
		}
		return nil
	})
	reported(b, run.ID, 30)
	if got := k.State().Run(nil, run.ID); got.State != state.RunRunning || got.Quarantine == nil || len(got.Quarantine.Failures) != 1 ||
		got.Quarantine.Failures[0].Cause != state.FailureCrash || got.Quarantine.Failures[0].School != "a" {
		t.Fatalf("after the first loss: %s %+v", got.State, got.Quarantine)
	}
	// b dies too: the run is paused, not handed on running.
	runSchools(t, c)
	stopB(b)
	wiretest.WaitFor(t, 10*time.Second, "the run paused in quarantine", func() error {
		got := k.State().Run(nil, run.ID)
		if got.State != state.RunPaused || !got.Quarantined() {
			return fmt.Errorf("run %s, quarantine %+v", got.State, got.Quarantine)
		}
		return nil
	})
	got := k.State().Run(nil, run.ID)
	if !strings.Contains(got.Quarantine.Reason, "crash") || !strings.Contains(got.Quarantine.Reason, "school b") || got.Switch.By != "quarantine" {
		t.Errorf("reason %q by %q", got.Quarantine.Reason, got.Switch.By)
	}
	// c still gets the range, paused: its koi do not start.
	wiretest.WaitFor(t, 5*time.Second, "the paused assignment", func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.last == nil || len(c.last.Assignments) != 1 || c.last.Assignments[0].Switch.State != wire.Paused {
			return fmt.Errorf("c's assignments: %+v", c.last)
		}
		return nil
	})
}

func TestQuarantineConfigValidate(t *testing.T) {
	for _, c := range []Config{{QuarantineAfter: -2}, {QuarantineAfter: 1001}, {QuarantineWindow: -time.Second}} {
		if errs := c.validateQuarantine(); len(errs) != 1 {
			t.Errorf("%+v: %v", c, errs)
		}
	}
	if errs := (Config{QuarantineAfter: -1, QuarantineWindow: time.Hour}).validateQuarantine(); len(errs) != 0 {
		t.Errorf("a good config: %v", errs)
	}
}
