package school_test

import (
	"math"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// launchOffsets runs a launch of every one of 40 connected koi over a
// window of the given length and returns the start-offset bins the school
// reports once every koi has begun.
func launchOffsets(t *testing.T, cfg school.Config, window time.Duration) wire.LaunchStatus {
	t.Helper()
	const n = 40
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	rec := newRecorder(t)
	hash := addSet(t, k, `{"behaviors": {}}`)
	form := []byte(`{"name": "spread", "begin_within_secs": 1, "percent": 100,
	  "sequence": {"steps": [{"request": {"type": "api", "method": "spread.go"}}]}}`)
	k.set(func(k *fakeKeeper) {
		k.blobs["formhash"] = []wire.File{{Name: "spread.json", Data: form}}
		k.assignments["*"] = []wire.Assignment{{Run: "r1", From: 0, To: n,
			Spec: wire.RunSpec{BehaviorSet: hash, APIBase: rec.srv.URL + "/api", Token: "t{{.Index}}"}}}
	})
	cfg.ID = "a"
	s := openSchool(t, url, cfg)
	wiretest.Until(t, 20*time.Second, "40 koi connected", func() bool {
		st := s.Status()
		return len(st.Runs) == 1 && st.Runs[0].Koi.Connected == n
	})
	k.set(func(k *fakeKeeper) {
		k.launches = []wire.Launch{{ID: "l1", Run: "r1", Formation: "formhash", Name: "spread", Start: time.Now().Add(300 * time.Millisecond),
			BeginWithinMS: window.Milliseconds(), Count: n, MetricKey: "formation:spread#l1"}}
	})
	var ls wire.LaunchStatus
	wiretest.Until(t, window+30*time.Second, "every koi began, its start binned", func() bool {
		pr, _ := k.lastPoll("a")
		if len(pr.Launches) != 1 {
			return false
		}
		ls = pr.Launches[0]
		return ls.Started == n && sum(ls.Offsets) == n
	})
	if len(ls.Offsets) != wire.LaunchOffsetBins {
		t.Fatalf("%d offset bins, want %d", len(ls.Offsets), wire.LaunchOffsetBins)
	}
	return ls
}

func sum(bins []uint32) int {
	var s int
	for _, b := range bins {
		s += int(b)
	}
	return s
}

// ksDistance is the Kolmogorov–Smirnov distance between the binned starts
// and the uniform distribution over the window, at the bins' edges.
func ksDistance(bins []uint32) float64 {
	var d, cum float64
	total := float64(sum(bins))
	for i, b := range bins {
		cum += float64(b)
		d = max(d, math.Abs(cum/total-float64(i+1)/float64(len(bins))))
	}
	return d
}

// A launch's koi start at uniform moments of its window, and the school
// bins each real start by its offset: the bins pass a Kolmogorov–Smirnov
// check at the 0.1% level (critical distance 1.95/√n, plus one bin for the
// binning). The test-only fault TestClumpLaunches starts them all at the
// launch instant: every start is in the window's first 5%.
func TestLaunchReportsStartOffsets(t *testing.T) {
	t.Run("uniform", func(t *testing.T) {
		ls := launchOffsets(t, school.Config{}, 3*time.Second)
		d, crit := ksDistance(ls.Offsets), 1.95/math.Sqrt(40)+1.0/wire.LaunchOffsetBins
		t.Logf("offsets %v: KS distance %.3f (critical %.3f)", ls.Offsets, d, crit)
		if d > crit {
			t.Errorf("starts %v are not uniform over the window: KS distance %.3f > %.3f", ls.Offsets, d, crit)
		}
	})
	t.Run("clumped", func(t *testing.T) {
		ls := launchOffsets(t, school.Config{TestClumpLaunches: true}, 60*time.Second)
		early := sum(ls.Offsets[:wire.LaunchOffsetBins*5/100])
		t.Logf("offsets %v: KS distance %.3f", ls.Offsets, ksDistance(ls.Offsets))
		if early != 40 {
			t.Errorf("with the clumping fault, %d of 40 starts in the window's first 5%%: %v", early, ls.Offsets)
		}
	})
}
