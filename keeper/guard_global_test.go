package keeper

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A global rule pauses everything (the global switch) when one run's
// metrics trip it; the action is recorded on that run.
func TestGlobalGuardrailPausesEverything(t *testing.T) {
	r := newRig(t, 100)
	p := newPond(t, nil)
	var gv GuardrailsView
	body := map[string]any{"rules": []state.GuardrailRule{{Name: "global-health", Key: "api:*", When: "error_rate >= 10%", For: "2s", Action: "pause"}}}
	if code := (wiretest.API{Base: "http://" + r.k.HTTPAddr()}).Do(t, "PUT", "/api/v1/guardrails", body, &gv); code != 200 || len(gv.Rules) != 1 || gv.Rules[0].MinCount != 10 {
		t.Fatalf("put: %d %+v", code, gv)
	}
	run, err := r.k.CreateRun(context.Background(), "test", spec("g", p, 20))
	if err != nil {
		t.Fatal(err)
	}
	waitTraffic(t, p, 100)
	time.Sleep(time.Second)
	if sw := r.k.State().Switch(nil); sw.State != wire.Running {
		t.Fatalf("switch %s before the fault", sw.State)
	}
	faultAt := time.Now()
	_ = p.SetFaults(map[string]pond.Fault{"auth.test": {Error: 0.5}})
	wiretest.WaitFor(t, 10*time.Second, "the global switch to pause", func() error {
		if r.k.State().Switch(nil).State != wire.Paused {
			return errors.New("global switch not paused")
		}
		return nil
	})
	sw := r.k.State().Switch(nil)
	t.Logf("global switch paused by %s %v after the fault", sw.By, sw.At.Sub(faultAt).Round(time.Millisecond))
	if sw.By != "guardrail:global-health" {
		t.Errorf("paused by %q", sw.By)
	}
	got := r.run(run.ID)
	if len(got.GuardActions) != 1 || got.GuardActions[0].Scope != "global" || !strings.Contains(got.GuardActions[0].Detail, "global switch paused") {
		t.Errorf("actions %+v", got.GuardActions)
	}
	if len(auditWith(r.k, "guardrail:global-health", "(global rule)")) != 1 {
		t.Error("no audit entry for the global rule")
	}
	// Paused everywhere: pond hears nothing more.
	time.Sleep(500 * time.Millisecond)
	before := p.Stats().RequestsTotal
	time.Sleep(time.Second)
	if d := p.Stats().RequestsTotal - before; d != 0 {
		t.Errorf("%d requests reached pond with the switch paused", d)
	}
}

// A global shed rule sheds every running run once per firing, even when
// several runs trip it in the same second.
func TestGlobalShedShedsEveryRunOnce(t *testing.T) {
	r := newRig(t, 200)
	p := newPond(t, map[string]pond.Fault{"auth.test": {Error: 0.5}})
	if _, err := r.k.SetGuardrails(context.Background(), "test", []state.GuardrailRule{{Name: "g-shed", Key: "api:auth.test", When: "error_rate > 20%", For: "2s", Action: "shed 50%"}}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, name := range []string{"one", "two"} {
		run, err := r.k.CreateRun(context.Background(), "test", spec(name, p, 20))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	wiretest.WaitFor(t, 20*time.Second, "every run shed", func() error {
		for _, id := range ids {
			if r.run(id).ShedPercent == 0 {
				return errors.New("not every run is shed yet")
			}
		}
		return nil
	})
	_ = p.SetFaults(nil)
	for _, id := range ids {
		got := r.run(id)
		if got.ShedPercent != 50 || len(got.GuardActions) != 1 || got.GuardActions[0].Scope != "global" || got.GuardActions[0].Rule != "g-shed" {
			t.Errorf("run %s: shed %g, actions %+v", got.Name, got.ShedPercent, got.GuardActions)
		}
	}
	if n := len(auditWith(r.k, "guardrail:g-shed", "(global rule)")); n != 1 {
		t.Errorf("%d firings audited, want 1", n)
	}
	wiretest.WaitFor(t, 10*time.Second, "2 × 10 koi at pond", func() error {
		if ws := p.Stats().WebsocketsOpen; ws != 20 {
			return errors.New("pond does not see 2 × 10 koi yet")
		}
		return nil
	})
}
