package school_test

import (
	"math"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// reportedExposure decodes the exposure of run r1 in reports[from:], and
// the time they span.
func reportedExposure(t *testing.T, k *fakeKeeper, from int) (e metrics.Exposure, n int, start, end time.Time) {
	t.Helper()
	k.mu.Lock()
	reports := append([]wire.MetricsReport(nil), k.reports[min(from, len(k.reports)):]...)
	k.mu.Unlock()
	for _, rep := range reports {
		for _, rm := range rep.Runs {
			if rm.Run != "r1" {
				continue
			}
			var s metrics.Snapshot
			if err := s.UnmarshalBinary(rm.Snapshot); err != nil {
				t.Fatal(err)
			}
			if s.Exposure == nil {
				t.Fatalf("report %d of run r1 carries no exposure", rep.Seq)
			}
			e.Merge(s.Exposure)
			if n == 0 {
				start = rep.Start
			}
			end = rep.End
			n++
		}
	}
	return e, n, start, end
}

func reportCount(k *fakeKeeper) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.reports)
}

// A school's metrics reports carry its koi's exposure: while its 10 koi
// run, about 10 koi-minutes per behavior minute of report time (time
// scale 60: a minute a second); while they are paused, none.
func TestReportsCarryExposure(t *testing.T) {
	const n = 10
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	rec := newRecorder(t)
	hash := addSet(t, k, `{"behaviors": {"q": {"frequency": 0.05, "steps": [{"request": {"type": "api", "method": "q"}}]}}}`)
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = []wire.Assignment{{Run: "r1", From: 0, To: n,
			Spec: wire.RunSpec{BehaviorSet: hash, APIBase: rec.srv.URL + "/api", Token: "t{{.Index}}", TimeScale: 60}}}
	})
	s := openSchool(t, url, school.Config{ID: "s1", MetricsInterval: 200 * time.Millisecond})
	wiretest.Until(t, 20*time.Second, "10 koi connected", func() bool {
		st := s.Status()
		return len(st.Runs) == 1 && st.Runs[0].Koi.Connected == n
	})
	// Running: the reports after the next one (every koi ran all along)
	// hold n koi-minutes a second of the time they span, give or take the
	// moments the folds happen in their intervals (a few ms each end).
	wiretest.Until(t, 10*time.Second, "a report with every koi running", func() bool { return reportCount(k) > 0 })
	mark := reportCount(k) + 1
	wiretest.Until(t, 20*time.Second, "two seconds of reports", func() bool {
		_, got, start, end := reportedExposure(t, k, mark)
		return got > 0 && end.Sub(start) >= 2*time.Second
	})
	e, _, start, end := reportedExposure(t, k, mark)
	want := n * end.Sub(start).Seconds()
	t.Logf("running: %.3f koi-minutes over %v of reports (%d koi: %.3f)", e.KoiMinutes(), end.Sub(start), n, want)
	if d := math.Abs(e.KoiMinutes() - want); d > 0.05*want {
		t.Errorf("running: %.3f koi-minutes over %v of reports, want %.3f ± 5%%", e.KoiMinutes(), end.Sub(start), want)
	}
	// Every koi has activity 1 (no spread): the weighted sums are the
	// minutes.
	for h := range 24 {
		if math.Abs(e.Weighted[h]-e.Minutes[h]) > 1e-9*e.Minutes[h] || math.Abs(e.Squared[h]-e.Minutes[h]) > 1e-9*e.Minutes[h] {
			t.Errorf("hour %d: %v minutes, weighted %v, squared %v; want all equal", h, e.Minutes[h], e.Weighted[h], e.Squared[h])
		}
	}

	// Paused: once every koi has paused, reports carry nothing.
	k.publish(wire.Control{Epoch: 2, State: wire.Paused, By: "test", At: time.Now()})
	wiretest.Until(t, 10*time.Second, "every koi paused", func() bool {
		st := s.Status()
		return len(st.Runs) == 1 && st.Runs[0].Koi.Paused == n
	})
	mark = reportCount(k) + 1 // the next report may still hold the pause's first moments
	wiretest.Until(t, 20*time.Second, "a second of paused reports", func() bool {
		_, got, start, end := reportedExposure(t, k, mark)
		return got > 0 && end.Sub(start) >= time.Second
	})
	if e, got, start, end := reportedExposure(t, k, mark); e.KoiMinutes() != 0 {
		t.Errorf("paused: %d reports over %v hold %v koi-minutes", got, end.Sub(start), e.KoiMinutes())
	}

	// Resumed: exposure again.
	k.publish(wire.Control{Epoch: 3, State: wire.Running, By: "test", At: time.Now()})
	mark = reportCount(k)
	wiretest.Until(t, 20*time.Second, "exposure after the resume", func() bool {
		e, _, _, _ := reportedExposure(t, k, mark)
		return e.KoiMinutes() > n/2
	})
}
