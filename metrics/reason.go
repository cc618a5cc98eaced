package metrics

import (
	"cmp"
	"slices"
	"strings"
	"unsafe"
)

// Bounds on failure reasons. Reasons and samples come from the target (a
// Slack-style `error` field, a reply body, a close text), so everything
// about them is bounded before it is kept.
const (
	// MaxReasons is the most distinct reasons a series keeps per snapshot
	// (and a merged snapshot per key); the rest are counted under
	// OtherReason, which takes the last place.
	MaxReasons = 8
	// MaxReasonLen is the longest reason kept, in bytes, after escaping.
	MaxReasonLen = 64
	// MaxSampleLen is the longest sample kept, in bytes, after escaping.
	MaxSampleLen = 256
	// OtherReason names the failures whose reasons did not fit in
	// MaxReasons.
	OtherReason = "other"
)

// Reason counts the failures of one metric key that happened for one
// reason, e.g. "not_authed", "http 503", "close 1011", "timeout", with
// one sample of what the target said (a reply body prefix, an error
// message). Reason and Sample hold printable ASCII only (see CleanReason
// and CleanSample).
type Reason struct {
	Reason string
	Count  uint64
	Sample string
}

// CleanReason returns r bounded to MaxReasonLen bytes of printable ASCII:
// other bytes are escaped as \xNN, and a reason that does not fit is cut
// (ending in "..."). An empty reason stays empty. It does not allocate
// when r is already clean.
func CleanReason(r string) string { return clean(r, MaxReasonLen) }

// CleanSample is CleanReason for samples, bounded to MaxSampleLen bytes.
func CleanSample(s string) string { return clean(s, MaxSampleLen) }

// isClean reports whether s is printable ASCII of at most max bytes.
func isClean(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func clean(s string, max int) string {
	if isClean(s, max) {
		return s
	}
	return string(appendClean(make([]byte, 0, max), s, max))
}

// cleanReasonTo is CleanReason writing an escaped reason into buf instead
// of a new string, so that looking up a reason seen before never
// allocates. The result may alias buf: whoever keeps it must copy it.
func cleanReasonTo(buf *[MaxReasonLen]byte, r string) string {
	if isClean(r, MaxReasonLen) {
		return r
	}
	b := appendClean(buf[:0], r, MaxReasonLen)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendClean appends s escaped and bounded to max bytes (see
// CleanReason) to b.
func appendClean(b []byte, s string, max int) []byte {
	width := func(c byte) int {
		if c < 0x20 || c > 0x7e {
			return 4 // \xNN
		}
		return 1
	}
	total := 0
	for i := 0; i < len(s) && total <= max; i++ {
		total += width(s[i])
	}
	limit := max
	if total > max {
		limit = max - len("...")
	}
	const hex = "0123456789abcdef"
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if n+width(c) > limit {
			break
		}
		n += width(c)
		if width(c) == 1 {
			b = append(b, c)
			continue
		}
		b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
	}
	if total > max {
		b = append(b, "..."...)
	}
	return b
}

// reasonTable is a shard's reasons for the current interval: at most
// MaxReasons entries, the last place taken by OtherReason once they are
// full. Entries whose count went back to zero at a snapshot keep their
// interned reason, so a reason seen before is counted without allocating.
type reasonTable struct {
	entries []Reason // len ≤ MaxReasons
}

// add counts one failure for reason (already clean), keeping sample (raw;
// cleaned only when kept) when the reason has none yet this interval.
func (t *reasonTable) add(reason, sample string) {
	for i := range t.entries {
		e := &t.entries[i]
		if e.Reason != reason {
			continue
		}
		if e.Count == 0 || e.Sample == "" {
			e.Sample = strings.Clone(CleanSample(sample))
		}
		e.Count++
		return
	}
	// A new reason: take a free place, or reuse one left idle by the last
	// snapshot, or count it under OtherReason.
	if len(t.entries) < MaxReasons-1 || (len(t.entries) == MaxReasons-1 && reason == OtherReason) {
		t.entries = append(t.entries, Reason{Reason: strings.Clone(reason), Count: 1, Sample: strings.Clone(CleanSample(sample))})
		return
	}
	for i := range t.entries {
		if e := &t.entries[i]; e.Count == 0 && e.Reason != OtherReason {
			*e = Reason{Reason: strings.Clone(reason), Count: 1, Sample: strings.Clone(CleanSample(sample))}
			return
		}
	}
	t.addOther(reason, sample)
}

// addOther counts a failure whose reason found no place under
// OtherReason, its sample naming the reason.
func (t *reasonTable) addOther(reason, sample string) {
	sample = sample[:min(len(sample), MaxSampleLen)] // before concatenating
	for i := range t.entries {
		if e := &t.entries[i]; e.Reason == OtherReason {
			if e.Count == 0 || e.Sample == "" {
				e.Sample = CleanSample(reason + ": " + sample)
			}
			e.Count++
			return
		}
	}
	// Only reached with MaxReasons-1 entries: OtherReason takes the last.
	t.entries = append(t.entries, Reason{Reason: OtherReason, Count: 1, Sample: CleanSample(reason + ": " + sample)})
}

// take returns the reasons counted since the last take and zeroes their
// counts (keeping the interned names).
func (t *reasonTable) take() []Reason {
	var out []Reason
	for i := range t.entries {
		if e := &t.entries[i]; e.Count > 0 {
			out = append(out, *e)
			e.Count = 0
		}
	}
	return out
}

// mergeReasons adds the reasons of b into a and returns the result folded
// to MaxReasons entries in canonical order (see foldReasons). a's samples
// win; b is not modified.
func mergeReasons(a, b []Reason) []Reason {
	if len(b) == 0 {
		return a
	}
	out := slices.Clone(a)
	for _, r := range b {
		i := slices.IndexFunc(out, func(x Reason) bool { return x.Reason == r.Reason })
		if i < 0 {
			out = append(out, r)
			continue
		}
		out[i].Count = addSat(out[i].Count, r.Count)
		if out[i].Sample == "" {
			out[i].Sample = r.Sample
		}
	}
	return foldReasons(out)
}

// foldReasons sorts rs by count (highest first, then by reason) and, past
// MaxReasons entries, folds the smallest into one OtherReason entry in
// the last place.
func foldReasons(rs []Reason) []Reason {
	sortReasons(rs)
	if len(rs) <= MaxReasons {
		return rs
	}
	other := Reason{Reason: OtherReason}
	kept := make([]Reason, 0, MaxReasons)
	for _, r := range rs {
		if r.Reason != OtherReason && len(kept) < MaxReasons-1 {
			kept = append(kept, r)
			continue
		}
		other.Count = addSat(other.Count, r.Count)
		if other.Sample == "" || r.Reason == OtherReason {
			if r.Reason == OtherReason {
				other.Sample = r.Sample
			} else {
				other.Sample = CleanSample(r.Reason + ": " + r.Sample)
			}
		}
	}
	return append(kept, other)
}

// sortReasons puts rs in canonical order: OtherReason last, the rest by
// count, highest first, then by reason.
func sortReasons(rs []Reason) {
	slices.SortFunc(rs, func(a, b Reason) int {
		if (a.Reason == OtherReason) != (b.Reason == OtherReason) {
			if a.Reason == OtherReason {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
}

// addSat adds without wrapping around.
func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}
