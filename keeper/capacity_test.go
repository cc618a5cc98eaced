package keeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A capacity search against a pond that starts failing once more than 25
// koi are connected (the test drives pond's faults from its websocket
// count): steps of 10, 20 hold, the step of 30 trips the guardrail, the
// search reports 20 sustained and holds the run there.
func TestCapacitySearchFindsTheLastStepThatHeld(t *testing.T) {
	r := newRig(t, 200)
	p := newPond(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var overAt time.Time
	wg.Add(1)
	go func() { // the target's breaking point: more than 25 koi
		defer wg.Done()
		for ctx.Err() == nil {
			if p.Stats().WebsocketsOpen > 25 && overAt.IsZero() {
				overAt = time.Now()
				_ = p.SetFaults(map[string]pond.Fault{"*": {Error: 0.5}})
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	s := spec("capacity", p, 0)
	s.Guardrails = []state.GuardrailRule{{Name: "errors", Key: "api:*", When: "error_rate > 10%", For: "2s", Action: "pause"}}
	s.Capacity = &state.CapacitySpec{Start: 10, Step: 10, StepSecs: 7, Max: 100, Then: "hold"}
	run, err := r.k.CreateRun(context.Background(), "test", s)
	if err != nil {
		t.Fatal(err)
	}
	if run.Koi != 10 || len(run.Warnings) != 0 {
		t.Fatalf("created: koi %d, warnings %q", run.Koi, run.Warnings)
	}
	wiretest.WaitFor(t, 40*time.Second, "the capacity search to end", func() error {
		if res := r.run(run.ID).CapacityResult; res == nil || !res.Done {
			return errors.New("the search goes on")
		}
		return nil
	})
	got := r.run(run.ID)
	res := got.CapacityResult
	for _, st := range res.Steps {
		p95 := "-"
		if st.P95 != nil {
			p95 = verdict.FormatValue(*st.P95, "ms")
		}
		t.Logf("step %d koi %s…%s held=%v rate %.1f/s errors %.1f%% p95 %s %s", st.Koi, st.From.Format("15:04:05.000"), st.To.Format("15:04:05.000"),
			st.Held, st.Rate, 100*st.ErrorRate, p95, st.Reason)
	}
	t.Logf("sustained %d: %s; run %s at %d koi", res.Sustained, res.Reason, got.State, got.Koi)
	if res.Sustained != 20 || len(res.Steps) != 3 || !res.Steps[0].Held || !res.Steps[1].Held || res.Steps[2].Held ||
		res.Steps[2].Koi != 30 || !strings.Contains(res.Reason, `guardrail "errors"`) {
		t.Errorf("result %+v", res)
	}
	if res.Steps[1].Rate < 1.5*res.Steps[0].Rate {
		t.Errorf("20 koi made %.1f/s, 10 koi %.1f/s: the steps did not add load", res.Steps[1].Rate, res.Steps[0].Rate)
	}
	if got.Koi != 20 || got.State != state.RunPaused {
		t.Errorf("after the search: %s at %d koi, want paused (by the guardrail) at 20", got.State, got.Koi)
	}
	if len(auditWith(r.k, "capacity", "capacity search done: 20 koi sustained")) != 1 || len(auditWith(r.k, "capacity", "koi 10 → 20")) != 1 {
		t.Error("the search is not in the audit trail")
	}
	r.noticesOf(t, notify.NoticeCapacity, run.ID, 1)
	rep, err := r.k.RunReport(run.ID)
	if err != nil || rep.Capacity == nil || rep.Capacity.Sustained != 20 {
		t.Errorf("report capacity: %+v %v", rep.Capacity, err)
	}
}

func TestFlattened(t *testing.T) {
	steps := []state.CapacityStep{{Koi: 100, Rate: 200, Held: true}, {Koi: 200, Rate: 390, Held: true}}
	// 2/s per koi at first; +10 koi must add at least 0.5 × 2 × 100 = 100/s.
	if flat, _ := flattened(steps, 300, 500, 0.5); flat {
		t.Error("+110/s for 100 koi flagged as flat")
	}
	if flat, why := flattened(steps, 300, 480, 0.5); !flat || !strings.Contains(why, "0.900/s per added koi < 0.5 × 2.000/s") {
		t.Errorf("+90/s for 100 koi: %v %q", flat, why)
	}
	if flat, _ := flattened(nil, 100, 1, 0.5); flat {
		t.Error("the first step cannot flatten")
	}
}

func TestBadCapacity(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	seedRun(t, k, 0)
	ok := state.CapacitySpec{Start: 10, Step: 10, StepSecs: 60, Max: 100}
	for _, c := range []struct {
		mut   func(*state.CapacitySpec)
		field string
	}{
		{func(c *state.CapacitySpec) { c.Start = 0 }, "capacity.start"},        // nothing to start with
		{func(c *state.CapacitySpec) { c.Step = 0 }, "capacity.step"},          // never grows
		{func(c *state.CapacitySpec) { c.StepSecs = 0 }, "capacity.step_secs"}, // no step length
		{func(c *state.CapacitySpec) { c.Max = 5 }, "capacity.max"},            // below start
		{func(c *state.CapacitySpec) { c.Max = MaxKoi + 1 }, "capacity.max"},   // over the limit
		{func(c *state.CapacitySpec) { c.Then = "pause" }, "capacity.then"},
		{func(c *state.CapacitySpec) { c.Step, c.Max = 1, 100_000 }, "capacity.step"},                                            // too many steps                                                      // not hold or stop
		{func(c *state.CapacitySpec) { c.Flatten = &state.CapacityFlatten{Key: "api:[", MinGain: 0.5} }, "capacity.flatten.key"}, // bad glob
		{func(c *state.CapacitySpec) { c.Flatten = &state.CapacityFlatten{Key: "api:*", MinGain: 0} }, "capacity.flatten.min_gain"},
	} {
		cs := ok
		c.mut(&cs)
		_, err := k.CreateRun(context.Background(), "test", RunSpec{Name: "c", BehaviorSet: "bg", Target: state.Target{APIBase: "http://127.0.0.1:9/api"}, Capacity: &cs})
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field {
			t.Errorf("%+v: %v, want field %s", cs, err, c.field)
		}
	}
	// A guardrail window too long for the steps is a warning.
	cs := ok
	cs.StepSecs = 30
	run, err := k.CreateRun(context.Background(), "test", RunSpec{Name: "c", BehaviorSet: "bg", Target: state.Target{APIBase: "http://127.0.0.1:9/api"}, Capacity: &cs,
		Guardrails: []state.GuardrailRule{{Key: "api:*", When: "p99 > 1s", For: "1m", Action: "pause"}}})
	if err != nil || len(run.Warnings) != 1 || !strings.Contains(run.Warnings[0], "longer than a capacity step") {
		t.Errorf("%v %q", err, run.Warnings)
	}
}

// A global pause and resume within a capacity step (by a person, or a
// global guardrail acting on another run) leaves the run's switch as it
// was; the step still starts over on the resume, so the paused seconds do
// not count in its rate.
func TestCapacityStepRestartsAfterGlobalPause(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	seedRun(t, k, 0)
	ctx := context.Background()
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: "c", BehaviorSet: "bg", Target: state.Target{APIBase: "http://127.0.0.1:9/api"},
		Capacity: &state.CapacitySpec{Start: 1, Step: 1, StepSecs: 600, Max: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.SetSwitch(ctx, "test", wire.Paused); err != nil {
		t.Fatal(err)
	}
	sw, err := k.SetSwitch(ctx, "test", wire.Running)
	if err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 5*time.Second, "the step to begin after the resume", func() error {
		if res := k.State().Run(nil, run.ID).CapacityResult; res.StepFrom.Before(sw.At) {
			return fmt.Errorf("the step began %v, before the resume at %v", res.StepFrom, sw.At)
		}
		return nil
	})
	if res := k.State().Run(nil, run.ID).CapacityResult; !res.StepFrom.Equal(sw.At) || len(res.Steps) != 0 || res.Done {
		t.Errorf("after the resume: %+v", res)
	}
}
