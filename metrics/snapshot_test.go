package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// school records latencies drawn from draw into a fresh Recorder, as one
// school would, and returns the snapshot and the true latencies.
func school(t testing.TB, seed uint64, n int, draw func(*rand.Rand) time.Duration) (*Snapshot, []time.Duration) {
	t.Helper()
	var r Recorder
	s := r.Series("api:conversations.history")
	rng := rand.New(rand.NewPCG(seed, seed))
	lat := make([]time.Duration, n)
	for i := range lat {
		lat[i] = draw(rng)
		o := OK
		if i%50 == 0 {
			o = RateLimited
		}
		s.Observe(lat[i], o)
	}
	r.Count("event:message", OK)
	return r.Snapshot(), lat
}

// checkQuantiles fails unless ss reports every quantile within 1% of the
// true sample at the same rank (the rank DDSketch uses: q·(n-1), rounded
// down).
func checkQuantiles(t *testing.T, ss *SeriesSnapshot, lat []time.Duration) {
	t.Helper()
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	for _, q := range []float64{0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1} {
		want := sorted[int(q*float64(len(sorted)-1))]
		got, ok := ss.Quantile(q)
		if !ok {
			t.Fatalf("Quantile(%v) not ok", q)
		}
		if rel := math.Abs(float64(got-want)) / float64(want); rel > relativeAccuracy+1e-9 {
			t.Errorf("Quantile(%v) = %v, true %v: %.3f%% off", q, got, want, 100*rel)
		}
	}
}

func TestMergeAcrossSchools(t *testing.T) {
	// Three schools with very different latency profiles: a wrong merge
	// (e.g. averaging per-school quantiles, or keeping one school's
	// sketch) is far off the union's quantiles.
	fast := func(r *rand.Rand) time.Duration {
		return time.Millisecond + time.Duration(r.Int64N(int64(9*time.Millisecond)))
	}
	slow := func(r *rand.Rand) time.Duration {
		return 100*time.Millisecond + time.Duration(r.Int64N(int64(900*time.Millisecond)))
	}
	logn := func(r *rand.Rand) time.Duration {
		return time.Duration(math.Exp(math.Log(float64(20*time.Millisecond)) + r.NormFloat64()))
	}
	a, la := school(t, 1, 30000, fast)
	b, lb := school(t, 2, 10000, slow)
	c, lc := school(t, 3, 20000, logn)

	// The keeper's path: encode, decode, merge into an empty snapshot.
	var total Snapshot
	for _, s := range []*Snapshot{a, b, c} {
		data, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Snapshot
		if err := got.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
		if err := total.Merge(&got); err != nil {
			t.Fatal(err)
		}
	}
	ss := total.Series["api:conversations.history"]
	if ss.Samples() != 60000 || ss.Total() != 60000 {
		t.Fatalf("samples %d total %d, want 60000", ss.Samples(), ss.Total())
	}
	// 1 in 50 per school is rate limited: 600 + 200 + 400.
	if ss.Counts[RateLimited] != 1200 || ss.Counts[OK] != 58800 {
		t.Errorf("counts = %v", ss.Counts)
	}
	if ev := total.Series["event:message"]; ev.Total() != 3 || ev.Samples() != 0 {
		t.Errorf("event:message = %v", ev)
	}
	checkQuantiles(t, ss, slices.Concat(la, lb, lc))
	// Each school's own snapshot is still intact and still accurate.
	checkQuantiles(t, b.Series["api:conversations.history"], lb)

	// Start is the earliest start, End the latest end.
	if !total.Start.Equal(a.Start) || !total.End.Equal(c.End) {
		t.Errorf("total interval %v–%v, want %v–%v", total.Start, total.End, a.Start, c.End)
	}
}

func TestMergeDoesNotAlias(t *testing.T) {
	var r Recorder
	r.Observe("k", 10*time.Millisecond, OK)
	src := r.Snapshot()
	var dst Snapshot
	if err := dst.Merge(src); err != nil {
		t.Fatal(err)
	}
	r.Observe("k", time.Second, OK)
	if err := dst.Merge(r.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if d, _ := src.Series["k"].Quantile(1); d > 11*time.Millisecond {
		t.Errorf("merging into dst changed src: p100 = %v", d)
	}
	if d, _ := dst.Series["k"].Quantile(1); d < 990*time.Millisecond {
		t.Errorf("dst p100 = %v, want ~1s", d)
	}
}

func TestMergeSelfAndNil(t *testing.T) {
	var r Recorder
	r.Observe("k", 10*time.Millisecond, OK)
	r.Count("k", Timeout)
	s := r.Snapshot()
	if err := s.Merge(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Merge(s); err != nil {
		t.Fatal(err)
	}
	ss := s.Series["k"]
	if ss.Total() != 4 || ss.Samples() != 2 || ss.Counts[Timeout] != 2 {
		t.Errorf("self-merge = %v", ss)
	}
	if got := ss.sketch.(*ddQuantiler).count(); got != 2 {
		t.Errorf("sketch count = %v, want 2", got)
	}
}

func TestMergeRejectsInconsistent(t *testing.T) {
	var r Recorder
	r.Count("ok", OK)
	s := r.Snapshot()
	bad := &Snapshot{Series: map[string]*SeriesSnapshot{"x": {samples: 3}}}
	if err := s.Merge(bad); err == nil {
		t.Fatal("merge of a series with samples but no sketch succeeded")
	}
	if len(s.Series) != 1 {
		t.Errorf("failed merge changed s: %v", s.Keys())
	}
	if _, err := bad.MarshalBinary(); err == nil {
		t.Error("encoding a series with samples but no sketch succeeded")
	}
}
