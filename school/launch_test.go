package school_test

import (
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A school reports a launch's koi as they go: planned koi that are not
// connected here are cancelled at once (with the reason), a pause aborts
// the ones still waiting in the window (cancelled too), and the ones that
// began and got an answer are finished; the three always add up to the
// plan once every koi has ended.
func TestLaunchCountsPausedMidWindow(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	rec := newRecorder(t)
	hash := addSet(t, k, `{"behaviors": {}}`)
	form := []byte(`{"name": "slow", "begin_within_secs": 30, "percent": 100,
	  "sequence": {"steps": [{"request": {"type": "api", "method": "slow.go"}}]}}`)
	k.set(func(k *fakeKeeper) {
		k.blobs["formhash"] = []wire.File{{Name: "slow.json", Data: form}}
		k.assignments["a"] = []wire.Assignment{{Run: "r1", From: 0, To: 20,
			Spec: wire.RunSpec{BehaviorSet: hash, APIBase: rec.srv.URL + "/api", Token: "t{{.Index}}"}}}
	})
	s := openSchool(t, url, school.Config{ID: "a"})
	wiretest.Until(t, 10*time.Second, "20 koi connected", func() bool {
		st := s.Status()
		return len(st.Runs) == 1 && st.Runs[0].Koi.Connected == 20
	})
	// 23 planned here, 20 connected: 3 cannot run. The window is 30 s.
	k.set(func(k *fakeKeeper) {
		k.launches = []wire.Launch{{ID: "l1", Run: "r1", Formation: "formhash", Name: "slow", Start: time.Now(), BeginWithinMS: 30000, Count: 23, MetricKey: "formation:slow#l1"}}
	})
	status := func() wire.LaunchStatus {
		pr, _ := k.lastPoll("a")
		if len(pr.Launches) != 1 {
			return wire.LaunchStatus{}
		}
		return pr.Launches[0]
	}
	wiretest.Until(t, 20*time.Second, "a few koi finished", func() bool { return status().Finished >= 2 })
	k.publish(wire.Control{Epoch: 2, State: wire.Paused, By: "test", At: time.Now()})
	wiretest.Until(t, 10*time.Second, "every koi ended", func() bool {
		ls := status()
		return ls.Finished+ls.Failed+ls.Cancelled == 23
	})
	ls := status()
	calls := len(rec.times("slow.go"))
	if ls.Planned != 23 || ls.Failed != 0 || ls.Started != ls.Finished || ls.Finished != calls || ls.Cancelled != 23-calls || ls.Cancelled < 3+1 {
		t.Errorf("report %+v; the target saw %d calls", ls, calls)
	}
	if !strings.Contains(ls.Error, "only 20 of the 23 planned koi are connected here") {
		t.Errorf("error %q", ls.Error)
	}
	// Nothing more starts while paused.
	time.Sleep(500 * time.Millisecond)
	if n := len(rec.times("slow.go")); n != calls {
		t.Errorf("%d calls after the pause, %d before", n, calls)
	}
}
