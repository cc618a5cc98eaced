package metrics

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Snapshot is what a Recorder saw during one interval, or the merge of
// several such intervals (from several schools, or several intervals).
// A Snapshot is not safe for concurrent mutation.
type Snapshot struct {
	// Start and End bound the interval. The zero time means unset: Merge
	// ignores it.
	Start, End time.Time
	// Series maps metric keys to their observations; nil is an empty map.
	Series map[string]*SeriesSnapshot
	// Exposure is how long the run's koi ran their background schedule
	// over the interval (nil: not measured).
	Exposure *Exposure
}

// SeriesSnapshot holds one metric key's observations over an interval:
// exact counts per outcome, and a sketch of the latencies of the
// observations that had one.
type SeriesSnapshot struct {
	// Counts holds the number of observations per outcome, indexed by
	// Outcome. Observations with and without a latency both count.
	Counts [NumOutcomes]uint64
	// Reasons counts the failures by reason, in canonical order: highest
	// count first (then by reason), OtherReason last; at most MaxReasons
	// entries, and their counts add up to at most Failures(). Failures
	// recorded without a reason are in no entry.
	Reasons []Reason

	samples uint64    // number of latencies in sketch
	sketch  quantiler // nil when samples == 0
}

// Total returns the number of observations, all outcomes together.
func (ss *SeriesSnapshot) Total() uint64 {
	var n uint64
	for _, c := range ss.Counts {
		n += c
	}
	return n
}

// Failures returns the number of observations whose outcome is a failure
// (see Outcome.Failure).
func (ss *SeriesSnapshot) Failures() uint64 {
	var n uint64
	for o, c := range ss.Counts {
		if Outcome(o).Failure() {
			n += c
		}
	}
	return n
}

// Samples returns the number of latency samples in the sketch: the
// observations recorded with Observe, as opposed to Count.
func (ss *SeriesSnapshot) Samples() uint64 { return ss.samples }

// Quantile returns the latency at quantile q (0.5 for the median, 0.99 for
// p99) within 1% relative error of the true sample at that rank. It returns
// false when there are no latency samples or q is outside [0, 1].
func (ss *SeriesSnapshot) Quantile(q float64) (time.Duration, bool) {
	if ss.samples == 0 || ss.sketch == nil {
		return 0, false
	}
	ms, ok := ss.sketch.Quantile(q)
	if !ok {
		return 0, false
	}
	return msDuration(ms), true
}

// merge adds o into ss. o is not modified, and ss never shares a sketch
// with o afterwards.
func (ss *SeriesSnapshot) merge(o *SeriesSnapshot) error {
	if o.samples > 0 {
		if o.sketch == nil {
			return errors.New("metrics: series has samples but no sketch")
		}
		if ss.sketch == nil {
			ss.sketch = newQuantiler()
		}
		if err := ss.sketch.Merge(o.sketch); err != nil {
			return err
		}
	}
	ss.samples += o.samples
	for i, c := range o.Counts {
		ss.Counts[i] += c
	}
	if len(o.Reasons) > 0 {
		ss.Reasons = mergeReasons(ss.Reasons, o.Reasons)
	}
	return nil
}

// Merge merges o into s: counts add exactly, latency sketches merge,
// exposures add (nil stays nil only when both are), Start
// becomes the earlier and End the later of the two (ignoring zero times).
// o is left unchanged and shares nothing with s afterwards. On error s is
// unchanged. Merging a snapshot into itself doubles it.
func (s *Snapshot) Merge(o *Snapshot) error {
	if o == nil {
		return nil
	}
	for key, oss := range o.Series {
		if oss == nil {
			return fmt.Errorf("metrics: merge: series %q is nil", key)
		}
		if oss.samples > 0 && oss.sketch == nil {
			return fmt.Errorf("metrics: merge: series %q has samples but no sketch", key)
		}
		if ss := s.Series[key]; ss != nil && ss.samples > 0 && ss.sketch == nil {
			return fmt.Errorf("metrics: merge: series %q has samples but no sketch", key)
		}
	}
	if o == s {
		// Merging a sketch into itself would read what it writes.
		o = s.clone()
	}
	if s.Series == nil {
		s.Series = make(map[string]*SeriesSnapshot, len(o.Series))
	}
	for key, oss := range o.Series {
		ss := s.Series[key]
		if ss == nil {
			ss = &SeriesSnapshot{}
			s.Series[key] = ss
		}
		if err := ss.merge(oss); err != nil {
			// Only a foreign quantiler implementation gets here, and
			// this package has one.
			return fmt.Errorf("metrics: merge %q: %w", key, err)
		}
	}
	if o.Exposure != nil {
		if s.Exposure == nil {
			s.Exposure = &Exposure{}
		}
		s.Exposure.Merge(o.Exposure)
	}
	if !o.Start.IsZero() && (s.Start.IsZero() || o.Start.Before(s.Start)) {
		s.Start = o.Start
	}
	if o.End.After(s.End) {
		s.End = o.End
	}
	return nil
}

// clone returns a deep copy of s.
func (s *Snapshot) clone() *Snapshot {
	c := &Snapshot{Start: s.Start, End: s.End, Series: make(map[string]*SeriesSnapshot, len(s.Series)), Exposure: s.Exposure.Clone()}
	for k, ss := range s.Series {
		n := &SeriesSnapshot{}
		if err := n.merge(ss); err != nil {
			panic("metrics: internal error: " + err.Error()) // checked by Merge
		}
		c.Series[k] = n
	}
	return c
}

// Keys returns the metric keys in s, sorted.
func (s *Snapshot) Keys() []string {
	keys := make([]string, 0, len(s.Series))
	for k := range s.Series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
