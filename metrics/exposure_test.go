package metrics

import (
	"math"
	"testing"
)

func TestSnapshotMergeExposure(t *testing.T) {
	one := func(h int, a, m float64) *Snapshot {
		s := &Snapshot{Exposure: &Exposure{}}
		s.Exposure.Add(h, a, m)
		return s
	}
	// nil into nil stays nil: nothing was measured.
	var s Snapshot
	if err := s.Merge(&Snapshot{}); err != nil || s.Exposure != nil {
		t.Fatalf("nil + nil: %+v, %v", s.Exposure, err)
	}
	// Measured into nil: a copy, never shared.
	a := one(3, 2, 10)
	if err := s.Merge(a); err != nil {
		t.Fatal(err)
	}
	if s.Exposure == a.Exposure || !s.Exposure.Equal(a.Exposure) {
		t.Fatalf("nil + a: %+v (shared %v)", s.Exposure, s.Exposure == a.Exposure)
	}
	// Sums add per hour.
	if err := s.Merge(one(3, 1, 5)); err != nil {
		t.Fatal(err)
	}
	if err := s.Merge(one(4, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if e := s.Exposure; e.Minutes[3] != 15 || e.Weighted[3] != 25 || e.Squared[3] != 45 || e.Minutes[4] != 1 || e.KoiMinutes() != 16 {
		t.Fatalf("sums: %+v", e)
	}
	// a is untouched.
	if a.Exposure.Minutes[3] != 10 {
		t.Fatalf("merge changed its argument: %+v", a.Exposure)
	}
	// A nil exposure merged in changes nothing.
	before := *s.Exposure
	if err := s.Merge(&Snapshot{}); err != nil || !s.Exposure.Equal(&before) {
		t.Fatalf("+ nil: %+v, %v", s.Exposure, err)
	}
	// Into itself: doubles.
	if err := s.Merge(&s); err != nil || s.Exposure.Minutes[3] != 30 {
		t.Fatalf("self merge: %+v, %v", s.Exposure, err)
	}
}

func TestExposureAddIgnoresBadInput(t *testing.T) {
	var e Exposure
	for _, c := range []struct {
		hour        int
		act, minute float64
	}{{-1, 1, 1}, {24, 1, 1}, {0, -1, 1}, {0, math.NaN(), 1}, {0, math.Inf(1), 1}, {0, 1, -1}, {0, 1, math.NaN()}, {0, 1, math.Inf(1)}, {0, 1, 0}} {
		e.Add(c.hour, c.act, c.minute)
	}
	if !e.Equal(&Exposure{}) {
		t.Fatalf("bad input was added: %+v", e)
	}
}

// TestExposureExpected checks Expected against its definition: one
// Bernoulli trial of p = activity × f × hourly[h] per koi-minute.
func TestExposureExpected(t *testing.T) {
	var e Exposure
	e.Add(1, 0.5, 100) // p = 0.5 × 0.1 × 2 = 0.1
	e.Add(1, 2, 10)    // p = 0.4
	e.Add(2, 1, 50)    // p = 0.1 × 0 = 0
	hourly := make([]float64, 24)
	hourly[1] = 2
	mean, variance := e.Expected(0.1, hourly)
	wantMean := 100*0.1 + 10*0.4
	wantVar := 100*0.1*0.9 + 10*0.4*0.6
	if math.Abs(mean-wantMean) > 1e-9 || math.Abs(variance-wantVar) > 1e-9 {
		t.Fatalf("Expected = %v, %v; want %v, %v", mean, variance, wantMean, wantVar)
	}
	// Flat: every hour counts at f.
	mean, _ = e.Expected(0.1, nil)
	if want := 0.1 * (50 + 20 + 50); math.Abs(mean-want) > 1e-9 {
		t.Fatalf("flat mean %v, want %v", mean, want)
	}
}

func TestMarshalBinaryWithinKeepsExposure(t *testing.T) {
	snap := reasonHeavySnapshot(t, 100)
	snap.Exposure = &Exposure{}
	snap.Exposure.Add(7, 1.5, 12345.678)
	full, err := snap.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{len(full), len(full) / 2, len(full) / 10, 1} {
		enc, err := snap.MarshalBinaryWithin(limit)
		if err != nil {
			t.Fatal(err)
		}
		var got Snapshot
		if err := got.UnmarshalBinary(enc); err != nil {
			t.Fatal(err)
		}
		if got.Exposure == nil || !got.Exposure.Equal(snap.Exposure) {
			t.Fatalf("limit %d: exposure %+v, want %+v", limit, got.Exposure, snap.Exposure)
		}
	}
}

func TestMarshalBinaryRefusesBadExposure(t *testing.T) {
	for _, bad := range []float64{math.NaN(), math.Inf(1), -1, MaxExposureSum * 2} {
		s := &Snapshot{Exposure: &Exposure{}}
		s.Exposure.Squared[5] = bad
		if _, err := s.MarshalBinary(); err == nil {
			t.Errorf("exposure sum %v encoded", bad)
		}
	}
}

// Sums saturate at MaxExposureSum: a keeper merging reports at the bound
// (a lying school's) still holds a total it can encode; bad sums merged
// in count as nothing.
func TestExposureMergeSaturates(t *testing.T) {
	var full Exposure
	for h := range 24 {
		full.Minutes[h], full.Weighted[h], full.Squared[h] = MaxExposureSum, MaxExposureSum, MaxExposureSum
	}
	total := &Snapshot{}
	for range 3 {
		if err := total.Merge(&Snapshot{Exposure: &full}); err != nil {
			t.Fatal(err)
		}
	}
	if !total.Exposure.Equal(&full) {
		t.Fatalf("three full exposures merged to %+v", total.Exposure)
	}
	if _, err := total.MarshalBinary(); err != nil {
		t.Fatalf("a saturated total does not encode: %v", err)
	}
	var e Exposure
	e.Add(0, 1e300, 1e10) // activity² × minutes overflows: saturates
	if e.Minutes[0] != 1e10 || e.Weighted[0] != MaxExposureSum || e.Squared[0] != MaxExposureSum {
		t.Fatalf("Add past the bound: %+v", e)
	}
	e = Exposure{}
	e.Merge(&Exposure{Minutes: [24]float64{math.NaN(), math.Inf(1), -1, 2}})
	if e.Minutes[0] != 0 || e.Minutes[1] != MaxExposureSum || e.Minutes[2] != 0 || e.Minutes[3] != 2 {
		t.Fatalf("bad sums merged: %v", e.Minutes[:4])
	}
}
