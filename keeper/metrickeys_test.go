package keeper

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats.go"
)

// rawSnapshot encodes counts under keys as a school that lies would: a
// Recorder would clean its keys first.
func rawSnapshot(t *testing.T, counts map[string]uint64) []byte {
	t.Helper()
	s := &metrics.Snapshot{Start: time.Now().Add(-time.Second), End: time.Now(), Series: map[string]*metrics.SeriesSnapshot{}}
	for key, n := range counts {
		s.Series[key] = &metrics.SeriesSnapshot{Counts: [metrics.NumOutcomes]uint64{n}}
	}
	enc, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// publishSnapshot publishes a one-run metrics report of snap, for the last
// second, as school with sequence number seq.
func publishSnapshot(t *testing.T, nc *nats.Conn, school string, seq uint64, run string, snap []byte) {
	t.Helper()
	data, err := wire.Encode(&wire.MetricsReport{School: school, Seq: seq, Start: time.Now().Add(-time.Second), End: time.Now(),
		Runs: []wire.RunMetrics{{Run: run, Snapshot: snap}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(wire.SubjectMetrics, data); err != nil {
		t.Fatal(err)
	}
}

// A school that sends metric keys a megabyte long, with control
// characters or not UTF-8, has that run's report refused whole, counted
// as a bad snapshot and logged in a short line; the keeper keeps none of
// its keys and goes on merging good reports. Without the bound, 500 such
// keys would be kept per run, and every /metrics scrape would print each
// up to 14 times.
func TestHostileMetricKeysRefused(t *testing.T) {
	logs := &lockedBuffer{}
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	run := seedRun(t, k, 10)
	nc := schoolConn(t, k)
	defer nc.Close()
	huge := "api:" + strings.Repeat("h", 1<<20)
	hostile := []map[string]uint64{
		{huge: 1, "api:chat.postMessage": 5},
		{"api:a\nb": 1},
		{"event:\xff\xfe": 1},
		{"": 1},
		{"api:" + strings.Repeat("k", metrics.MaxKeyLen-3): 1}, // one byte over
	}
	seq := uint64(0)
	send := func(snap []byte) {
		t.Helper()
		seq++
		publishSnapshot(t, nc, "liar", seq, run.ID, snap)
	}
	for _, counts := range hostile {
		send(rawSnapshot(t, counts))
	}
	nc.Flush()
	wiretest.WaitFor(t, 5*time.Second, "every hostile report refused", func() error {
		if n := k.Rejections()["metrics: bad snapshot"]; n != uint64(len(hostile)) {
			return fmt.Errorf("%d refused as bad snapshots, want %d (%v)", n, len(hostile), k.Rejections())
		}
		return nil
	})
	if total, _, _ := k.agg.total(run.ID); total != nil && len(total.Series) > 0 {
		t.Errorf("refused reports left keys: %q", total.Keys())
	}
	good := "api:" + strings.Repeat("k", metrics.MaxKeyLen-4) // at the bound
	send(rawSnapshot(t, map[string]uint64{good: 2, "api:chat.postMessage": 3}))
	nc.Flush()
	wiretest.WaitFor(t, 5*time.Second, "the good report merged", func() error {
		total, _, _ := k.agg.total(run.ID)
		if total == nil || len(total.Series) != 2 || total.Series[good].Total() != 2 || total.Series["api:chat.postMessage"].Total() != 3 {
			return fmt.Errorf("total %v", total)
		}
		return nil
	})
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 2048 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
		if strings.Contains(line, "bad snapshot") && !strings.Contains(line, "1048580 bytes long (at most 512)") {
			t.Errorf("the first refusal's line does not say what was wrong: %s", line)
		}
	}
}

// A checkpoint written before metric keys were bounded keeps its counts
// across a restart: its long or unprintable keys are restored under their
// metrics.CleanKey, which is what schools now report them under, so new
// reports add to them.
func TestCheckpointWithUnboundedKeysRestored(t *testing.T) {
	_, samePort := samePortNATS(t)
	dir := t.TempDir()
	k := openKeeper(t, dir, samePort)
	run := seedRun(t, k, 10)
	long := "http:GET http://127.0.0.1:9090/" + strings.Repeat("p", 2000)
	old := rawSnapshot(t, map[string]uint64{long: 7, "behavior:a\tb": 4, "api:auth.test": 9})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.store.Write(ctx, func(tx *state.Txn) error {
		return tx.PutCheckpoint(&state.Checkpoint{Run: run.ID, At: time.Now(), Snapshot: old, FramesIn: 11})
	}); err != nil {
		t.Fatal(err)
	}
	k.Close()

	k2 := openKeeper(t, dir, samePort)
	total, tr, _ := k2.agg.total(run.ID)
	if total == nil || tr.FramesIn != 11 {
		t.Fatalf("nothing restored: %v, traffic %+v", total, tr)
	}
	if err := total.CheckKeys(); err != nil {
		t.Errorf("restored keys: %v", err)
	}
	for key, want := range map[string]uint64{metrics.CleanKey(long): 7, metrics.CleanKey("behavior:a\tb"): 4, "api:auth.test": 9} {
		if ss := total.Series[key]; ss == nil || ss.Total() != want {
			t.Errorf("restored %.40q…: %+v, want %d", key, ss, want)
		}
	}
	if len(total.Series) != 3 {
		t.Errorf("restored keys %q", total.Keys())
	}
	// A school of this version reports the long key cleaned: it adds up.
	nc := schoolConn(t, k2)
	defer nc.Close()
	publishSnapshot(t, nc, "s1", 1, run.ID, rawSnapshot(t, map[string]uint64{metrics.CleanKey(long): 1}))
	nc.Flush()
	wiretest.WaitFor(t, 5*time.Second, "the new report added to the restored key", func() error {
		total, _, _ := k2.agg.total(run.ID)
		if n := total.Series[metrics.CleanKey(long)].Total(); n != 8 {
			return fmt.Errorf("%d counted under the long key, want 8", n)
		}
		return nil
	})
}

// End to end, real keeper, school and pond: a behavior whose name is too
// long for a metric key is measured under its metrics.CleanKey by the
// school and judged under the same key by the keeper, so its counts reach
// the report and its fidelity verdict is within, not missing.
func TestLongBehaviorNameMeasuredAndJudged(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	p := openPond(t, nil)
	openSchool(t, k, k.NATSURL(), "s1", 100)
	long := "steady " + strings.Repeat("ś", 600) // 1,207 bytes
	set := `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {"` + long + `": {"frequency": 0.5, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`
	run := fidelityRun(t, k, p, "longname", set, 40, 8, nil)
	rep := finalReport(t, k, run.ID, 90*time.Second)
	key := metrics.CleanKey("behavior:" + long)
	var count uint64
	for _, rk := range rep.Keys {
		if rk.Key == key {
			count = rk.Count
		}
		if metrics.KeyProblem(rk.Key) != "" {
			t.Errorf("report key %.40q…: %s", rk.Key, metrics.KeyProblem(rk.Key))
		}
	}
	// 40 koi × 0.5 a minute × 8 behavior-minutes: 160 expected.
	if count < 80 {
		t.Errorf("the long behavior counted %d times under %.40q…, want about 160", count, key)
	}
	if rep.Fidelity == nil || len(rep.Fidelity.Behaviors) != 1 {
		t.Fatalf("fidelity %+v", rep.Fidelity)
	}
	logFidelity(t, "long name", rep.Fidelity)
	if b := rep.Fidelity.Behaviors[0]; b.Verdict != state.FidelityWithin || !strings.HasPrefix(long, strings.TrimSuffix(b.Behavior, "…")[:100]) {
		t.Errorf("the long behavior's verdict: %.60q… %s (%s), want within", b.Behavior, b.Verdict, b.Cause)
	}
}
