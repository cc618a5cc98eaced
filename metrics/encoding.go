package metrics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"
)

// The binary format of a Snapshot, version 3. Integers are varints
// (encoding/binary: uvarint, or zig-zag varint where signed).
//
//	magic    "KPM"            3 bytes
//	version  3                1 byte
//	start    varint unix seconds, uvarint nanoseconds
//	end      varint unix seconds, uvarint nanoseconds
//	exposure uvarint          0: not measured (Exposure nil); 1: then
//	  hours    uvarint bit set: bit h set when hour h has a non-zero sum
//	  sums     per set bit, lowest first: Minutes[h], Weighted[h],
//	           Squared[h], each a float64 (IEEE 754, 8 bytes little
//	           endian), finite, in [0, MaxExposureSum], then
//	    classes  uvarint number of activity classes of the hour (at most
//	             2×MaxExposureClass+1), then that many times, by class:
//	             the class (zig-zag varint, ±MaxExposureClass) and its
//	             minutes, weighted and squared sums (float64s as above)
//	n        uvarint          number of series, then n times, by key:
//	  key      uvarint length, bytes
//	  outcomes uvarint bit set: bit i set when Counts[i] > 0
//	  counts   uvarint per set bit, lowest bit first
//	  reasons  uvarint        number of failure reasons (≤ MaxReasons), then
//	           that many times, in Reason order (count descending, then
//	           reason; "other" last):
//	    reason   uvarint length (1–MaxReasonLen), printable ASCII bytes
//	    count    uvarint (> 0; all together ≤ the failure counts)
//	    sample   uvarint length (≤ MaxSampleLen), printable ASCII bytes
//	  samples  uvarint        latency samples
//	  sketch   uvarint length, bytes — only when samples > 0: a DDSketch in
//	           sketches-go's own encoding, index mapping omitted (version 1
//	           means logarithmic, 1% relative accuracy, values in ms)
//
// Nothing may follow the last series. Any change to this layout, to the
// outcome numbering or to the sketch mapping needs a new version.
//
// Version 2 is version 3 without the exposure section, version 1 is
// version 2 without the reasons section; both still decode, with a nil
// Exposure (checkpoints, stored reports and schools written before).
const (
	formatMagic   = "KPM"
	formatVersion = 3
	// formatVersionNoExposure and formatVersionNoReasons are the previous
	// versions, still read.
	formatVersionNoExposure = 2
	formatVersionNoReasons  = 1
)

// MaxExposureSum bounds every sum of an encoded Exposure: 10^15
// koi-minutes is 100,000 koi for nineteen thousand years. Decoding refuses
// more, so that a lying school cannot push a run's total to infinity.
const MaxExposureSum = 1e15

// ErrMalformed is returned (wrapped, with details) by UnmarshalBinary for
// input that is not a valid encoded Snapshot.
var ErrMalformed = errors.New("metrics: malformed snapshot")

// ErrVersion is returned (wrapped) by UnmarshalBinary for a snapshot encoded
// in a format version this package does not read.
var ErrVersion = errors.New("metrics: unsupported snapshot version")

// MarshalBinary implements encoding.BinaryMarshaler with the compact,
// versioned format described above. Output is deterministic: series are
// written in key order.
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(nil)
}

// AppendBinary implements encoding.BinaryAppender: it appends the
// MarshalBinary encoding of s to b.
func (s *Snapshot) AppendBinary(b []byte) ([]byte, error) {
	b = slices.Grow(b, 32+len(s.Series)*512) // a typical busy series
	b = append(b, formatMagic...)
	b = append(b, formatVersion)
	b = appendTime(b, s.Start)
	b = appendTime(b, s.End)
	var err error
	if b, err = appendExposure(b, s.Exposure); err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(s.Series)))
	for _, key := range s.Keys() {
		ss := s.Series[key]
		if ss == nil {
			return nil, fmt.Errorf("metrics: encode: series %q is nil", key)
		}
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
		var set uint64
		for o, c := range ss.Counts {
			if c > 0 {
				set |= 1 << o
			}
		}
		b = binary.AppendUvarint(b, set)
		for _, c := range ss.Counts {
			if c > 0 {
				b = binary.AppendUvarint(b, c)
			}
		}
		if len(ss.Reasons) > MaxReasons {
			return nil, fmt.Errorf("metrics: encode: series %q has %d reasons (at most %d)", key, len(ss.Reasons), MaxReasons)
		}
		b = binary.AppendUvarint(b, uint64(len(ss.Reasons)))
		for i, r := range ss.Reasons {
			// What the decoder refuses is never written.
			if r.Count == 0 || r.Reason == "" || !isClean(r.Reason, MaxReasonLen) || !isClean(r.Sample, MaxSampleLen) ||
				(i > 0 && !reasonBefore(ss.Reasons[i-1], r)) {
				return nil, fmt.Errorf("metrics: encode: series %q: reason %q is empty, unbounded, zero or out of order", key, r.Reason)
			}
			b = appendString(b, r.Reason)
			b = binary.AppendUvarint(b, r.Count)
			b = appendString(b, r.Sample)
		}
		b = binary.AppendUvarint(b, ss.samples)
		if ss.samples == 0 {
			continue
		}
		if ss.sketch == nil {
			return nil, fmt.Errorf("metrics: encode: series %q has samples but no sketch", key)
		}
		// Reserve the length prefix's maximum size, encode, then move the
		// sketch left if the length turned out to need fewer bytes.
		at := len(b)
		b = append(b, make([]byte, binary.MaxVarintLen64)...)
		if b, err = appendSketch(b, ss.sketch); err != nil {
			return nil, fmt.Errorf("metrics: encode %q: %w", key, err)
		}
		n := len(b) - at - binary.MaxVarintLen64
		w := binary.PutUvarint(b[at:], uint64(n))
		copy(b[at+w:], b[at+binary.MaxVarintLen64:])
		b = b[:at+w+n]
	}
	return b, nil
}

// appendExposure writes the exposure section; what the decoder refuses
// is never written.
func appendExposure(b []byte, e *Exposure) ([]byte, error) {
	if e == nil {
		return append(b, 0), nil
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("metrics: encode: %w", err)
	}
	hours := e.hours()
	b = binary.AppendUvarint(append(b, 1), uint64(hours))
	for h := range 24 {
		if hours&(1<<h) != 0 {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Minutes[h]))
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Weighted[h]))
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Squared[h]))
			cs := e.hourClasses(int8(h))
			b = binary.AppendUvarint(b, uint64(len(cs)))
			for _, c := range cs {
				b = binary.AppendVarint(b, int64(c.class))
				for _, x := range []float64{c.minutes, c.weighted, c.squared} {
					b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
				}
			}
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// MaxSeries is the most series a snapshot may hold: decoding refuses
// more, so that a hostile report cannot make the keeper build millions of
// sketches (it keeps at most a few hundred keys per run anyway).
const MaxSeries = 20_000

// UnmarshalBinary implements encoding.BinaryUnmarshaler. Truncated, garbage
// or oversized input yields an error wrapping ErrMalformed (or ErrVersion),
// never a panic, and leaves s unchanged. Times decode in UTC.
func (s *Snapshot) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if len(data) < len(formatMagic)+1 || string(data[:len(formatMagic)]) != formatMagic {
		return fmt.Errorf("%w: not a koipond metrics snapshot", ErrMalformed)
	}
	v := data[len(formatMagic)]
	if v < formatVersionNoReasons || v > formatVersion {
		return fmt.Errorf("%w: %d (this build reads %d to %d)", ErrVersion, v, formatVersionNoReasons, formatVersion)
	}
	d.reasons = v >= formatVersionNoExposure
	d.b = data[len(formatMagic)+1:]
	start := d.time("start")
	end := d.time("end")
	var exp *Exposure
	if v >= formatVersion {
		exp = d.exposure()
	}
	n := d.uvarint("series count")
	// A series takes at least 3 bytes (key length, outcome set, samples);
	// checking this first keeps a forged count from sizing the map.
	if d.err == nil && n > uint64(len(d.b)/3) {
		d.fail("series count %d exceeds what %d bytes can hold", n, len(d.b))
	}
	if d.err == nil && n > MaxSeries {
		d.fail("series count %d exceeds %d", n, MaxSeries)
	}
	if d.err != nil {
		return d.err
	}
	series := make(map[string]*SeriesSnapshot, n)
	prev := ""
	for i := range n {
		key := d.bytes("key")
		if d.err != nil {
			return d.err
		}
		k := string(key)
		if i > 0 && k <= prev {
			return fmt.Errorf("%w: series %.64q out of order or repeated", ErrMalformed, k)
		}
		prev = k
		ss, err := d.series(k)
		if err != nil {
			return err
		}
		series[k] = ss
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	*s = Snapshot{Start: start, End: end, Series: series, Exposure: exp}
	return nil
}

// exposure reads the exposure section, checking every bound the encoder
// keeps.
func (d *decoder) exposure() *Exposure {
	switch p := d.uvarint("exposure"); {
	case d.err != nil:
		return nil
	case p == 0:
		return nil
	case p != 1:
		d.fail("exposure: presence %d (want 0 or 1)", p)
		return nil
	}
	hours := d.uvarint("exposure hours")
	if d.err == nil && hours>>24 != 0 {
		d.fail("exposure: hour set %#x names hours past 23", hours)
	}
	if d.err != nil {
		return nil
	}
	e := &Exposure{}
	for h := range 24 {
		if hours&(1<<h) == 0 {
			continue
		}
		if len(d.b) < 24 {
			d.fail("exposure: hour %d: %d bytes left, want 24", h, len(d.b))
			return nil
		}
		for _, dst := range []*float64{&e.Minutes[h], &e.Weighted[h], &e.Squared[h]} {
			*dst = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
			d.b = d.b[8:]
		}
		if e.Minutes[h] == 0 && e.Weighted[h] == 0 && e.Squared[h] == 0 {
			d.fail("exposure: hour %d is set but holds nothing", h)
			return nil
		}
		n := d.uvarint("exposure classes")
		if d.err == nil && n > 2*MaxExposureClass+1 {
			d.fail("exposure: hour %d: %d activity classes (at most %d)", h, n, 2*MaxExposureClass+1)
		}
		for range n {
			if d.err != nil {
				return nil
			}
			c := d.varint("exposure class")
			if d.err == nil && (c < -MaxExposureClass || c > MaxExposureClass) {
				d.fail("exposure: hour %d: activity class %d (want ±%d)", h, c, MaxExposureClass)
			}
			if d.err == nil && len(d.b) < 24 {
				d.fail("exposure: hour %d: activity class %d: %d bytes left, want 24", h, c, len(d.b))
			}
			if d.err != nil {
				return nil
			}
			ec := exposureClass{hour: int8(h), class: int8(c)}
			for _, dst := range []*float64{&ec.minutes, &ec.weighted, &ec.squared} {
				*dst = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
				d.b = d.b[8:]
			}
			e.classes = append(e.classes, ec)
		}
	}
	if err := e.check(); err != nil {
		d.fail("%v", err)
		return nil
	}
	return e
}

// decoder reads varints from b, remembering the first error.
type decoder struct {
	b       []byte
	err     error
	reasons bool // the format has a reasons section
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("%s: bad or truncated varint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("%s: bad or truncated varint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string, aliasing d.b.
func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%s: length %d exceeds the %d bytes left", what, n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// time reads a time written by appendTime.
func (d *decoder) time(what string) time.Time {
	sec := d.varint(what)
	nsec := d.uvarint(what)
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		d.fail("%s: %d nanoseconds", what, nsec)
		return time.Time{}
	}
	// Keep to years 0001–9999, which every time.Time method handles.
	const minSec, maxSec = -62135596800, 253402300799
	if sec < minSec || sec > maxSec {
		d.fail("%s: %d seconds out of range", what, sec)
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// series reads one series after its key.
func (d *decoder) series(key string) (*SeriesSnapshot, error) {
	ss := &SeriesSnapshot{}
	set := d.uvarint("outcome set")
	if d.err == nil && set>>NumOutcomes != 0 {
		d.fail("series %.64q: unknown outcomes in set %#x", key, set)
	}
	var total uint64
	for o := range NumOutcomes {
		if set&(1<<o) == 0 {
			continue
		}
		c := d.uvarint("count")
		if d.err == nil && c == 0 {
			d.fail("series %.64q: zero count for %s", key, o)
		}
		var carry uint64
		if total, carry = bits.Add64(total, c, 0); carry != 0 {
			d.fail("series %.64q: total count overflows", key)
		}
		ss.Counts[o] = c
	}
	if d.reasons {
		ss.Reasons = d.reasonList(key, ss.Failures())
	}
	ss.samples = d.uvarint("samples")
	if d.err != nil {
		return nil, d.err
	}
	if ss.samples > total {
		return nil, fmt.Errorf("%w: series %.64q: %d samples but %d observations", ErrMalformed, key, ss.samples, total)
	}
	if ss.samples == 0 {
		return ss, nil
	}
	if ss.samples > math.MaxUint64>>11 { // beyond float64's exact integers
		return nil, fmt.Errorf("%w: series %.64q: %d samples", ErrMalformed, key, ss.samples)
	}
	raw := d.bytes("sketch")
	if d.err != nil {
		return nil, d.err
	}
	q, err := decodeSketch(raw, ss.samples)
	if err != nil {
		return nil, fmt.Errorf("%w: series %.64q: %w", ErrMalformed, key, err)
	}
	ss.sketch = q
	return ss, nil
}

// reasonList reads a series' reasons section, checking every bound the
// encoder keeps: at most MaxReasons, clean and bounded strings, canonical
// order, positive counts adding up to at most failures.
func (d *decoder) reasonList(key string, failures uint64) []Reason {
	n := d.uvarint("reason count")
	if d.err == nil && n > MaxReasons {
		d.fail("series %.64q: %d reasons (at most %d)", key, n, MaxReasons)
	}
	if d.err != nil || n == 0 {
		return nil
	}
	rs := make([]Reason, 0, n)
	var sum uint64
	for range n {
		reason := d.bytes("reason")
		count := d.uvarint("reason count")
		sample := d.bytes("reason sample")
		if d.err != nil {
			return nil
		}
		switch {
		case len(reason) == 0 || !isClean(string(reason), MaxReasonLen):
			d.fail("series %.64q: reason %.64q is empty, too long or not printable ASCII", key, reason)
		case !isClean(string(sample), MaxSampleLen):
			d.fail("series %.64q: sample of reason %q is too long or not printable ASCII", key, reason)
		case count == 0:
			d.fail("series %.64q: reason %q has a zero count", key, reason)
		}
		var carry uint64
		if sum, carry = bits.Add64(sum, count, 0); carry != 0 || sum > failures {
			d.fail("series %.64q: reasons count more than the %d failures", key, failures)
		}
		if d.err != nil {
			return nil
		}
		r := Reason{Reason: string(reason), Count: count, Sample: string(sample)}
		if len(rs) > 0 && !reasonBefore(rs[len(rs)-1], r) {
			d.fail("series %.64q: reason %q out of order or repeated", key, reason)
			return nil
		}
		rs = append(rs, r)
	}
	return rs
}

// reasonBefore reports whether a comes strictly before b in the order
// sortReasons gives.
func reasonBefore(a, b Reason) bool {
	if a.Reason == OtherReason {
		return false
	}
	if b.Reason == OtherReason {
		return true
	}
	return a.Count > b.Count || (a.Count == b.Count && a.Reason < b.Reason)
}

// MarshalBinaryWithin encodes s like MarshalBinary and, when that is over
// limit bytes, sheds what a restored report can best do without until it
// fits: first the reasons' samples, then the reasons (their failures stay
// counted by outcome). Counts, latencies and the exposure (the fidelity
// verdict's denominator, a few hundred bytes at most) are never shed, so the result
// may still be over limit; the caller decides what to do then.
func (s *Snapshot) MarshalBinaryWithin(limit int) ([]byte, error) {
	enc, err := s.MarshalBinary()
	if err != nil || len(enc) <= limit {
		return enc, err
	}
	for _, shed := range []func(Reason) (Reason, bool){
		func(r Reason) (Reason, bool) { r.Sample = ""; return r, true },
		func(Reason) (Reason, bool) { return Reason{}, false },
	} {
		lean := &Snapshot{Start: s.Start, End: s.End, Series: make(map[string]*SeriesSnapshot, len(s.Series)), Exposure: s.Exposure}
		for k, ss := range s.Series {
			c := *ss
			c.Reasons = nil
			for _, r := range ss.Reasons {
				if r, keep := shed(r); keep {
					c.Reasons = append(c.Reasons, r)
				}
			}
			lean.Series[k] = &c
		}
		if enc, err = lean.MarshalBinary(); err != nil || len(enc) <= limit {
			return enc, err
		}
	}
	return enc, nil
}
