package school_test

import (
	"context"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// slowTemplateSet has one behavior whose pre_action is legal and slow:
// 66,000 range iterations (within MaxIterations), each hashing 7 KB.
const slowTemplateSet = `{"behaviors": {"slow": {"frequency": 1, "steps": [{"pre_actions": [
  "{{ $s := repeat 1000 \"abcdefg\" }}{{ range until 6000 }}{{ range until 10 }}{{ $h := sha256sum $s }}{{ end }}{{ end }}"]}]}}}`

// A global stop over NATS ends every koi while they run a slow template,
// most of them queued for a template executor: the school has no koi
// running in well under the time one rendering takes alone (it used to
// wait for every queued rendering to run to its end: 32 koi, 43 s).
func TestGlobalStopEndsKoiBusyWithTemplates(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	hash := addSet(t, k, slowTemplateSet)

	// One rendering alone, on this machine as it is now.
	set, diags := behaviors.Parse(behaviors.File{Name: "set.json", Data: []byte(slowTemplateSet)})
	if set == nil {
		t.Fatal(diags)
	}
	rt, err := koi.NewRuntime(koi.RuntimeConfig{Set: set})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := rt.New(behaviors.Identity{}, 1).RunSequence(context.Background(), set.Behavior("slow").Sequence, nil); err != nil {
		t.Fatalf("the slow behavior alone: %v", err)
	}
	one := time.Since(start)

	n := 4 * behaviors.MaxExecutors()
	k.set(func(k *fakeKeeper) {
		k.leaseMS = (10 * time.Minute).Milliseconds()
		k.assignments["*"] = []wire.Assignment{{Run: "slow", From: 0, To: n, Ramp: 1000, Spec: wire.RunSpec{Name: "slow", BehaviorSet: hash,
			Token: "t{{.Index}}", TimeScale: 60}}} // a minute is 1 s: every koi starts its behavior within a second
	})
	s := openSchool(t, url, school.Config{ID: "s1", StopTimeout: time.Minute})
	wiretest.Until(t, 30*time.Second, "every koi running", func() bool { return s.Status().KoiRunning == n })
	time.Sleep(2 * time.Second) // every koi's first firing: most wait for an executor

	stopAt := time.Now()
	k.publish(wire.Control{Epoch: 2, State: wire.Stopped, By: "test", At: time.Now()})
	wiretest.Until(t, 10*time.Minute, "the stop applied", func() bool { return s.Status().Switch == wire.Stopped })
	applied := time.Since(stopAt)
	wiretest.Until(t, 10*time.Minute, "no koi running", func() bool { return s.Status().KoiRunning == 0 })
	took := time.Since(stopAt)
	t.Logf("global stop: applied after %v, %d koi ended %v after the control message; one rendering alone takes %v", applied, n, took, one)
	// The school applies the switch (cancelling every koi) under its lock,
	// and the koi end after that: they must not wait for their templates.
	// The switch itself reaches a school whose CPUs the templates keep
	// busy: the whole stop is bounded more loosely.
	if ended := took - applied; ended > one/4 {
		t.Errorf("the koi ended %v after the stop was applied, more than a quarter of one rendering alone (%v): the stop waited for templates", ended, one)
	}
	if took > one {
		t.Errorf("the koi ended %v after the control message, more than one rendering alone (%v)", took, one)
	}
}
