package keeper

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats.go/jetstream"
)

// pondCalls is how many auth.test calls pond answered, whatever the status.
func pondCalls(p *pond.Server) uint64 {
	var n uint64
	for _, c := range p.Stats().Requests["auth.test"] {
		n += c
	}
	return n
}

// A keeper closed and reopened on the same data dir in the middle of a run
// against pond still writes a final report covering both halves: the
// run's total is checkpointed into the KV (at most every 10 s, only when
// changed, and once more as the keeper closes), restored at Open and
// deleted with the final report.
//
// The bound, asserted against pond's own counts: the report never counts
// more calls than pond answered, and it misses at most what pond answered
// after the keeper began to close and before it reopened (metrics
// published while the keeper is down are buffered by the school's NATS
// client and usually arrive), plus one in-flight call per koi. (Without
// the closing checkpoint it would miss what was merged since the last
// periodic one too, up to 10 s; without checkpoints, the whole first
// half.) The run's exposure is restored as the closing keeper had it, or
// ahead of it by the reports merged while it closed.
func TestReportSurvivesKeeperRestartMidRun(t *testing.T) {
	natsURL, samePort := samePortNATS(t)
	dir := t.TempDir()
	k := openKeeper(t, dir, samePort)
	p := openPond(t, nil)
	openSchool(t, k, natsURL, "s1", 100)
	const koi = 20
	run := pondRun(t, k, p, "restarted", koi, 20)

	// Wait for the second checkpoint (the first is written with the first
	// metrics, the next its checkpointWait later), then let more arrive.
	var first time.Time
	var wait time.Duration
	wiretest.WaitFor(t, 5*time.Second, "a first checkpoint", func() error {
		if c := k.State().Checkpoint(nil, run.ID); c != nil {
			first, wait = c.At, checkpointWait(len(c.Snapshot))
			return nil
		}
		return errString("no checkpoint yet")
	})
	wiretest.WaitFor(t, wait+3*time.Second, "a newer checkpoint", func() error {
		if c := k.State().Checkpoint(nil, run.ID); c != nil && c.At.After(first) {
			return nil
		}
		return errString("no second checkpoint yet")
	})
	time.Sleep(1500 * time.Millisecond) // merged but not checkpointed periodically: the closing checkpoint has it
	ck := k.State().Checkpoint(nil, run.ID)
	if ck == nil {
		t.Fatal("the run settled before the restart: the machine is too slow for this test's 20 s run")
	}
	// Checkpoints go to a bucket of their own, which /metrics sizes.
	if cs, ok := k.kv.CheckpointStats(); !ok || cs.Written < int64(len(ck.Snapshot)) {
		t.Errorf("checkpoint bucket %+v (%v) after checkpoints of %d bytes", cs, ok, len(ck.Snapshot))
	}
	if prom := apiText(t, k, "/metrics"); !strings.Contains(prom, "\nkoipond_keeper_checkpoint_bucket_bytes ") || !strings.Contains(prom, "\nkoipond_keeper_checkpoint_rolls_total 0\n") {
		t.Error("/metrics lacks the checkpoint bucket's series")
	}
	snap := &metrics.Snapshot{}
	if err := snap.UnmarshalBinary(ck.Snapshot); err != nil {
		t.Fatal(err)
	}
	checkpointed := snap.Series["api:auth.test"].Total()
	before, _, _ := k.agg.total(run.ID)
	closeAt := time.Now()
	if age, most := closeAt.Sub(ck.At), checkpointWait(len(ck.Snapshot))+time.Second; age > most {
		t.Errorf("last checkpoint %v old at the close, want ≤ %v", age, most)
	}
	k.Close()
	pClose := pondCalls(p)

	k2 := openKeeper(t, dir, samePort)
	pReopen := pondCalls(p)
	closed := time.Now()
	restored, _, _ := k2.agg.total(run.ID)
	if got := restored.Series["api:auth.test"]; got == nil || got.Total() < before.Series["api:auth.test"].Total() {
		t.Fatalf("restored total %v, want at least the closing keeper's %d", got, before.Series["api:auth.test"].Total())
	}
	// The exposure (koi-minutes of schedule; time scale 60: koi × seconds)
	// is restored as the closing keeper had it, plus at most the reports
	// merged while it closed (koi × the close's seconds, and one metrics
	// interval).
	if snap.Exposure == nil || before.Exposure == nil || restored.Exposure == nil {
		t.Fatalf("exposure: checkpoint %+v, closing %+v, restored %+v", snap.Exposure, before.Exposure, restored.Exposure)
	}
	ahead := restored.Exposure.KoiMinutes() - before.Exposure.KoiMinutes()
	aheadBound := koi * (closed.Sub(closeAt) + time.Second).Seconds()
	t.Logf("exposure: %.1f koi-minutes in the periodic checkpoint, %.1f as the keeper closed, %.1f restored (%+.1f, bound %.1f)",
		snap.Exposure.KoiMinutes(), before.Exposure.KoiMinutes(), restored.Exposure.KoiMinutes(), ahead, aheadBound)
	if ahead < 0 || ahead > aheadBound {
		t.Errorf("restored exposure is %+.1f koi-minutes off the closing keeper's, want within [0, %.1f]", ahead, aheadBound)
	}
	rep := finalReport(t, k2, run.ID, 30*time.Second)
	pFinal := pondCalls(p)
	var got uint64
	for _, key := range rep.Keys {
		if key.Key == "api:auth.test" {
			got = key.Count
		}
	}
	lost := int64(pFinal) - int64(got)
	bound := int64(pReopen) - int64(before.Series["api:auth.test"].Total()) + koi
	t.Logf("pond answered %d auth.test calls (%d by the close, %d by the reopen); checkpoint held %d (the closing keeper had %d); report counts %d: %d missing, bound %d",
		pFinal, pClose, pReopen, checkpointed, before.Series["api:auth.test"].Total(), got, lost, bound)
	if got > pFinal {
		t.Errorf("report counts %d calls, pond answered only %d: double counting", got, pFinal)
	}
	if lost > bound {
		t.Errorf("report misses %d calls, more than the %d answered since the last checkpoint", lost, bound)
	}
	// The stored report's snapshot carries the exposure: everything
	// restored and merged since, never more than the koi could run.
	final := &metrics.Snapshot{}
	if err := final.UnmarshalBinary(rep.Snapshot); err != nil || final.Exposure == nil {
		t.Fatalf("the report's snapshot: %v, exposure %+v", err, final.Exposure)
	}
	t.Logf("report exposure: %.1f koi-minutes over %.1f s", final.Exposure.KoiMinutes(), rep.DurationSecs)
	if e := final.Exposure.KoiMinutes(); e < restored.Exposure.KoiMinutes() || e > koi*(rep.DurationSecs+1) {
		t.Errorf("report exposure %.1f koi-minutes: below the restored %.1f or above %d koi × %.1f s", e, restored.Exposure.KoiMinutes(), koi, rep.DurationSecs+1)
	}
	// Without the checkpoint the report would hold only what the reopened
	// keeper merged; the bound above requires the first half too.
	if !rep.Final || rep.DurationSecs < 19 {
		t.Errorf("report %+v", rep)
	}
	if c := k2.State().Checkpoint(nil, run.ID); c != nil {
		t.Errorf("checkpoint kept after the final report: %+v", c.At)
	}
}

// errString is an error made of a message.
type errString string

func (e errString) Error() string { return string(e) }

// A run's checkpoints come every 10 s while small and less often as they
// grow, 256 bytes a second, never rarer than once a minute: the busy run
// of issue 14's soak (a 15 KB total) checkpoints about once a minute.
func TestCheckpointWaitGrowsWithTheCheckpoint(t *testing.T) {
	for _, c := range []struct {
		size int
		want time.Duration
	}{
		{0, 10 * time.Second},
		{2560, 10 * time.Second},
		{5120, 20 * time.Second},
		{15_000, 15_000 * time.Second / 256},
		{256 << 10, time.Minute},
		{math.MaxInt, time.Minute}, // no overflow into a short or negative wait
	} {
		if got := checkpointWait(c.size); got != c.want {
			t.Errorf("checkpointWait(%d) = %v, want %v", c.size, got, c.want)
		}
	}
}

// A roll of the checkpoints' bucket that fails (here the next bucket's
// name is taken by a stream of another configuration) is tried again
// after checkpointRollBackoff, not at every scheduler pass, and
// checkpoints keep going to the current bucket meanwhile.
func TestCheckpointRollFailureBacksOff(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(k.conn())
	if err != nil {
		t.Fatal(err)
	}
	var gen uint64
	names := js.KeyValueStoreNames(ctx)
	for name := range names.Name() {
		if n, err := strconv.ParseUint(strings.TrimPrefix(name, DefaultBucket+"_ckpt_"), 10, 64); err == nil {
			gen = max(gen, n)
		}
	}
	if gen == 0 {
		t.Fatalf("no checkpoint bucket beside %q (%v)", DefaultBucket, names.Error())
	}
	taken := fmt.Sprintf("%s_ckpt_%d", DefaultBucket, gen+1)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: taken, History: 5}); err != nil {
		t.Fatal(err)
	}
	// Written past twice the live record and past 192 KiB: a roll is due.
	val := make([]byte, 100<<10)
	for range 3 {
		if err := k.kv.Put(ctx, "ckpt.probe", val); err != nil {
			t.Fatal(err)
		}
	}
	const cause = "checkpoint: rolling its bucket failed"
	wiretest.WaitFor(t, 10*time.Second, "a failed roll", func() error {
		if k.Rejections()[cause] == 0 {
			return errString("no failed roll yet")
		}
		return nil
	})
	// The scheduler passes every half poll interval: 40 passes.
	time.Sleep(20 * testPoll)
	if n := k.Rejections()[cause]; n != 1 {
		t.Errorf("%d failed rolls within %v of the first, want 1 (the next after %v)", n, 20*testPoll, checkpointRollBackoff)
	}
	if err := k.kv.Put(ctx, "ckpt.probe", []byte("after")); err != nil {
		t.Errorf("a checkpoint put after the failed roll: %v", err)
	}
}
