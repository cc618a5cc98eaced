package keeper

import (
	"bytes"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// feedExposure reports, at second sec, one "event:message" and one
// koi-minute of exposure (activity 2) in the hour of day of sec: the
// exposure of any window or total must equal its event count.
func feedExposure(tb testing.TB, a *aggregator, sec int64) {
	tb.Helper()
	var rec metrics.Recorder
	rec.Count("event:message", metrics.OK)
	snap := rec.Snapshot()
	snap.Exposure = &metrics.Exposure{}
	snap.Exposure.Add(time.Unix(sec, 0).UTC().Hour(), 2, 1)
	data, err := snap.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.add("run", time.Unix(sec, 0), &wire.RunMetrics{Run: "run", Snapshot: data}); err != nil {
		tb.Fatal(err)
	}
}

// checkExposure fails unless snap's exposure matches its event count.
func checkExposure(t *testing.T, what string, snap *metrics.Snapshot) {
	t.Helper()
	var events uint64
	if ss := snap.Series["event:message"]; ss != nil {
		events = ss.Total()
	}
	if events == 0 {
		if snap.Exposure != nil && snap.Exposure.KoiMinutes() != 0 {
			t.Errorf("%s: exposure %v koi-minutes without a report", what, snap.Exposure.KoiMinutes())
		}
		return
	}
	if snap.Exposure == nil {
		t.Fatalf("%s: %d reports, no exposure", what, events)
	}
	e := snap.Exposure
	if e.KoiMinutes() != float64(events) {
		t.Errorf("%s: %v koi-minutes, want %d (one per report)", what, e.KoiMinutes(), events)
	}
	for h := range 24 {
		if e.Weighted[h] != 2*e.Minutes[h] || e.Squared[h] != 4*e.Minutes[h] {
			t.Errorf("%s: hour %d: minutes %v, weighted %v, squared %v (activity 2)", what, h, e.Minutes[h], e.Weighted[h], e.Squared[h])
		}
	}
}

// Exposure goes wherever a run's counts go: live second buckets, the
// zstd-encoded buckets of every tier they are merged into as they age,
// windows over any of them, the run's total, and a checkpoint restored
// into a new keeper's aggregator.
func TestExposureThroughTiersAndCheckpoint(t *testing.T) {
	a := newAggregator()
	newest := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC).Unix()
	var secs []int64
	for s := newest - 30*3600; s <= newest; { // as newExactRun: every tier holds data, some fell off
		secs = append(secs, s)
		switch age := newest - s; {
		case age > 2*3600:
			s += 97
		case age > 12*60:
			s += 7
		default:
			s++
		}
	}
	for _, s := range secs {
		feedExposure(t, a, s)
	}
	for _, w := range []struct {
		name   string
		lo, hi int64
	}{
		{"live seconds", newest - 1, newest + 1},
		{"last 5 min", newest - 299, newest + 1},
		{"last hour", newest - 3599, newest + 1},
		{"an hour, 3 h ago", newest - 4*3600, newest - 3*3600},
		{"last day", newest - 24*3600 + 1, newest + 1},
	} {
		snap, _ := a.window("run", time.Unix(w.lo, 0), time.Unix(w.hi, 0))
		checkExposure(t, w.name, snap)
	}
	total, _, _ := a.total("run")
	checkExposure(t, "total", total)
	var byHour [24]float64
	for _, s := range secs {
		byHour[time.Unix(s, 0).UTC().Hour()]++
	}
	if total.Exposure.Minutes != byHour {
		t.Errorf("total by hour %v, want %v", total.Exposure.Minutes, byHour)
	}

	// The checkpoint path: encoded within the checkpoint bound, decoded,
	// restored into a new aggregator, then merged into.
	snap, _, _ := a.totalAt("run")
	enc, err := snap.MarshalBinaryWithin(state.MaxCheckpointSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	back := &metrics.Snapshot{}
	if err := back.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	a2 := newAggregator()
	a2.restore("run", back, traffic{})
	restored, _, _ := a2.total("run")
	if restored.Exposure == nil || !restored.Exposure.Equal(total.Exposure) {
		t.Fatalf("restored exposure %+v, want %+v", restored.Exposure, total.Exposure)
	}
	feedExposure(t, a2, newest+1)
	after, _, _ := a2.total("run")
	checkExposure(t, "total after the restore", after)
	if after.Exposure.KoiMinutes() != float64(len(secs)+1) {
		t.Errorf("total after the restore: %v koi-minutes, want %d", after.Exposure.KoiMinutes(), len(secs)+1)
	}
}

// A school that lies about exposure (NaN, infinite, negative sums) has
// its report refused with the reason, and nothing of it is merged.
func TestAggregatorRefusesBadExposure(t *testing.T) {
	a := newAggregator()
	feedExposure(t, a, 1_000_000)
	before, _, _ := a.total("run")
	// A well-formed v3 snapshot whose hour-0 minutes are NaN: built by
	// hand, as MarshalBinary refuses to write it.
	good := &metrics.Snapshot{Exposure: &metrics.Exposure{}}
	good.Exposure.Add(0, 1, 1)
	data, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][8]byte{
		{0, 0, 0, 0, 0, 0, 0xf8, 0x7f}, // NaN
		{0, 0, 0, 0, 0, 0, 0xf0, 0x7f}, // +Inf
		{0, 0, 0, 0, 0, 0, 0xf0, 0xbf}, // -1
	} {
		lie := append([]byte(nil), data...)
		// The first float64 1.0 is hour 0's minutes.
		at := bytes.Index(lie, []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f})
		if at < 0 {
			t.Fatal("no exposure sums in the encoding")
		}
		copy(lie[at:at+8], bad[:])
		err := a.add("run", time.Unix(1_000_001, 0), &wire.RunMetrics{Run: "run", Snapshot: lie})
		if err == nil {
			t.Fatalf("exposure bytes %x merged", bad)
		}
		t.Logf("refused: %v", err)
	}
	after, _, _ := a.total("run")
	if !after.Exposure.Equal(before.Exposure) {
		t.Errorf("refused reports changed the total: %+v, was %+v", after.Exposure, before.Exposure)
	}
}

// A school reporting exposure at the bound, report after report, cannot
// push the run's total (or a bucket) past what encodes: the sums
// saturate, so checkpoints and the report keep working.
func TestExposureAtTheBoundStillCheckpoints(t *testing.T) {
	a := newAggregator()
	huge := &metrics.Snapshot{Exposure: &metrics.Exposure{}}
	for h := range 24 {
		huge.Exposure.Minutes[h], huge.Exposure.Weighted[h], huge.Exposure.Squared[h] = metrics.MaxExposureSum, metrics.MaxExposureSum, metrics.MaxExposureSum
	}
	data, err := huge.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(20) { // into live buckets, then encoded ones
		if err := a.add("run", time.Unix(1_000_000+i/4, 0), &wire.RunMetrics{Run: "run", Snapshot: data}); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	snap, _, _ := a.totalAt("run")
	if _, err := snap.MarshalBinaryWithin(state.MaxCheckpointSnapshot); err != nil {
		t.Fatalf("the run's total no longer encodes: %v", err)
	}
	if w, _ := a.window("run", time.Unix(999_000, 0), time.Unix(1_000_010, 0)); w.Exposure == nil || w.Exposure.Minutes[5] != metrics.MaxExposureSum {
		t.Fatalf("window exposure %+v", w.Exposure)
	}
}
