package keeper

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// Retention of merged metrics: one bucket per second for the last hour,
// one per minute for the last day; older data is gone. Buckets more than
// compactAfter older than the newest report are kept encoded (about 5×
// smaller than live sketches), so memory per run is bounded by
// (fineSlots + coarseSlots) encoded snapshots of at most maxKeys keys —
// about 25 KB per bucket for 50 keys, whatever the number of schools.
const (
	fineSlots    = 3600
	coarseSlots  = 24 * 60
	compactAfter = 10 // seconds
	// maxKeys is the most metric keys kept per run; reports with more are
	// merged without the extra keys (counted as rejections).
	maxKeys = 500
)

// aggregator merges metrics reports into per-run time series.
type aggregator struct {
	mu   sync.Mutex
	runs map[string]*runSeries
}

// runSeries is one run's buckets: ring buffers indexed by time.
type runSeries struct {
	fine    []bucket // by unix second % fineSlots
	coarse  []bucket // by unix minute % coarseSlots, always encoded
	keys    map[string]bool
	traffic traffic
	// total merges every report since the keeper started: the run's
	// whole life for its report, whatever the retention.
	total  *metrics.Snapshot
	newest int64   // newest second reported
	live   []int64 // seconds whose fine bucket holds a live snapshot
	// changes counts merges into total, for checkpoints "only when
	// changed" (see checkpoint.go).
	changes uint64
}

// bucket is one interval's merged snapshot, live (snap) or encoded (enc);
// t is its unix second or minute. Both nil means empty.
type bucket struct {
	t    int64
	snap *metrics.Snapshot
	enc  []byte
}

// get returns the bucket's snapshot (decoded when encoded), or nil.
func (b *bucket) get() *metrics.Snapshot {
	if b.snap != nil || b.enc == nil {
		return b.snap
	}
	s := &metrics.Snapshot{}
	if err := s.UnmarshalBinary(b.enc); err != nil {
		return nil // encoded by this package: cannot happen
	}
	return s
}

// traffic sums websocket traffic since the keeper started.
type traffic struct {
	FramesIn  uint64 `json:"frames_in"`
	FramesOut uint64 `json:"frames_out"`
	BytesIn   uint64 `json:"bytes_in"`
	BytesOut  uint64 `json:"bytes_out"`
}

func newAggregator() *aggregator { return &aggregator{runs: map[string]*runSeries{}} }

// add merges one run's snapshot observed at keeper time at.
func (a *aggregator) add(run string, at time.Time, rm *wire.RunMetrics) error {
	s := &metrics.Snapshot{}
	if len(rm.Snapshot) > 0 {
		if err := s.UnmarshalBinary(rm.Snapshot); err != nil {
			return fmt.Errorf("decoding snapshot: %w", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.series(run)
	rs.traffic.FramesIn += rm.FramesIn
	rs.traffic.FramesOut += rm.FramesOut
	rs.traffic.BytesIn += rm.BytesIn
	rs.traffic.BytesOut += rm.BytesOut
	var dropped []string
	for key := range s.Series {
		if !rs.keys[key] {
			if len(rs.keys) >= maxKeys {
				dropped = append(dropped, key)
				delete(s.Series, key)
				continue
			}
			rs.keys[key] = true
		}
	}
	sec := at.Unix()
	b := &rs.fine[sec%fineSlots]
	switch {
	case b.t > sec:
		return fmt.Errorf("report for %v is older than the fine retention", at)
	case b.t < sec:
		if b.snap != nil || b.enc != nil {
			rs.fold(b)
		}
		*b = bucket{t: sec}
	}
	if b.snap == nil {
		if b.snap = b.get(); b.snap == nil {
			b.snap = &metrics.Snapshot{}
		}
		b.enc = nil
		rs.live = append(rs.live, sec)
	}
	if err := b.snap.Merge(s); err != nil {
		return err
	}
	if rs.total == nil {
		rs.total = &metrics.Snapshot{}
	}
	if err := rs.total.Merge(s); err != nil {
		return err
	}
	rs.changes++
	rs.newest = max(rs.newest, sec)
	rs.compact()
	if len(dropped) > 0 {
		return fmt.Errorf("run has %d metric keys already; dropped %d new ones (first %q)", maxKeys, len(dropped), dropped[0])
	}
	return nil
}

// series returns a run's series, made empty when new. a.mu is held.
func (a *aggregator) series(run string) *runSeries {
	rs := a.runs[run]
	if rs == nil {
		rs = &runSeries{fine: make([]bucket, fineSlots), coarse: make([]bucket, coarseSlots), keys: map[string]bool{}}
		a.runs[run] = rs
	}
	return rs
}

// compact encodes live fine buckets compactAfter seconds older than the
// newest report.
func (rs *runSeries) compact() {
	keep := rs.live[:0]
	for _, sec := range rs.live {
		b := &rs.fine[sec%fineSlots]
		if b.t != sec || b.snap == nil {
			continue
		}
		if sec > rs.newest-compactAfter {
			keep = append(keep, sec)
			continue
		}
		if enc, err := b.snap.MarshalBinary(); err == nil {
			b.snap, b.enc = nil, enc
		} else {
			keep = append(keep, sec)
		}
	}
	rs.live = keep
}

// fold merges an expiring fine bucket into its minute (kept encoded).
func (rs *runSeries) fold(b *bucket) {
	m := b.t / 60
	c := &rs.coarse[m%coarseSlots]
	if c.t != m {
		*c = bucket{t: m}
	}
	snap := c.get()
	if snap == nil {
		snap = &metrics.Snapshot{}
	}
	_ = snap.Merge(b.get()) // both built by this package: cannot fail
	if enc, err := snap.MarshalBinary(); err == nil {
		c.enc = enc
	}
}

// window merges a run's buckets in [from, to).
func (a *aggregator) window(run string, from, to time.Time) (*metrics.Snapshot, traffic) {
	out := &metrics.Snapshot{}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil {
		return out, traffic{}
	}
	lo, hi := from.Unix(), to.Unix()
	fineFrom := max(lo, hi-fineSlots+1)
	for sec := fineFrom; sec < hi; sec++ {
		if b := &rs.fine[sec%fineSlots]; b.t == sec {
			_ = out.Merge(b.get())
		}
	}
	// Older than the fine ring: whole minutes from the coarse one.
	for m := lo / 60; m*60 < fineFrom; m++ {
		if c := &rs.coarse[m%coarseSlots]; c.t == m {
			_ = out.Merge(c.get())
		}
	}
	return out, rs.traffic
}

// total returns a copy of everything merged for a run since the keeper
// started, its traffic, and whether the run has any series.
func (a *aggregator) total(run string) (*metrics.Snapshot, traffic, bool) {
	out := &metrics.Snapshot{}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil {
		return out, traffic{}, false
	}
	if rs.total != nil {
		_ = out.Merge(rs.total) // built by this package: cannot fail
	}
	return out, rs.traffic, true
}

// runIDs returns the runs with series.
func (a *aggregator) runIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.runs))
	for id := range a.runs {
		out = append(out, id)
	}
	return out
}

// forget drops a run's series.
func (a *aggregator) forget(run string) {
	a.mu.Lock()
	delete(a.runs, run)
	a.mu.Unlock()
}

// KeySummary is one metric key over a window.
type KeySummary struct {
	Key      string  `json:"key"`
	Count    uint64  `json:"count"`
	Failures uint64  `json:"failures"`
	Rate     float64 `json:"rate_per_sec"`
	// Latency quantiles in milliseconds (absent without latency samples).
	P50 *float64 `json:"p50_ms,omitempty"`
	P95 *float64 `json:"p95_ms,omitempty"`
	P99 *float64 `json:"p99_ms,omitempty"`
	// Outcomes counts observations per outcome name.
	Outcomes map[string]uint64 `json:"outcomes"`
	// Reasons are the key's most frequent failure causes in the window.
	Reasons []state.Reason `json:"reasons,omitempty"`
}

// MetricsSummary is a run's merged metrics over a window.
type MetricsSummary struct {
	Run     string       `json:"run"`
	From    time.Time    `json:"from"`
	To      time.Time    `json:"to"`
	Keys    []KeySummary `json:"keys"`
	Traffic traffic      `json:"traffic_total"`
}

// RunMetrics merges a run's metrics over the window ending now.
func (k *Keeper) RunMetrics(run string, window time.Duration) *MetricsSummary {
	to := time.Now().Add(time.Second).Truncate(time.Second)
	return k.MetricsBetween(run, to.Add(-window), to, "")
}

// MetricsBetween merges a run's metrics in [from, to), only keys with the
// given prefix when it is not empty.
func (k *Keeper) MetricsBetween(run string, from, to time.Time, prefix string) *MetricsSummary {
	window := to.Sub(from)
	snap, tr := k.agg.window(run, from, to)
	sum := &MetricsSummary{Run: run, From: from, To: to, Keys: []KeySummary{}, Traffic: tr}
	secs := window.Seconds()
	for _, key := range snap.Keys() {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		ss := snap.Series[key]
		ks := KeySummary{Key: key, Count: ss.Total(), Failures: ss.Failures(), Outcomes: map[string]uint64{}, Reasons: reasonsOf(ss)}
		ks.Rate = float64(ks.Count) / secs
		for o, c := range ss.Counts {
			if c > 0 {
				ks.Outcomes[metrics.Outcome(o).String()] = c
			}
		}
		for _, q := range []struct {
			p   float64
			dst **float64
		}{{0.5, &ks.P50}, {0.95, &ks.P95}, {0.99, &ks.P99}} {
			if d, ok := ss.Quantile(q.p); ok {
				ms := float64(d) / float64(time.Millisecond)
				*q.dst = &ms
			}
		}
		sum.Keys = append(sum.Keys, ks)
	}
	sort.Slice(sum.Keys, func(i, j int) bool { return sum.Keys[i].Key < sum.Keys[j].Key })
	return sum
}
