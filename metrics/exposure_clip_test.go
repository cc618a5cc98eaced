package metrics

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Heavy koi of a frequent behavior are clipped at p = 1: Expected matches
// the direct sums Σ min(1, q·a) and Σ p(1-p) over every koi, within the
// width of the one activity class that straddles 1/q, while the hour sums
// alone (q × Σ a) overshoot.
func TestExposureExpectedClipped(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var e Exposure
	type koi struct{ a, m float64 }
	var kois []koi
	for range 2000 {
		k := koi{a: math.Exp(1.2*rng.NormFloat64() - 0.72), m: 1 + 30*rng.Float64()}
		kois = append(kois, k)
		e.Add(5, k.a, k.m)
	}
	e.Add(6, 0, 10) // an idle koi: never fires
	hourly := make([]float64, 24)
	hourly[5], hourly[6] = 1.5, 1.5
	for _, f := range []float64{0.02, 0.3, 0.7, 1} {
		q := f * 1.5
		var wantMean, wantVar, sums float64
		for _, k := range kois {
			p := min(1, q*k.a)
			wantMean += p * k.m
			wantVar += p * (1 - p) * k.m
			sums += q * k.a * k.m
		}
		mean, variance := e.Expected(f, hourly)
		t.Logf("f %.2f: Expected %.1f ± %.1f, direct %.1f ± %.1f, hour sums alone %.1f", f, mean, math.Sqrt(variance), wantMean, math.Sqrt(wantVar), sums)
		if math.Abs(mean-wantMean) > 0.005*wantMean || math.Abs(variance-wantVar) > 0.05*wantVar+1 {
			t.Errorf("f %.2f: Expected = %.2f, %.2f; want %.2f, %.2f", f, mean, variance, wantMean, wantVar)
		}
	}
	// Through the encoding and a merge, the classes and so the
	// expectation stay.
	var s Snapshot
	b, err := (&Snapshot{Exposure: &e}).MarshalBinary()
	if err == nil {
		err = s.UnmarshalBinary(b)
	}
	if err != nil {
		t.Fatal(err)
	}
	var merged Exposure
	merged.Merge(s.Exposure)
	m1, v1 := e.Expected(0.7, hourly)
	m2, v2 := merged.Expected(0.7, hourly)
	if m1 != m2 || v1 != v2 || !merged.Equal(&e) {
		t.Fatalf("after encoding and merging: %v ± %v, want %v ± %v", m2, v2, m1, v1)
	}
	t.Logf("encoded: %d bytes for %d activity classes", len(b), len(e.classes))
}
