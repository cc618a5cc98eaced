package keeper

import (
	"fmt"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats.go"
)

// replayRig is a keeper with one run and a school connection "s1" that
// reports ten calls a report: report encodes one, count waits for the
// run's total.
type replayRig struct {
	report func(seq uint64, end time.Time) []byte
	count  func(want uint64)
}

func newReplayRig(t *testing.T) (*Keeper, *replayRig, *nats.Conn) {
	t.Helper()
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 10)
	nc := schoolConn(t, k)
	t.Cleanup(nc.Close)
	var rec metrics.Recorder
	for range 10 {
		rec.Observe("api:chat.postMessage", time.Millisecond, metrics.OK)
	}
	snap, _ := rec.Snapshot().MarshalBinary()
	r := &replayRig{}
	r.report = func(seq uint64, end time.Time) []byte {
		data, err := wire.Encode(&wire.MetricsReport{School: "s1", Seq: seq, Start: end.Add(-time.Second), End: end,
			Runs: []wire.RunMetrics{{Run: run.ID, Snapshot: snap}}})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	r.count = func(want uint64) {
		t.Helper()
		wiretest.WaitFor(t, 5*time.Second, fmt.Sprintf("%d calls counted", want), func() error {
			sum := k.RunMetrics(run.ID, time.Hour)
			if len(sum.Keys) != 1 || sum.Keys[0].Count != want {
				return fmt.Errorf("summary %+v", sum.Keys)
			}
			return nil
		})
	}
	return k, r, nc
}

// A school that sends a metrics report twice (a replay, or a peer that
// lies) has it counted once; its next report, the first report of a
// restarted school (sequence from 1 again, a later interval), and the
// next part of an interval sent in parts (same interval, next sequence)
// count.
func TestReplayedMetricsReportCountsOnce(t *testing.T) {
	k, r, nc := newReplayRig(t)
	report, count := r.report, r.count
	end := time.Now().Add(-30 * time.Second) // every interval in the past, inside the window read
	first := report(5, end)
	for range 3 { // the report and two replays of it
		nc.Publish(wire.SubjectMetrics, first)
	}
	nc.Publish(wire.SubjectMetrics, report(4, end.Add(-time.Second))) // an older one
	nc.Flush()
	count(10)
	wiretest.WaitFor(t, 5*time.Second, "the replays refused", func() error {
		if n := k.stats.rejections()["metrics: replayed report"]; n != 3 {
			return fmt.Errorf("%d refused as replayed, want 3", n)
		}
		return nil
	})
	nc.Publish(wire.SubjectMetrics, report(6, end.Add(time.Second)))    // the next
	nc.Publish(wire.SubjectMetrics, report(1, end.Add(10*time.Second))) // restarted
	nc.Flush()
	count(30)
	// An interval too large for one message comes in parts: the same
	// interval, the next sequence numbers. Each part counts, once.
	part := report(2, end.Add(10*time.Second))
	nc.Publish(wire.SubjectMetrics, part)
	nc.Publish(wire.SubjectMetrics, part)
	nc.Flush()
	count(40)
	wiretest.WaitFor(t, 5*time.Second, "the part's replay refused", func() error {
		if n := k.stats.rejections()["metrics: replayed report"]; n != 4 {
			return fmt.Errorf("%d refused as replayed, want 4", n)
		}
		return nil
	})
}

// A school whose clock ran decades ahead (or a peer that lies about its
// interval and sequence) does not silence that school's later, honest
// reports: the replay check reads the report's time as the keeper files
// it, where a time it cannot trust counts as the arrival.
func TestFutureReportDoesNotSilenceTheSchool(t *testing.T) {
	_, r, nc := newReplayRig(t)
	count := r.count
	publish := func(seq uint64, end time.Time) {
		nc.Publish(wire.SubjectMetrics, r.report(seq, end))
		nc.Flush()
	}
	publish(1<<62, time.Now().AddDate(50, 0, 0)) // filed under its arrival
	count(10)
	// The school's clock is put right and it restarts: its reports count.
	time.Sleep(10 * time.Millisecond)
	publish(1, time.Now())
	count(20)
	time.Sleep(10 * time.Millisecond)
	publish(2, time.Now())
	count(30)
}
