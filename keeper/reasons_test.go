package keeper

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// noTokenSet calls auth.test; without a token template pond answers
// every call with ok:false, not_authed.
const noTokenSet = `{"behaviors": {"auth": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`

// reasonCount returns the count of reason among rs.
func reasonCount(rs []state.Reason, reason string) uint64 {
	for _, r := range rs {
		if r.Reason == reason {
			return r.Count
		}
	}
	return 0
}

// A run's failure reasons are in its window summaries, its checkpoint
// (so a keeper restart keeps them, like the rest of the report) and its
// final report, where they account for every failure of the key.
func TestReasonsSurviveKeeperRestart(t *testing.T) {
	natsURL, samePort := samePortNATS(t)
	dir := t.TempDir()
	k := openKeeper(t, dir, samePort)
	p := openPond(t, nil)
	openSchool(t, k, natsURL, "s1", 100)
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "no-token", []behaviors.File{{Name: "no-token.json", Data: []byte(noTokenSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: "no-token", BehaviorSet: "no-token", Koi: 10, TimeScale: 60, DurationSecs: 8,
		Target: state.Target{APIBase: p.URL() + "/api"}})
	if err != nil {
		t.Fatal(err)
	}

	// The window summary says why.
	wiretest.WaitFor(t, 10*time.Second, "not_authed in the window summary", func() error {
		for _, ks := range k.RunMetrics(run.ID, 5*time.Second).Keys {
			if ks.Key == "api:auth.test" && reasonCount(ks.Reasons, "not_authed") > 0 {
				return nil
			}
		}
		return errString("no not_authed yet")
	})

	// The checkpoint holds the reasons.
	var checkpointed uint64
	wiretest.WaitFor(t, 10*time.Second, "a checkpoint with not_authed", func() error {
		c := k.State().Checkpoint(nil, run.ID)
		if c == nil {
			return errString("no checkpoint yet")
		}
		var snap metrics.Snapshot
		if err := snap.UnmarshalBinary(c.Snapshot); err != nil {
			return err
		}
		if ss := snap.Series["api:auth.test"]; ss != nil && len(ss.Reasons) > 0 && ss.Reasons[0].Reason == "not_authed" {
			checkpointed = ss.Reasons[0].Count
			return nil
		}
		return errString("checkpoint without not_authed")
	})
	k.Close()

	k2 := openKeeper(t, dir, samePort)
	restored, _, _ := k2.agg.total(run.ID)
	if ss := restored.Series["api:auth.test"]; ss == nil || len(ss.Reasons) == 0 || ss.Reasons[0].Count < checkpointed {
		t.Fatalf("restored total lost the reasons: %+v (checkpoint had not_authed ×%d)", ss, checkpointed)
	}
	rep := finalReport(t, k2, run.ID, 40*time.Second)
	for _, key := range rep.Keys {
		if key.Key != "api:auth.test" {
			continue
		}
		n := reasonCount(key.Reasons, "not_authed")
		t.Logf("report: api:auth.test %d calls, %d failures, not_authed ×%d (checkpoint had %d)", key.Count, key.Failures, n, checkpointed)
		if n < checkpointed || n != key.Failures || key.Failures != key.Count {
			t.Errorf("report: not_authed ×%d of %d failures of %d calls; want every call, at least the checkpoint's %d", n, key.Failures, key.Count, checkpointed)
		}
		return
	}
	t.Fatalf("the report has no api:auth.test: %+v", rep.Keys)
}

// A run whose every key fails in the most ways with the longest samples
// still gets its checkpoint: past the record's bound the samples are shed,
// not the checkpoint (and with it what a restart would keep).
func TestCheckpointOfAReasonHeavyRunShedsSamples(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "no-token", []behaviors.File{{Name: "no-token.json", Data: []byte(noTokenSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: "heavy", BehaviorSet: "no-token", Koi: 1,
		Target: state.Target{APIBase: "http://127.0.0.1:1/api"}})
	if err != nil {
		t.Fatal(err)
	}
	var r metrics.Recorder
	sample := strings.Repeat("x", metrics.MaxSampleLen)
	const keys = 120
	for i := range keys {
		s := r.Series(fmt.Sprintf("api:method.%03d", i))
		for j := range metrics.MaxReasons {
			s.ObserveReason(time.Millisecond, metrics.Error, fmt.Sprintf("error_%d_%s", j, strings.Repeat("e", 50)), sample)
		}
	}
	enc, err := r.Snapshot().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) <= state.MaxCheckpointSnapshot {
		t.Fatalf("fixture of %d bytes is within the %d byte bound: it tests nothing", len(enc), state.MaxCheckpointSnapshot)
	}
	if err := k.agg.add(run.ID, time.Now(), &wire.RunMetrics{Run: run.ID, Snapshot: enc}); err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 4*checkpointEvery, "the reason-heavy run's checkpoint", func() error {
		c := k.State().Checkpoint(nil, run.ID)
		if c == nil {
			return errString("no checkpoint yet")
		}
		var snap metrics.Snapshot
		if err := snap.UnmarshalBinary(c.Snapshot); err != nil {
			return err
		}
		if len(snap.Series) != keys {
			return fmt.Errorf("checkpoint has %d keys, want %d", len(snap.Series), keys)
		}
		for key, ss := range snap.Series {
			if ss.Failures() != metrics.MaxReasons || len(ss.Reasons) != metrics.MaxReasons || ss.Reasons[0].Sample != "" {
				return fmt.Errorf("%s: %d failures, reasons %+v; want %d reasons without samples", key, ss.Failures(), ss.Reasons, metrics.MaxReasons)
			}
		}
		return nil
	})
}
