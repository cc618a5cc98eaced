package metrics

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enc "github.com/DataDog/sketches-go/ddsketch/encoding"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var (
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	t1 = t0.Add(10 * time.Second)
)

// snap builds a snapshot from a recording function, with fixed times.
func snap(record func(r *Recorder)) *Snapshot {
	var r Recorder
	record(&r)
	s := r.Snapshot()
	s.Start, s.End = t0, t1
	return s
}

// fixture is a small but complete snapshot; testdata/snapshot_v3.golden is
// its encoding (snapshot_v2.golden: the same without exposure, version 2;
// snapshot_v1.golden: without reasons either, version 1).
func fixture() *Snapshot {
	s := fixtureSeries()
	s.Exposure = &Exposure{}
	s.Exposure.Add(9, 1, 120.5)
	s.Exposure.Add(9, 2.5, 30)
	s.Exposure.Add(10, 0.25, 1.0/3)
	return s
}

// fixtureSeries is the fixture's series, without exposure.
func fixtureSeries() *Snapshot {
	return snap(func(r *Recorder) {
		api := r.Series("api:conversations.history")
		for i := range 1000 {
			o := OK
			switch i % 100 {
			case 7:
				o = RateLimited
			case 13:
				o = ServerError
			}
			d := time.Duration(1+i%97)*time.Millisecond + time.Duration(i)*time.Microsecond
			switch o {
			case OK:
				api.Observe(d, o)
			case RateLimited:
				api.ObserveReason(d, o, "http 429", `{"ok":false,"error":"ratelimited"}`)
			default:
				api.ObserveReason(d, o, "http 503", "Service Unavailable")
			}
		}
		r.Observe("ws:connect", 80*time.Millisecond, OK)
		r.Observe("ws:connect", 5*time.Second, Timeout)
		r.Count("ws:connect", Transport)
		r.Count("event:message", OK)
		r.Count("event:message", Invalid)
		r.Observe("formation:announce:react", 0, Halted)
	})
}

// equalSnapshots fails unless a and b hold the same intervals, counts,
// sample counts and quantiles.
func equalSnapshots(t *testing.T, a, b *Snapshot) {
	t.Helper()
	if !a.Start.Equal(b.Start) || !a.End.Equal(b.End) {
		t.Errorf("interval %v–%v != %v–%v", a.Start, a.End, b.Start, b.End)
	}
	if !a.Exposure.Equal(b.Exposure) {
		t.Errorf("exposure %+v != %+v", a.Exposure, b.Exposure)
	}
	if ak, bk := strings.Join(a.Keys(), ","), strings.Join(b.Keys(), ","); ak != bk {
		t.Fatalf("keys %q != %q", ak, bk)
	}
	for k, as := range a.Series {
		bs := b.Series[k]
		if as.Counts != bs.Counts || as.Samples() != bs.Samples() {
			t.Errorf("%s: %v != %v", k, as, bs)
		}
		if !slices.Equal(as.Reasons, bs.Reasons) {
			t.Errorf("%s: reasons %v != %v", k, as.Reasons, bs.Reasons)
		}
		for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 1} {
			ad, aok := as.Quantile(q)
			bd, bok := bs.Quantile(q)
			if ad != bd || aok != bok {
				t.Errorf("%s: Quantile(%v) %v,%v != %v,%v", k, q, ad, aok, bd, bok)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   *Snapshot
	}{
		// The zero Snapshot: zero times, nil map.
		{"zero", &Snapshot{}},
		// An interval with nothing recorded.
		{"empty", snap(func(*Recorder) {})},
		// Counts only: no sketch is written.
		{"counts only", snap(func(r *Recorder) { r.Count("event:message", OK); r.Count("event:message", Invalid) })},
		// Only zero latencies: the sketch holds just its zero count.
		{"zero latency", snap(func(r *Recorder) { r.Observe("k", 0, OK); r.Observe("k", -time.Second, Canceled) })},
		// Extreme latencies at both ends of time.Duration.
		{"extremes", snap(func(r *Recorder) {
			r.Observe("k", time.Nanosecond, OK)
			r.Observe("k", 1<<63-1, Timeout)
		})},
		// Every outcome, with large counts.
		{"all outcomes", snap(func(r *Recorder) {
			for o := range NumOutcomes {
				for range int(o) + 1 {
					r.Observe("api:x", time.Duration(o+1)*time.Millisecond, o)
				}
			}
		})},
		// Odd keys: empty, unicode, long.
		{"keys", snap(func(r *Recorder) {
			r.Count("", OK)
			r.Count("formation:📣:0", OK)
			r.Count(strings.Repeat("k", 5000), OK)
		})},
		// A realistic mix.
		{"fixture", fixture()},
		// Measured exposure with nothing in it: not the same as nil.
		{"zero exposure", &Snapshot{Exposure: &Exposure{}}},
		// Exposure in every hour, at the bounds: the largest sum, the
		// smallest positive one.
		{"full exposure", func() *Snapshot {
			e := &Exposure{}
			for h := range 24 {
				e.Minutes[h], e.Weighted[h], e.Squared[h] = MaxExposureSum, 5e-324, float64(h)
			}
			return &Snapshot{Start: t0, End: t1, Exposure: e}
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.in.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var out Snapshot
			if err := out.UnmarshalBinary(data); err != nil {
				t.Fatal(err)
			}
			equalSnapshots(t, tt.in, &out)
			again, err := out.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, again) {
				t.Error("re-encoding the decoded snapshot gave different bytes")
			}
		})
	}
}

func TestGolden(t *testing.T) {
	data, err := fixture().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "snapshot_v3.golden")
	if *update {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("encoding changed (%d bytes, golden %d); if intended, bump formatVersion and run go test -update", len(data), len(want))
	}
	// Compactness: 1,000 samples and 4 series in well under 1 KiB.
	if len(data) > 1024 {
		t.Errorf("fixture encodes to %d bytes", len(data))
	}
	t.Logf("fixture: %d bytes", len(data))
}

// TestGoldenV1 decodes the version-1 encoding of the fixture, written
// before reasons existed: keeper checkpoints and older schools send it.
func TestGoldenV1(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "snapshot_v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	var got Snapshot
	if err := got.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	want := fixtureSeries()
	for _, ss := range want.Series {
		ss.Reasons = nil
	}
	equalSnapshots(t, want, &got)
}

// TestGoldenV2 decodes the version-2 encoding of the fixture, written
// before exposure existed: its Exposure is nil (not measured), the rest
// is whole.
func TestGoldenV2(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "snapshot_v2.golden"))
	if err != nil {
		t.Fatal(err)
	}
	var got Snapshot
	if err := got.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if got.Exposure != nil {
		t.Fatalf("a version-2 snapshot decoded with exposure %+v", got.Exposure)
	}
	equalSnapshots(t, fixtureSeries(), &got)
}

// enc1 builds encodings by hand (header: version 1), for inputs MarshalBinary never
// writes.
type enc1 []byte

func header() enc1 {
	b := enc1(append([]byte(formatMagic), formatVersionNoReasons))
	return b.time(t0).time(t1)
}

// header3 is a version-3 header up to the exposure section.
func header3() enc1 {
	b := enc1(append([]byte(formatMagic), formatVersion))
	return b.time(t0).time(t1)
}

// f64 appends the three sums of one exposure hour.
func (b enc1) f64(v ...float64) enc1 {
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}
func (b enc1) v(v int64) enc1  { return binary.AppendVarint(b, v) }
func (b enc1) u(v uint64) enc1 { return binary.AppendUvarint(b, v) }
func (b enc1) time(t time.Time) enc1 {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}
func (b enc1) str(s string) enc1    { return append(b.u(uint64(len(s))), s...) }
func (b enc1) raw(p ...byte) enc1   { return append(b, p...) }
func (b enc1) sketch(s []byte) enc1 { return append(b.u(uint64(len(s))), s...) }

// sk builds a raw sketch encoding.
func sk(f func(b *[]byte)) []byte {
	var b []byte
	f(&b)
	return b
}

// posBins encodes a positive store as index deltas and counts.
func posBins(idx []int64, counts []float64) []byte {
	return sk(func(b *[]byte) {
		enc.EncodeFlag(b, enc.NewFlag(enc.FlagTypePositiveStore, enc.BinEncodingIndexDeltasAndCounts))
		enc.EncodeUvarint64(b, uint64(len(idx)))
		prev := int64(0)
		for i, x := range idx {
			enc.EncodeVarint64(b, x-prev)
			enc.EncodeVarfloat64(b, counts[i])
			prev = x
		}
	})
}

func TestUnmarshalBadInput(t *testing.T) {
	valid, err := fixture().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// One series "k" with one OK observation and the given sketch.
	oneSample := func(s []byte) []byte { return header().u(1).str("k").u(1).u(1).u(1).sketch(s) }

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		// Empty input.
		{"nil", nil, ErrMalformed},
		// Not our magic.
		{"magic", []byte("PK\x03\x04 zip file"), ErrMalformed},
		// A future version.
		{"version", append([]byte(formatMagic), formatVersion+1, 0, 0), ErrVersion},
		// Header only.
		{"no series count", header(), ErrMalformed},
		// A varint that never ends.
		{"endless varint", header().raw(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), ErrMalformed},
		// Claims 2^62 series in a few bytes: must not allocate for them.
		{"huge series count", header().u(1 << 62).str("k").u(0).u(0), ErrMalformed},
		// More series than MaxSeries, each a valid 5-byte series: decoding
		// every one would build that many sketches.
		{"too many series", func() enc1 {
			e := header().u(MaxSeries + 1)
			for i := range MaxSeries + 1 {
				e = e.str(fmt.Sprintf("%06d", i)).u(1).u(1).u(0)
			}
			return e
		}(), ErrMalformed},
		// Claims a key of 2^40 bytes.
		{"huge key length", header().u(1).u(1<<40).raw('k', 0, 0), ErrMalformed},
		// Nanoseconds must be < 1e9.
		{"bad nanos", enc1(append([]byte(formatMagic), formatVersion)).raw(0).u(1e9).time(t1).u(0), ErrMalformed},
		// Seconds beyond year 9999.
		{"bad seconds", enc1(append([]byte(formatMagic), formatVersion)).time(t0).v(1 << 40).u(0).u(0), ErrMalformed},
		// Outcome bit beyond NumOutcomes.
		{"unknown outcome", header().u(1).str("k").u(1 << NumOutcomes).u(1).u(0), ErrMalformed},
		// A set outcome bit with a zero count.
		{"zero count", header().u(1).str("k").u(1).u(0).u(0), ErrMalformed},
		// Counts that overflow uint64 when summed.
		{"count overflow", header().u(1).str("k").u(3).u(1 << 63).u(1 << 63).u(0), ErrMalformed},
		// More latency samples than observations.
		{"samples > total", header().u(1).str("k").u(1).u(1).u(2).sketch(posBins([]int64{100}, []float64{2})), ErrMalformed},
		// The same key twice.
		{"duplicate key", header().u(2).str("k").u(1).u(1).u(0).str("k").u(1).u(1).u(0), ErrMalformed},
		// Keys out of order.
		{"unsorted keys", header().u(2).str("b").u(1).u(1).u(0).str("a").u(1).u(1).u(0), ErrMalformed},
		// Bytes after the last series.
		{"trailing bytes", append(bytes.Clone(valid), 0), ErrMalformed},
		// Samples but the sketch is missing.
		{"no sketch", header().u(1).str("k").u(1).u(1).u(1), ErrMalformed},
		// Sketch length beyond the input.
		{"huge sketch length", header().u(1).str("k").u(1).u(1).u(1).u(1<<50).raw(1, 2, 3), ErrMalformed},
		// Sketch holds 2 values, series says 1.
		{"sketch count mismatch", oneSample(posBins([]int64{100}, []float64{2})), ErrMalformed},
		// Sketch truncated mid-bin (sketches-go would silently accept it).
		{"sketch truncated", oneSample(posBins([]int64{100}, []float64{1})[:2]), ErrMalformed},
		// Negative, fractional, NaN and infinite counts.
		{"sketch negative count", oneSample(posBins([]int64{100, 101}, []float64{2, -1})), ErrMalformed},
		{"sketch fractional count", oneSample(posBins([]int64{100, 101}, []float64{0.5, 0.5})), ErrMalformed},
		{"sketch NaN count", oneSample(sk(func(b *[]byte) { enc.EncodeFlag(b, enc.FlagZeroCountVarFloat); enc.EncodeVarfloat64(b, nanf()) })), ErrMalformed},
		// Bin indices no duration maps to, or that would make the store
		// loop for ever.
		{"sketch huge index", oneSample(posBins([]int64{1 << 60}, []float64{1})), ErrMalformed},
		{"sketch tiny index", oneSample(posBins([]int64{-1 << 60}, []float64{1})), ErrMalformed},
		{"sketch contiguous step", oneSample(sk(func(b *[]byte) {
			enc.EncodeFlag(b, enc.NewFlag(enc.FlagTypePositiveStore, enc.BinEncodingContiguousCounts))
			enc.EncodeUvarint64(b, 2)
			enc.EncodeVarint64(b, 0)
			enc.EncodeVarint64(b, 1<<40)
			enc.EncodeVarfloat64(b, 0)
			enc.EncodeVarfloat64(b, 1)
		})), ErrMalformed},
		// Bin count larger than the bytes left.
		{"sketch bin count", oneSample(sk(func(b *[]byte) {
			enc.EncodeFlag(b, enc.NewFlag(enc.FlagTypePositiveStore, enc.BinEncodingIndexDeltas))
			enc.EncodeUvarint64(b, 1<<60)
			enc.EncodeVarint64(b, 1)
		})), ErrMalformed},
		// Latencies are never negative.
		{"sketch negative store", oneSample(sk(func(b *[]byte) {
			enc.EncodeFlag(b, enc.NewFlag(enc.FlagTypeNegativeStore, enc.BinEncodingIndexDeltas))
			enc.EncodeUvarint64(b, 1)
			enc.EncodeVarint64(b, 5)
		})), ErrMalformed},
		// The mapping is fixed by the format version, never sent.
		{"sketch index mapping", oneSample(sk(func(b *[]byte) {
			enc.EncodeFlag(b, enc.FlagIndexMappingBaseLogarithmic)
			enc.EncodeFloat64LE(b, 1.02)
			enc.EncodeFloat64LE(b, 0)
			enc.EncodeFlag(b, enc.FlagZeroCountVarFloat)
			enc.EncodeVarfloat64(b, 1)
		})), ErrMalformed},
		// Exposure: a presence flag other than 0 or 1.
		{"exposure presence", header3().u(2).u(0).u(0), ErrMalformed},
		// An hour past 23.
		{"exposure hour 24", header3().u(1).u(1<<24).f64(1, 1, 1).u(0).u(0), ErrMalformed},
		// Sums a lying school could send: NaN, infinite, negative, huge.
		{"exposure NaN", header3().u(1).u(1).f64(nanf(), 1, 1).u(0).u(0), ErrMalformed},
		{"exposure infinite", header3().u(1).u(1).f64(1, math.Inf(1), 1).u(0).u(0), ErrMalformed},
		{"exposure negative", header3().u(1).u(1).f64(1, 1, -1).u(0).u(0), ErrMalformed},
		{"exposure huge", header3().u(1).u(1<<23).f64(MaxExposureSum*2, 1, 1).u(0).u(0), ErrMalformed},
		// A set hour holding nothing (not canonical).
		{"exposure empty hour", header3().u(1).u(1).f64(0, 0, 0).u(0).u(0), ErrMalformed},
		// Activity classes a lying school could send: too many, past
		// the range, out of order or repeated, NaN, and missing bytes.
		{"exposure classes too many", header3().u(1).u(1).f64(1, 1, 1).u(2*MaxExposureClass + 2).u(0), ErrMalformed},
		{"exposure class out of range", header3().u(1).u(1).f64(1, 1, 1).u(1).v(MaxExposureClass+1).f64(1, 1, 1).u(0), ErrMalformed},
		{"exposure classes out of order", header3().u(1).u(1).f64(2, 2, 2).u(2).v(3).f64(1, 1, 1).v(2).f64(1, 1, 1).u(0), ErrMalformed},
		{"exposure class repeated", header3().u(1).u(1).f64(2, 2, 2).u(2).v(3).f64(1, 1, 1).v(3).f64(1, 1, 1).u(0), ErrMalformed},
		{"exposure class NaN", header3().u(1).u(1).f64(1, 1, 1).u(1).v(0).f64(1, nanf(), 1).u(0), ErrMalformed},
		{"exposure class truncated", header3().u(1).u(1).f64(1, 1, 1).u(1).v(0).f64(1, 1), ErrMalformed},
		// Two hours announced, one sent.
		{"exposure truncated", header3().u(1).u(3).f64(1, 1, 1).raw(0, 0, 0), ErrMalformed},
		// Exact-summary flags from DDSketchWithExactSummaryStatistics.
		{"sketch summary flag", oneSample(sk(func(b *[]byte) {
			enc.EncodeFlag(b, enc.FlagCount)
			enc.EncodeFloat64LE(b, 1)
		})), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fixture()
			err := s.UnmarshalBinary(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if len(s.Series) != 4 || !s.Start.Equal(t0) {
				t.Error("failed UnmarshalBinary changed the snapshot")
			}
		})
	}

	// Every proper prefix of a valid encoding is an error.
	for n := range len(valid) {
		var s Snapshot
		if err := s.UnmarshalBinary(valid[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(valid))
		}
	}
}

func nanf() float64 { var z float64; return z / z }

// FuzzUnmarshal checks that no input makes UnmarshalBinary panic or hang,
// and that whatever it accepts is consistent: it re-encodes, decodes to the
// same thing, merges, and prints. The seed corpus (valid encodings, and
// the bad inputs above) runs in every go test.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []*Snapshot{{}, fixture(), snap(func(r *Recorder) { r.Observe("k", 0, OK) })} {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Reasons folded past MaxReasons, with "other" last.
	folded := snap(func(r *Recorder) {
		s := r.Series("k")
		for i := range 3 * MaxReasons {
			for range i + 1 {
				s.CountReason(Error, fmt.Sprintf("r%02d", i), "sample \x00 é")
			}
		}
	})
	if b, err := folded.MarshalBinary(); err != nil {
		f.Fatal(err)
	} else {
		f.Add(b)
	}
	f.Add([]byte(header3().u(1).u(1<<23|1).f64(1, 2, 4, 0.5, 0, 0).u(0)))
	f.Add([]byte(formatMagic + "\x01"))
	f.Add([]byte(header().u(1).str("k").u(1).u(1).u(1).sketch(posBins([]int64{1 << 60}, []float64{1}))))
	f.Add([]byte(header().u(1 << 62).str("k").u(0).u(0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Snapshot
		if err := s.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrVersion", err)
			}
			return
		}
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted input does not re-encode: %v", err)
		}
		var s2 Snapshot
		if err := s2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded input does not decode: %v", err)
		}
		equalSnapshots(t, &s, &s2)
		if err := s2.Merge(&s); err != nil {
			t.Fatalf("merge: %v", err)
		}
		if err := WriteTable(io.Discard, &s2); err != nil {
			t.Fatal(err)
		}
	})
}
