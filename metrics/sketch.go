package metrics

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	enc "github.com/DataDog/sketches-go/ddsketch/encoding"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// quantiler estimates quantiles of a stream of latencies, in milliseconds.
// The rest of the package sees the sketch only through this interface;
// appendSketch and decodeSketch below are the one place that knows the
// concrete type behind it.
type quantiler interface {
	// Add records one latency in milliseconds (>= 0).
	Add(ms float64)
	// Quantile returns the latency in milliseconds at quantile q in [0, 1],
	// and false when q is out of range or nothing was added.
	Quantile(q float64) (ms float64, ok bool)
	// Merge adds everything recorded in o to the receiver; o is unchanged.
	Merge(o quantiler) error
}

var _ quantiler = (*ddQuantiler)(nil)

const (
	// relativeAccuracy is the DDSketch guarantee: every quantile it returns
	// is within 1% of the true value at that rank.
	relativeAccuracy = 0.01

	// maxBins bounds a sketch to 2048 bins (16 KiB of counters) whatever
	// it is fed. With a 1% logarithmic mapping (γ ≈ 1.0202), 2048 bins span
	// a ratio of γ^2048 ≈ 10^17.8: everything from 1 ns to about 20 years,
	// so real latencies never collapse; typical ones (100 µs – 60 s) use
	// about 650 bins. Should a series ever exceed the range, the collapsing
	// lowest dense store merges the *lowest* bins, sacrificing accuracy at
	// the fast end of the distribution and keeping it where a load test
	// looks: p95, p99, max. An unbounded dense store would let one absurd
	// value (or a hostile report) allocate without limit; a sparse or
	// paginated store costs more per Add than our 100 ns budget allows.
	maxBins = 2048
)

var (
	// sketchMapping is shared by every sketch: MergeWith requires equal
	// mappings, and mappings are immutable. Logarithmic (not the
	// interpolated variants) because it is the memory-optimal mapping for
	// a given accuracy and the one other DDSketch implementations decode.
	sketchMapping = mustMapping()

	// minIndex and maxIndex bound the bin indices a Recorder can produce:
	// latencies from 1 ns to the largest time.Duration. decodeSketch
	// rejects bins outside this range before the sketch library sees them.
	minIndex = sketchMapping.Index(durationMS(1)) - 1
	maxIndex = sketchMapping.Index(durationMS(math.MaxInt64)) + 1
)

func mustMapping() mapping.IndexMapping {
	m, err := mapping.NewLogarithmicMapping(relativeAccuracy)
	if err != nil {
		panic(err) // a constant argument: cannot happen
	}
	return m
}

func newStore() store.Store { return store.NewCollapsingLowestDenseStore(maxBins) }

// durationMS converts a duration to the sketch's unit; negative durations
// count as zero.
func durationMS(d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(d) / float64(time.Millisecond)
}

// msDuration converts the sketch's unit back, saturating at the largest
// time.Duration.
func msDuration(ms float64) time.Duration {
	ns := math.Round(ms * float64(time.Millisecond))
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	if ns <= 0 {
		return 0
	}
	return time.Duration(ns)
}

// ddQuantiler is a DDSketch with a logarithmic mapping and collapsing
// lowest dense stores (see maxBins).
type ddQuantiler struct {
	sk *ddsketch.DDSketch
}

func newQuantiler() *ddQuantiler {
	// The negative store never receives a value (latencies are >= 0), so
	// it stays an empty struct with no bins allocated.
	return &ddQuantiler{sk: ddsketch.NewDDSketch(sketchMapping, newStore(), newStore())}
}

// Add implements quantiler. Values are in [0, MaxInt64 ns], which the
// mapping always accepts, so the error DDSketch.Add can return is impossible.
func (q *ddQuantiler) Add(ms float64) {
	_ = q.sk.Add(ms) // in range by construction: see durationMS
}

// Quantile implements quantiler.
func (q *ddQuantiler) Quantile(p float64) (float64, bool) {
	if !(p >= 0 && p <= 1) || q.sk.IsEmpty() {
		return 0, false
	}
	v, err := q.sk.GetValueAtQuantile(p)
	if err != nil {
		return 0, false
	}
	return v, true
}

// Merge implements quantiler.
func (q *ddQuantiler) Merge(o quantiler) error {
	oq, ok := o.(*ddQuantiler)
	if !ok {
		return fmt.Errorf("metrics: cannot merge sketch of type %T", o)
	}
	if err := q.sk.MergeWith(oq.sk); err != nil {
		return fmt.Errorf("metrics: merging sketches: %w", err)
	}
	return nil
}

// count returns the number of values in the sketch.
func (q *ddQuantiler) count() float64 { return q.sk.GetCount() }

// appendSketch appends the sketches-go binary encoding of q to b. The index
// mapping is omitted: the snapshot format version fixes it.
func appendSketch(b []byte, q quantiler) ([]byte, error) {
	dq, ok := q.(*ddQuantiler)
	if !ok {
		return b, fmt.Errorf("metrics: cannot encode sketch of type %T", q)
	}
	dq.sk.Encode(&b, true)
	return b, nil
}

var errSketch = errors.New("bad sketch")

// decodeSketch decodes a sketch written by appendSketch that must hold
// exactly samples values.
//
// sketches-go's decoder trusts its input: it ignores store decoding errors
// (so truncation goes unnoticed), and hostile bin indices make its stores
// loop or index out of range. So the bytes are checked first, by
// checkSketch, and only then handed to the library's decoder.
//
// The positive store is sized for the bins' whole range before they are
// added: decoded bin by bin, it grew 64 bins at a time, and that growth
// was 94% of what decoding a busy report allocated
// (BenchmarkSnapshotDecodeMerge). The only way its API offers is to count
// one value at each end of the range first and take them back after: the
// ends are bins the sketch holds, so the store ends as a plain decode
// leaves it, and the count check below would catch a store that refused
// the take-back.
func decodeSketch(b []byte, samples uint64) (quantiler, error) {
	sh, err := checkSketch(b)
	if err != nil {
		return nil, err
	}
	if sh.total != float64(samples) {
		return nil, fmt.Errorf("%w: holds %v values, want %d", errSketch, sh.total, samples)
	}
	pos := newStore()
	// Below 2^52 values, the two extra and every sum on the way are exact
	// in a float64.
	presized := sh.binned && sh.hi-sh.lo < maxBins && sh.total <= 1<<52
	if presized {
		pos.AddWithCount(int(sh.lo), 1)
		pos.AddWithCount(int(sh.hi), 1)
	}
	sk := ddsketch.NewDDSketch(sketchMapping, pos, newStore())
	if err := sk.DecodeAndMergeWith(b); err != nil {
		return nil, fmt.Errorf("%w: %w", errSketch, err)
	}
	if presized {
		pos.AddWithCount(int(sh.lo), -1)
		pos.AddWithCount(int(sh.hi), -1)
	}
	q := &ddQuantiler{sk: sk}
	if q.count() != float64(samples) {
		return nil, fmt.Errorf("%w: decoded %v values, want %d", errSketch, q.count(), samples)
	}
	return q, nil
}

// sketchShape is what checkSketch found in an encoded sketch: the sum of
// its counts and, when a bin holds a count (binned), the lowest and
// highest such bin's index.
type sketchShape struct {
	total  float64
	binned bool
	lo, hi int64
}

// checkSketch walks an encoded sketch and returns its shape. It
// accepts exactly what appendSketch writes: an optional zero count and a
// positive-value store in any of the three bin encodings, with finite,
// non-negative, integral counts and bin indices a Recorder can produce.
func checkSketch(b []byte) (sketchShape, error) {
	var sh sketchShape
	addCount := func(c float64) error {
		if !(c >= 0) || c > 1<<53 || c != math.Trunc(c) {
			return fmt.Errorf("%w: count %v", errSketch, c)
		}
		sh.total += c
		if sh.total > 1<<53 {
			return fmt.Errorf("%w: total count overflows", errSketch)
		}
		return nil
	}
	// addBin counts c at a checked index.
	addBin := func(index int64, c float64) error {
		if err := addCount(c); err != nil || c == 0 {
			return err
		}
		if !sh.binned {
			sh.binned, sh.lo, sh.hi = true, index, index
		}
		sh.lo, sh.hi = min(sh.lo, index), max(sh.hi, index)
		return nil
	}
	checkIndex := func(i int64) error {
		if i < int64(minIndex) || i > int64(maxIndex) {
			return fmt.Errorf("%w: bin index %d out of range", errSketch, i)
		}
		return nil
	}
	p := &b
	seen := map[enc.Flag]bool{}
	for len(*p) > 0 {
		flag, err := enc.DecodeFlag(p)
		if err != nil {
			return sh, fmt.Errorf("%w: %w", errSketch, err)
		}
		if seen[flag] {
			return sh, fmt.Errorf("%w: repeated flag %#x", errSketch, flag)
		}
		seen[flag] = true
		if flag == enc.FlagZeroCountVarFloat {
			c, err := enc.DecodeVarfloat64(p)
			if err != nil {
				return sh, fmt.Errorf("%w: zero count: %w", errSketch, err)
			}
			if err := addCount(c); err != nil {
				return sh, err
			}
			continue
		}
		if flag.Type() != enc.FlagTypePositiveStore {
			return sh, fmt.Errorf("%w: unexpected flag %#x", errSketch, flag)
		}
		n, err := enc.DecodeUvarint64(p)
		if err != nil {
			return sh, fmt.Errorf("%w: bin count: %w", errSketch, err)
		}
		// Every bin takes at least one byte, so n is bounded by the input.
		if n > uint64(len(*p)) {
			return sh, fmt.Errorf("%w: %d bins in %d bytes", errSketch, n, len(*p))
		}
		switch flag.SubFlag() {
		case enc.BinEncodingIndexDeltasAndCounts, enc.BinEncodingIndexDeltas:
			withCounts := flag.SubFlag() == enc.BinEncodingIndexDeltasAndCounts
			var index int64
			for range n {
				delta, err := enc.DecodeVarint64(p)
				if err != nil {
					return sh, fmt.Errorf("%w: bin index: %w", errSketch, err)
				}
				// Checked after every step, so index stays far from overflow.
				if index += delta; checkIndex(index) != nil {
					return sh, checkIndex(index)
				}
				c := 1.0
				if withCounts {
					if c, err = enc.DecodeVarfloat64(p); err != nil {
						return sh, fmt.Errorf("%w: bin count: %w", errSketch, err)
					}
				}
				if err := addBin(index, c); err != nil {
					return sh, err
				}
			}
		case enc.BinEncodingContiguousCounts:
			start, err := enc.DecodeVarint64(p)
			if err != nil {
				return sh, fmt.Errorf("%w: first index: %w", errSketch, err)
			}
			step, err := enc.DecodeVarint64(p)
			if err != nil {
				return sh, fmt.Errorf("%w: index step: %w", errSketch, err)
			}
			if err := checkIndex(start); err != nil {
				return sh, err
			}
			if n > 0 && (step < -int64(maxIndex-minIndex) || step > int64(maxIndex-minIndex)) {
				return sh, fmt.Errorf("%w: index step %d", errSketch, step)
			}
			index := start
			for i := range n {
				if i > 0 {
					if index += step; checkIndex(index) != nil {
						return sh, checkIndex(index)
					}
				}
				c, err := enc.DecodeVarfloat64(p)
				if err != nil {
					return sh, fmt.Errorf("%w: bin count: %w", errSketch, err)
				}
				if err := addBin(index, c); err != nil {
					return sh, err
				}
			}
		default:
			return sh, fmt.Errorf("%w: unknown bin encoding in flag %#x", errSketch, flag)
		}
	}
	return sh, nil
}
