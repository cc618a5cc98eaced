package metrics

import (
	"maps"
	"math"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// decodeSketch sizes its store before it decodes (see its comment); the
// sketch it returns must be the one sketches-go's own decoder builds, bin
// for bin, whatever the shape: one bin, bins far apart, zeros only, zeros
// with bins, and a range wider than maxBins (decoded unsized, collapsed).
func TestDecodeSketchMatchesPlainDecode(t *testing.T) {
	// 1 ns to the largest Duration spans more than maxBins bins.
	tiny, huge := durationMS(1), durationMS(math.MaxInt64)
	if sketchMapping.Index(huge)-sketchMapping.Index(tiny) < maxBins {
		t.Fatalf("1 ns to %v ms fits in %d bins: the collapsing case needs another range", huge, maxBins)
	}
	for _, tc := range []struct {
		name string
		ms   []float64
		// many is a count added at 7 ms on top of ms: the float limit.
		many float64
	}{
		{"one value", []float64{12}, 0},
		{"one bin, many values", []float64{5, 5, 5, 5}, 0},
		{"far apart", []float64{0.01, 3, 40_000}, 0},
		{"zeros only", []float64{0, 0, 0}, 0},
		{"zeros and bins", []float64{0, 0, 1, 250, 9_000}, 0},
		{"busy spread", spread(3000), 0},
		{"wider than maxBins", []float64{tiny, tiny * 3, 1, huge / 2, huge}, 0},
		// 2^53-1 values in one bin (the most a count encodes exactly):
		// two more would not be exact, so this one is decoded unsized.
		{"2^53-1 values", nil, 1<<53 - 1},
		{"2^52 values and two more", []float64{1, 90}, 1 << 52},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQuantiler()
			for _, v := range tc.ms {
				q.Add(v)
			}
			if tc.many > 0 {
				if err := q.sk.AddWithCount(7, tc.many); err != nil {
					t.Fatal(err)
				}
			}
			b, err := appendSketch(nil, q)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeSketch(b, uint64(len(tc.ms))+uint64(tc.many))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := ddsketch.DecodeDDSketch(b, newStore, sketchMapping)
			if err != nil {
				t.Fatal(err)
			}
			gsk := got.(*ddQuantiler).sk
			if gsk.GetCount() != plain.GetCount() || gsk.GetZeroCount() != plain.GetZeroCount() {
				t.Errorf("count %v (zero %v), plain decode %v (zero %v)", gsk.GetCount(), gsk.GetZeroCount(), plain.GetCount(), plain.GetZeroCount())
			}
			if gb, pb := bins(gsk.GetPositiveValueStore()), bins(plain.GetPositiveValueStore()); !maps.Equal(gb, pb) {
				t.Errorf("bins %v, plain decode %v", gb, pb)
			}
			gs, ps := gsk.GetPositiveValueStore(), plain.GetPositiveValueStore()
			if !gs.IsEmpty() {
				gmin, _ := gs.MinIndex()
				gmax, _ := gs.MaxIndex()
				pmin, _ := ps.MinIndex()
				pmax, _ := ps.MaxIndex()
				if gmin != pmin || gmax != pmax {
					t.Errorf("index range %d..%d, plain decode %d..%d", gmin, gmax, pmin, pmax)
				}
			}
			for _, p := range []float64{0, 0.01, 0.25, 0.5, 0.9, 0.99, 1} {
				g, gerr := gsk.GetValueAtQuantile(p)
				w, werr := plain.GetValueAtQuantile(p)
				if g != w || (gerr == nil) != (werr == nil) {
					t.Errorf("q%v: %v (%v), plain decode %v (%v)", p, g, gerr, w, werr)
				}
			}
		})
	}
}

// spread is n latencies from 0.5 ms to about 20 s, log-spaced.
func spread(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = 0.5 * math.Pow(40_000, float64(i)/float64(n))
	}
	return out
}

func bins(s store.Store) map[int]float64 {
	m := map[int]float64{}
	s.ForEach(func(index int, count float64) bool {
		if count != 0 {
			m[index] += count
		}
		return false
	})
	return m
}
