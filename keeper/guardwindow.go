package keeper

import (
	"path"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/metrics"
)

// Live windows without re-decoding: a guardrail over "api:*" for 5m reads
// 300 one-second buckets every second, and decoding them costs ~0.2 s of
// CPU (BenchmarkGuardrailWindow). A windowCache keeps, per run and key
// selector, the selected series of every SETTLED bucket — seconds at
// least compactAfter older than the run's newest report (no longer merged
// into but by late reports), coarser buckets whose every second has been
// merged into them (runSeries.settled) — so each pass decodes only the
// few newest buckets. A report arriving more than compactAfter seconds
// late still lands in the aggregator (and the report) but not in a bucket
// already cached for live evaluation.

// windowCache holds the cached selections of every running run. Its lock
// is taken before the aggregator's (never the other way round).
type windowCache struct {
	mu   sync.Mutex
	runs map[string]map[string]*selCache // run → selector →
	pass uint64                          // guard passes, to drop unused selections
}

// selCache is one selection's settled buckets; a nil series means the
// bucket had none of the selected keys.
type selCache struct {
	tiers [numTiers]map[int64]*metrics.SeriesSnapshot // by bucket number
	span  int64                                       // longest window asked for, in seconds
	used  uint64
}

func newWindowCache() *windowCache { return &windowCache{runs: map[string]map[string]*selCache{}} }

// selector names what a window selects: one exact key, or a glob.
func selector(key string, exact bool) string {
	if exact {
		return "=" + key
	}
	return "~" + key
}

// pick returns the series of snap the selector selects, merged into a
// copy of its own; nil when none.
func pick(snap *metrics.Snapshot, sel string) *metrics.SeriesSnapshot {
	if snap == nil {
		return nil
	}
	key, exact := strings.CutPrefix(sel, "=")
	pattern := strings.TrimPrefix(sel, "~")
	var out *metrics.Snapshot
	for k, ss := range snap.Series {
		if ok, _ := path.Match(pattern, k); (exact && k == key) || (!exact && ok) {
			if out == nil {
				out = &metrics.Snapshot{}
			}
			_ = out.Merge(&metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{"m": ss}}) // built by the aggregator: cannot fail
		}
	}
	if out == nil {
		return nil
	}
	return out.Series["m"]
}

// series returns the selected series of run merged over [from, to) (whole
// seconds, as aggregator.window), or nil without data.
func (k *Keeper) series(run, sel string, from, to time.Time) *metrics.SeriesSnapshot {
	wc := k.windows
	wc.mu.Lock()
	defer wc.mu.Unlock()
	byRun := wc.runs[run]
	if byRun == nil {
		byRun = map[string]*selCache{}
		wc.runs[run] = byRun
	}
	sc := byRun[sel]
	if sc == nil {
		sc = &selCache{}
		for i := range sc.tiers {
			sc.tiers[i] = map[int64]*metrics.SeriesSnapshot{}
		}
		byRun[sel] = sc
	}
	sc.used = wc.pass
	lo, hi := from.Unix(), to.Unix()
	sc.span = max(sc.span, hi-lo)

	out := &metrics.Snapshot{}
	a := k.agg
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil {
		return nil
	}
	rs.each(lo, hi, func(i int, t int64, b *bucket) {
		ss, ok := sc.tiers[i][t]
		if !ok {
			snap, err := a.read(rs, b)
			ss = pick(snap, sel)
			if err == nil && rs.settled(i, t) { // one that failed is read again
				sc.tiers[i][t] = ss
			}
		}
		if ss != nil {
			_ = out.Merge(&metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{"m": ss}}) // cannot fail
		}
	})
	// Keep what the longest window asked for needs.
	for i, byT := range sc.tiers {
		for t := range byT {
			if (t+1)*tiers[i].res < hi-sc.span-2 {
				delete(byT, t)
			}
		}
	}
	return out.Series["m"]
}

// endPass drops the selections no one asked for in the pass that ends,
// and the caches of runs not in keep; it starts the next pass.
func (wc *windowCache) endPass(keep map[string]bool) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	for run, byRun := range wc.runs {
		if !keep[run] {
			delete(wc.runs, run)
			continue
		}
		for sel, sc := range byRun {
			if sc.used != wc.pass {
				delete(byRun, sel)
			}
		}
	}
	wc.pass++
}
