package keeper

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// Retention of merged metrics. A run's history is four rings of buckets
// (tiers): one bucket per second for the last 6 minutes, per 10 s for the
// last hour, per minute for the last 6 hours, per 5 minutes for the last
// day; older data is gone. Every second's data lives in exactly one
// bucket: as the run's newest report moves on, a bucket grown too old for
// its tier is merged into the bucket of the next tier that holds it
// (counts add exactly; sketches merge keeping their 1% accuracy). A window
// is answered from whole buckets, a bucket counting when its middle
// second is in the window: to the second over the last 6 minutes (every
// live threshold and guardrail of up to 5 minutes), to 10 s over the
// hour, to the minute over 6 hours, to 5 minutes over the day. The run's
// total, for its report, is kept apart and whole.
//
// Buckets more than liveFor older than the newest report are kept
// encoded: the snapshot encoding with metric keys replaced by two-byte ids
// from the run's key table, zstd-compressed, about 10× smaller than live
// sketches, in the runs' history file or memory (blockstore.go).
// A busy run (50 keys, 2,000 observations a second, a day long) holds
// about 8.0 MB (BenchmarkRunMemory; 207 MB with one bucket per second for
// an hour and per minute for a day, uncompressed). Whatever a run is fed,
// its encoded history stays under maxRunBytes by dropping its
// oldest buckets first (its day gets shorter, never its recent past);
// its live part is liveFor+1 second buckets and its total, each at most
// maxKeys sketches of at most 2,048 bins (metrics' bound). A run of 500
// busy keys holds about 16 MB.
const (
	coarseSlots = 24 * 60 // minutes of history: the retention of a run's series
	// liveFor is how long a second's bucket stays live (merged into
	// without decoding) after the newest report: reports for a second
	// arrive within one of each other. A report later than that is
	// merged into the encoded bucket.
	liveFor = 2 // seconds
	// compactAfter is when a second's bucket counts as settled for the
	// window cache (guardwindow.go): reports later than this still count
	// in windows, but not in a window cached already.
	compactAfter = 10 // seconds
	// maxKeys is the most metric keys kept per run; reports with more are
	// merged without the extra keys (counted as rejections).
	maxKeys = 500
	// maxRunBytes bounds a run's encoded buckets: with the live ones,
	// 16 MB for a run of maxKeys busy keys.
	maxRunBytes = 10 << 20
)

// tier is one resolution of a run's history: buckets of res seconds, each
// kept while its newest second is less than horizon seconds older than the
// run's newest report. Every res divides the next tier's, every horizon
// is a multiple of the next tier's res.
type tier struct{ res, horizon int64 }

var tiers = [...]tier{{1, 6 * 60}, {10, 60 * 60}, {60, 6 * 60 * 60}, {5 * 60, coarseSlots * 60}}

const numTiers = len(tiers)

// slots is the ring size of tier i: every bucket it can hold at once, and
// one spare.
func slots(i int) int64 { return tiers[i].horizon/tiers[i].res + 2 }

// floorDiv is a/b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// aggregator merges metrics reports into per-run time series.
type aggregator struct {
	mu   sync.Mutex
	runs map[string]*runSeries
	// scratch, gather and encBuf are reused to decompress buckets, to
	// copy them out of their run's store and to compress them; a.mu
	// guards them.
	scratch, gather, encBuf []byte
	// maxBytes bounds each run's encoded buckets: maxRunBytes.
	maxBytes int
	// space holds every run's encoded buckets (blockstore.go), or, when
	// nil, each run has a memory space of its own.
	space *blockSpace
	// readErrs counts buckets that could not be read back from space.
	readErrs uint64
}

// runSeries is one run's buckets: a ring per tier, indexed by bucket
// number (unix second / res) modulo its size.
type runSeries struct {
	rings [numTiers][]bucket
	// cursor[i] is the lowest bucket number tier i may still hold.
	cursor [numTiers]int64
	keys   map[string]uint16 // key → id in encoded buckets
	names  []string          // id → key
	// store holds the encoded buckets, outside the Go heap.
	store *blockStore
	// bytes is the size of the encoded buckets, held under maxRunBytes.
	bytes   int
	traffic traffic
	// total merges every report since the keeper started: the run's
	// whole life for its report, whatever the retention.
	total  *metrics.Snapshot
	newest int64   // newest second reported
	live   []int64 // seconds whose tier-0 bucket holds a live snapshot
	// changes counts merges into total, for checkpoints "only when
	// changed" (see checkpoint.go).
	changes uint64
}

// bucket is one interval's merged snapshot, live (snap, tier 0 only) or
// encoded (enc, in the run's store); t is its bucket number. Neither
// means empty.
type bucket struct {
	t    int64
	snap *metrics.Snapshot
	enc  stored
}

func (b *bucket) empty() bool { return b.snap == nil && b.enc.n == 0 }

// bucketCodec compresses encoded buckets. One encoder and one decoder
// serve every run (their calls may run concurrently); their windows are
// small because a bucket is at most a few hundred KB. The default level
// compresses a busy run's buckets as small as SpeedBetterCompression did
// (7.11 MB against 7.12 MB a day, BenchmarkRunMemory) with 1.3 MB of
// encoder state instead of 4.6 MB, held for the keeper's life.
var bucketCodec = sync.OnceValues(func() (*zstd.Encoder, *zstd.Decoder) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<18), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err) // constant options: cannot happen
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(maxBucketBytes))
	if err != nil {
		panic(err) // constant options: cannot happen
	}
	return enc, dec
})

// maxBucketBytes bounds a decompressed bucket: maxKeys series of at most
// 2,048 sketch bins (metrics' bound) take well under this.
const maxBucketBytes = 64 << 20

// keyID returns key's id in the run's key table, adding it when there is
// room; false when the table is full.
func (rs *runSeries) keyID(key string) (uint16, bool) {
	if id, ok := rs.keys[key]; ok {
		return id, true
	}
	if len(rs.names) >= maxKeys {
		return 0, false
	}
	id := uint16(len(rs.names))
	rs.keys[key] = id
	rs.names = append(rs.names, key)
	return id, true
}

// idKey is the two-byte key standing for id in encoded buckets.
func idKey(id uint16) string { return string([]byte{byte(id >> 8), byte(id)}) }

// encode returns snap encoded for a bucket: keys as ids, compressed; the
// exposure (the fidelity verdict's denominator) goes along whole. The
// result is in *buf (reused), valid until its next use.
func (rs *runSeries) encode(snap *metrics.Snapshot, buf *[]byte) ([]byte, error) {
	byID := &metrics.Snapshot{Start: snap.Start, End: snap.End, Series: make(map[string]*metrics.SeriesSnapshot, len(snap.Series)), Exposure: snap.Exposure}
	for key, ss := range snap.Series {
		id, ok := rs.keys[key]
		if !ok {
			return nil, fmt.Errorf("encoding a bucket: key %q not in the run's table", key)
		}
		byID.Series[idKey(id)] = ss
	}
	raw, err := byID.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding a bucket: %w", err)
	}
	enc, _ := bucketCodec()
	*buf = enc.EncodeAll(raw, (*buf)[:0])
	return *buf, nil
}

// decode returns the snapshot of an encoded bucket; gather and scratch
// are buffers to reuse (the aggregator's, under its lock).
func (rs *runSeries) decode(enc stored, gather, scratch *[]byte) (*metrics.Snapshot, error) {
	_, dec := bucketCodec()
	var err error
	if *gather, err = rs.store.get(enc, (*gather)[:0]); err != nil {
		return nil, err
	}
	raw, err := dec.DecodeAll(*gather, (*scratch)[:0])
	if err != nil {
		return nil, fmt.Errorf("decompressing a bucket: %w", err)
	}
	*scratch = raw
	byID := &metrics.Snapshot{}
	if err := byID.UnmarshalBinary(raw); err != nil {
		return nil, fmt.Errorf("decoding a bucket: %w", err)
	}
	snap := &metrics.Snapshot{Start: byID.Start, End: byID.End, Series: make(map[string]*metrics.SeriesSnapshot, len(byID.Series)), Exposure: byID.Exposure}
	for k, ss := range byID.Series {
		if len(k) != 2 {
			return nil, fmt.Errorf("decoding a bucket: unknown key id %q", k)
		}
		id := int(k[0])<<8 | int(k[1])
		if id >= len(rs.names) {
			return nil, fmt.Errorf("decoding a bucket: unknown key id %q", k)
		}
		snap.Series[rs.names[id]] = ss
	}
	return snap, nil
}

// read returns a bucket's snapshot (decoded when encoded), or nil when
// empty. Buckets are encoded by this package, so decoding cannot fail,
// but reading the history file can: the failure is returned and counted
// in readErrs. open is read for callers that take such a bucket as empty.
func (a *aggregator) read(rs *runSeries, b *bucket) (*metrics.Snapshot, error) {
	if b.snap != nil || b.enc.n == 0 {
		return b.snap, nil
	}
	s, err := rs.decode(b.enc, &a.gather, &a.scratch)
	if err != nil {
		a.readErrs++
		return nil, err
	}
	return s, nil
}

func (a *aggregator) open(rs *runSeries, b *bucket) *metrics.Snapshot {
	s, _ := a.read(rs, b)
	return s
}

// slot returns the bucket of tier i that bucket number t maps to.
func (rs *runSeries) slot(i int, t int64) *bucket {
	n := slots(i)
	return &rs.rings[i][((t%n)+n)%n]
}

// home returns where the data of second s belongs now: the finest tier
// whose bucket holding s is not yet too old for it, and that bucket's
// number; false when s is older than the retention.
func (rs *runSeries) home(s int64) (int, int64, bool) {
	for i, tr := range tiers {
		t := floorDiv(s, tr.res)
		if rs.newest-((t+1)*tr.res-1) < tr.horizon {
			return i, t, true
		}
	}
	return 0, 0, false
}

// settled says whether bucket t of tier i takes no more data but late
// reports: a second compactAfter older than the newest report, or a
// coarser bucket whose every second has been merged into it.
func (rs *runSeries) settled(i int, t int64) bool {
	if i == 0 {
		return t <= rs.newest-compactAfter
	}
	return rs.newest-((t+1)*tiers[i].res-1) >= tiers[i-1].horizon
}

// each calls fn for every non-empty bucket of rs that a window [lo, hi)
// holds: those whose middle second is in it.
func (rs *runSeries) each(lo, hi int64, fn func(i int, t int64, b *bucket)) {
	for i, tr := range tiers {
		// middle(t) = t*res + res/2 in [lo, hi)
		tlo := floorDiv(lo-tr.res/2+tr.res-1, tr.res)
		thi := floorDiv(hi-1-tr.res/2, tr.res)
		tlo = max(tlo, rs.cursor[i], floorDiv(rs.newest, tr.res)-slots(i)+1)
		thi = min(thi, floorDiv(rs.newest, tr.res))
		for t := tlo; t <= thi; t++ {
			if b := rs.slot(i, t); b.t == t && !b.empty() {
				fn(i, t, b)
			}
		}
	}
}

// traffic sums websocket traffic since the keeper started.
type traffic struct {
	FramesIn  uint64 `json:"frames_in"`
	FramesOut uint64 `json:"frames_out"`
	BytesIn   uint64 `json:"bytes_in"`
	BytesOut  uint64 `json:"bytes_out"`
}

// newAggregator returns an aggregator keeping each run's history in
// memory outside the Go heap; newAggregatorIn, every run's in the given
// space.
func newAggregator() *aggregator { return newAggregatorIn(nil) }

func newAggregatorIn(sp *blockSpace) *aggregator {
	return &aggregator{runs: map[string]*runSeries{}, maxBytes: maxRunBytes, space: sp}
}

// add merges one run's snapshot observed at keeper time at. A report too
// old for the run's retention is refused whole.
func (a *aggregator) add(run string, at time.Time, rm *wire.RunMetrics) error {
	s := &metrics.Snapshot{}
	if len(rm.Snapshot) > 0 {
		if err := s.UnmarshalBinary(rm.Snapshot); err != nil {
			return fmt.Errorf("decoding snapshot: %w", err)
		}
		if err := s.CheckKeys(); err != nil {
			return fmt.Errorf("decoding snapshot: %w", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.series(run)
	sec := at.Unix()
	if rs.newest != 0 && sec < rs.newest {
		if _, _, ok := rs.home(sec); !ok {
			return fmt.Errorf("report for %v is older than the retention (%v)", at, time.Duration(tiers[numTiers-1].horizon)*time.Second)
		}
	}
	var dropped []string
	for key := range s.Series {
		if _, ok := rs.keyID(key); !ok {
			dropped = append(dropped, key)
			delete(s.Series, key)
		}
	}
	// lost is the first history bucket the run's store could not take
	// while the run moved on, or the report's own bucket when it could
	// not be read or written: reported after the report is merged into
	// the run's total, which counts it whatever its history.
	var lost error
	if sec > rs.newest {
		lost = a.advance(rs, sec)
	}
	if err := a.addToHistory(rs, sec, s); err != nil {
		lost = err
	}
	rs.traffic.FramesIn += rm.FramesIn
	rs.traffic.FramesOut += rm.FramesOut
	rs.traffic.BytesIn += rm.BytesIn
	rs.traffic.BytesOut += rm.BytesOut
	if rs.total == nil {
		rs.total = &metrics.Snapshot{}
	}
	if err := rs.total.Merge(s); err != nil {
		return err
	}
	rs.changes++
	if err := a.compact(rs); lost == nil {
		lost = err
	}
	var errs []error
	if len(dropped) > 0 {
		errs = append(errs, fmt.Errorf("run has %d metric keys already; dropped %d new ones (first %q)", maxKeys, len(dropped), dropped[0]))
	}
	if lost != nil {
		errs = append(errs, fmt.Errorf("report merged, but part of the run's history was not kept: %w", lost))
	}
	return errors.Join(errs...)
}

// addToHistory merges s into the bucket that holds second sec. A tier-0
// bucket that was encoded is made live again; one that cannot be read
// back is left as it is (as mergeInto leaves a coarser one), and s is
// not merged into the history.
func (a *aggregator) addToHistory(rs *runSeries, sec int64, s *metrics.Snapshot) error {
	i, t, _ := rs.home(sec)
	if i > 0 {
		return a.mergeInto(rs, i, t, s)
	}
	b := rs.slot(0, t)
	if b.t != t {
		a.drop(rs, b) // expired already: cannot happen
		b.t = t
	}
	if b.snap == nil {
		snap, err := a.read(rs, b)
		if err != nil {
			return err
		}
		if snap == nil {
			snap = &metrics.Snapshot{}
		}
		b.snap = snap
		rs.bytes -= b.enc.n
		rs.store.drop(&b.enc)
		rs.live = append(rs.live, t)
	}
	return b.snap.Merge(s)
}

// series returns a run's series, made empty when new. a.mu is held.
func (a *aggregator) series(run string) *runSeries {
	rs := a.runs[run]
	if rs == nil {
		rs = &runSeries{keys: map[string]uint16{}, store: newBlockStore(a.space)}
		for i := range rs.rings {
			rs.rings[i] = make([]bucket, slots(i))
		}
		a.runs[run] = rs
	}
	return rs
}

// advance makes sec the run's newest second and moves every bucket that
// grew too old for its tier into the next one (or drops it past the
// last). It returns the first error of a bucket that could not be moved
// (its run's store could not take it): that bucket's data is lost to the
// history, not to the run's total.
func (a *aggregator) advance(rs *runSeries, sec int64) error {
	var first error
	move := func(i int, b *bucket) {
		if err := a.moveOut(rs, i, b); first == nil {
			first = err
		}
	}
	rs.newest = sec
	for i, tr := range tiers {
		// Buckets t with (t+1)*res-1 <= newest-horizon have expired.
		last := floorDiv(rs.newest-tr.horizon+1, tr.res) - 1
		if last < rs.cursor[i] {
			continue
		}
		if last-rs.cursor[i] >= slots(i) {
			// A long gap (or the first report): scan the ring once.
			for j := range rs.rings[i] {
				if b := &rs.rings[i][j]; !b.empty() && b.t <= last {
					move(i, b)
				}
			}
		} else {
			for t := rs.cursor[i]; t <= last; t++ {
				if b := rs.slot(i, t); b.t == t && !b.empty() {
					move(i, b)
				}
			}
		}
		rs.cursor[i] = last + 1
	}
	return first
}

// moveOut merges an expired bucket of tier i into its home (a coarser
// tier) and empties it. The merge fails only when the run's store cannot
// take the merged bucket.
func (a *aggregator) moveOut(rs *runSeries, i int, b *bucket) error {
	var err error
	if j, t, ok := rs.home(b.t * tiers[i].res); ok && j > i {
		if snap := a.open(rs, b); snap != nil {
			err = a.mergeInto(rs, j, t, snap)
		}
	}
	a.drop(rs, b)
	return err
}

// drop empties a bucket.
func (a *aggregator) drop(rs *runSeries, b *bucket) {
	rs.bytes -= b.enc.n
	rs.store.drop(&b.enc)
	*b = bucket{}
}

// mergeInto merges snap into bucket t of tier i (> 0), kept encoded.
func (a *aggregator) mergeInto(rs *runSeries, i int, t int64, snap *metrics.Snapshot) error {
	b := rs.slot(i, t)
	if b.t != t {
		a.drop(rs, b) // expired already: cannot happen
		b.t = t
	}
	into, err := a.read(rs, b)
	if err != nil {
		return err // the bucket keeps what it holds
	}
	if into == nil {
		into = &metrics.Snapshot{}
	}
	if err := into.Merge(snap); err != nil {
		return err
	}
	enc, err := rs.encode(into, &a.encBuf)
	if err != nil {
		return err
	}
	was := b.enc.n
	err = rs.store.put(&b.enc, enc)
	rs.bytes += b.enc.n - was // a failed write empties the bucket
	if err != nil {
		return err
	}
	a.bound(rs)
	return nil
}

// compact encodes live tier-0 buckets liveFor seconds older than the
// newest report. A bucket the run's store cannot take is dropped (and
// its error returned): kept live to be tried again, such buckets piled
// up while a disk stayed full, each report encoding them all again.
func (a *aggregator) compact(rs *runSeries) error {
	var first error
	keep := rs.live[:0]
	for _, sec := range rs.live {
		b := rs.slot(0, sec)
		if b.t != sec || b.snap == nil {
			continue
		}
		if sec > rs.newest-liveFor {
			keep = append(keep, sec)
			continue
		}
		enc, err := rs.encode(b.snap, &a.encBuf)
		if err == nil {
			err = rs.store.put(&b.enc, enc)
		}
		b.snap = nil
		rs.bytes += b.enc.n // none when the put failed
		if err != nil && first == nil {
			first = err
		}
	}
	rs.live = keep
	a.bound(rs)
	return first
}

// bound drops the run's oldest buckets, coarsest tier first, until its
// encoded buckets fit in a.maxBytes.
func (a *aggregator) bound(rs *runSeries) {
	for i := numTiers - 1; i >= 0 && rs.bytes > a.maxBytes; i-- {
		for t := max(rs.cursor[i], floorDiv(rs.newest, tiers[i].res)-slots(i)+1); t <= floorDiv(rs.newest, tiers[i].res) && rs.bytes > a.maxBytes; t++ {
			if b := rs.slot(i, t); b.t == t && b.enc.n > 0 {
				a.drop(rs, b)
			}
		}
	}
}

// window merges a run's buckets in [from, to): to the second over the last
// six minutes, to the bucket further back (see tiers).
func (a *aggregator) window(run string, from, to time.Time) (*metrics.Snapshot, traffic) {
	out := &metrics.Snapshot{}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil {
		return out, traffic{}
	}
	rs.each(from.Unix(), to.Unix(), func(_ int, _ int64, b *bucket) {
		_ = out.Merge(a.open(rs, b)) // built by this package: cannot fail
	})
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

// keyCounts is one metric key's observations per outcome.
type keyCounts struct {
	key    string
	counts [metrics.NumOutcomes]uint64
}

// totalCounts returns the counts per outcome of every key of a run's
// total, in key order (none for a run without series): what a Prometheus
// scrape reads of it, without copying the latency sketches that total
// would merge under the aggregator's lock on every scrape.
func (a *aggregator) totalCounts(run string) []keyCounts {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil || rs.total == nil {
		return nil
	}
	out := make([]keyCounts, 0, len(rs.total.Series))
	for key, ss := range rs.total.Series {
		out = append(out, keyCounts{key: key, counts: ss.Counts})
	}
	slices.SortFunc(out, func(x, y keyCounts) int { return strings.Compare(x.key, y.key) })
	return out
}

// historyBytes returns the size of a run's encoded history buckets (every
// tier's zstd buckets; not its live seconds nor its total), and whether
// the run has series.
func (a *aggregator) historyBytes(run string) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil {
		return 0, false
	}
	return rs.bytes, true
}

// storeBytes is the memory the runs' history stores hold outside the Go
// heap (none when their space is a file), and the size of their spaces:
// their encoded buckets, rounded up to blocks, and blocks freed for
// reuse. readErrs counts the buckets that could not be read back.
func (a *aggregator) storeBytes() (memory, space int64, readErrs uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.space != nil {
		return a.space.memory(), a.space.bytes(), a.readErrs
	}
	for _, rs := range a.runs {
		memory += rs.store.sp.memory()
		space += rs.store.sp.bytes()
	}
	return memory, space, a.readErrs
}

// close closes the aggregator's space: its history file, or memory.
// Later reads find no history and writes fail.
func (a *aggregator) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.space != nil {
		a.space.close()
	}
	for _, rs := range a.runs {
		if rs.store.own {
			rs.store.sp.close()
		}
	}
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
	if rs := a.runs[run]; rs != nil {
		for i := range rs.rings {
			for j := range rs.rings[i] {
				rs.store.drop(&rs.rings[i][j].enc)
			}
		}
		rs.store.release()
		delete(a.runs, run)
	}
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
