package keeper

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// exactRun is what was fed to an aggregator, kept sample by sample.
type exactRun struct {
	secs    []int64                                          // reported seconds, ascending
	samples map[int64]map[string][]time.Duration             // second → key → latencies
	counts  map[int64]map[string][metrics.NumOutcomes]uint64 // second → key → counts
}

// feedExact reports one snapshot at second sec (unix) with a few random
// observations of three latency keys and one count-only key.
func (e *exactRun) feed(tb testing.TB, a *aggregator, r *rand.Rand, sec int64) {
	tb.Helper()
	var rec metrics.Recorder
	for i, key := range []string{"api:a", "api:b", "behavior:c"} {
		for range 1 + r.IntN(6) {
			d := time.Duration(math.Exp(math.Log(float64((i+1)*10*int(time.Millisecond)))+r.NormFloat64()*0.8)) + time.Millisecond
			o := metrics.OK
			if r.IntN(10) == 0 {
				o = metrics.Error
			}
			rec.Observe(key, d, o)
			e.samples[sec][key] = append(e.samples[sec][key], d)
			c := e.counts[sec][key]
			c[o]++
			e.counts[sec][key] = c
		}
	}
	rec.Count("event:message", metrics.OK)
	c := e.counts[sec]["event:message"]
	c[metrics.OK]++
	e.counts[sec]["event:message"] = c
	data, err := rec.Snapshot().MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.add("run", time.Unix(sec, 0), &wire.RunMetrics{Run: "run", Snapshot: data, FramesIn: 1}); err != nil {
		tb.Fatal(err)
	}
}

// newExactRun feeds a run about 30 hours long, newest at second newest:
// every second over the last 12 minutes, every 7 s back to 2 hours ago,
// every 97 s before that, so every tier holds data and some fell off.
func newExactRun(tb testing.TB, a *aggregator, newest int64) *exactRun {
	tb.Helper()
	e := &exactRun{samples: map[int64]map[string][]time.Duration{}, counts: map[int64]map[string][metrics.NumOutcomes]uint64{}}
	for s := newest - 30*3600; s <= newest; {
		e.secs = append(e.secs, s)
		switch age := newest - s; {
		case age > 2*3600:
			s += 97
		case age > 12*60:
			s += 7
		default:
			s++
		}
	}
	r := rand.New(rand.NewPCG(7, 11))
	for _, s := range e.secs {
		e.samples[s] = map[string][]time.Duration{}
		e.counts[s] = map[string][metrics.NumOutcomes]uint64{}
		e.feed(tb, a, r, s)
	}
	return e
}

// resolution is the documented resolution of second s's data when the
// newest report is at newest: 1 s for its last 6 minutes, 10 s for its
// last hour, 1 min for its last 6 hours, 5 min for its last day; 0 when
// older. A bucket of res seconds holding s spans [s/res*res, +res).
func resolution(newest, s int64) int64 {
	for _, t := range []struct{ res, horizon int64 }{{1, 360}, {10, 3600}, {60, 6 * 3600}, {300, 24 * 3600}} {
		end := (s/t.res+1)*t.res - 1
		if newest-end < t.horizon {
			return t.res
		}
	}
	return 0
}

// inWindow says whether the data of second s counts in window [lo, hi):
// when the middle of its bucket is in it.
func inWindow(newest, s, lo, hi int64) bool {
	res := resolution(newest, s)
	if res == 0 {
		return false
	}
	mid := s/res*res + res/2
	return mid >= lo && mid < hi
}

// checkSeries compares one key of a window (or total) with the exact
// counts and latencies of the seconds it holds: counts equal, every
// quantile within the sketches' 1% of the exact sample at its rank.
func checkSeries(t *testing.T, what string, got *metrics.SeriesSnapshot, counts [metrics.NumOutcomes]uint64, lat []time.Duration) {
	t.Helper()
	if got == nil {
		if counts != ([metrics.NumOutcomes]uint64{}) {
			t.Errorf("%s: missing, want counts %v", what, counts)
		}
		return
	}
	if got.Counts != counts {
		t.Errorf("%s: counts %v, want %v", what, got.Counts, counts)
	}
	if got.Samples() != uint64(len(lat)) {
		t.Errorf("%s: %d samples, want %d", what, got.Samples(), len(lat))
	}
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, q := range []float64{0, 0.5, 0.9, 0.95, 0.99, 1} {
		want := lat[int(q*float64(len(lat)-1))]
		d, ok := got.Quantile(q)
		if !ok || math.Abs(float64(d-want)) > 0.01*float64(want)+1 {
			t.Errorf("%s: p%g %v, exact %v (more than 1%% off)", what, 100*q, d, want)
		}
	}
}

// The windows of a run downsampled into tiers give what the same seconds
// give sample by sample: counts exactly, quantiles within 1%; a window
// aligned to its buckets holds exactly its seconds, others differ only
// by the seconds of their edge buckets; the total is the whole run.
func TestDownsampledWindowsMatchExact(t *testing.T) {
	a := newAggregator()
	newest := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC).Unix()
	e := newExactRun(t, a, newest)
	keys := []string{"api:a", "api:b", "behavior:c", "event:message"}
	for _, w := range []struct {
		name    string
		lo, hi  int64
		aligned bool // lo and hi fall on bucket edges of the tiers they reach
	}{
		{"last 10 s", newest - 9, newest + 1, true},
		{"last 30 s", newest - 29, newest + 1, true},
		{"last 5 min", newest - 299, newest + 1, true},
		{"a minute, 2 min ago", newest - 180, newest - 120, true},
		{"last hour, to the 10 s", newest - 3600, newest + 1, newest%10 == 0},
		{"last hour", newest - 3599, newest + 1, false},
		{"20 min, 40 min ago", newest - 40*60 + 3, newest - 20*60 - 4, false},
		{"an hour, 3 h ago, on minutes", newest - 4*3600, newest - 3*3600, newest%60 == 0},
		{"last 6 h", newest - 6*3600 + 1, newest + 1, false},
		{"last day", newest - 24*3600 + 1, newest + 1, false},
		{"12 h, a day ago, on 5 min", newest - 24*3600, newest - 12*3600, newest%300 == 0},
		{"before the retention", newest - 30*3600, newest - 25*3600, true},
	} {
		snap, tr := a.window("run", time.Unix(w.lo, 0), time.Unix(w.hi, 0))
		if tr.FramesIn != uint64(len(e.secs)) {
			t.Errorf("%s: traffic %+v, want %d frames in", w.name, tr, len(e.secs))
		}
		for _, key := range keys {
			var counts, plain [metrics.NumOutcomes]uint64
			var lat []time.Duration
			for _, s := range e.secs {
				in, exact := inWindow(newest, s, w.lo, w.hi), s >= w.lo && s < w.hi && resolution(newest, s) > 0
				if w.aligned && in != exact {
					t.Fatalf("%s: second %d (age %d) in the window %v, exactly %v", w.name, s, newest-s, in, exact)
				}
				c := e.counts[s][key]
				for o := range c {
					if exact {
						plain[o] += c[o]
					}
					if in {
						counts[o] += c[o]
					}
				}
				if in {
					lat = append(lat, e.samples[s][key]...)
				}
			}
			checkSeries(t, fmt.Sprintf("%s, %s", w.name, key), snap.Series[key], counts, lat)
			// Unaligned: only the edge buckets differ (at most a bucket of
			// the coarsest tier reached at each end; a few reports each).
			var n, p uint64
			for o := range counts {
				n, p = n+counts[o], p+plain[o]
			}
			if diff := math.Abs(float64(n) - float64(p)); diff > 2*8*float64(300/97+1) {
				t.Errorf("%s, %s: %d observations, %d in the exact window", w.name, key, n, p)
			}
		}
	}
	total, _, ok := a.total("run")
	if !ok {
		t.Fatal("no total")
	}
	for _, key := range keys {
		var counts [metrics.NumOutcomes]uint64
		var lat []time.Duration
		for _, s := range e.secs {
			for o, c := range e.counts[s][key] {
				counts[o] += c
			}
			lat = append(lat, e.samples[s][key]...)
		}
		checkSeries(t, "total, "+key, total.Series[key], counts, lat)
	}
}

// A late report lands in whichever bucket holds its second now; one older
// than the retention is refused whole.
func TestLateReports(t *testing.T) {
	a := newAggregator()
	newest := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC).Unix()
	e := newExactRun(t, a, newest)
	r := rand.New(rand.NewPCG(3, 4))
	for _, age := range []int64{20, 2000, 3 * 3600, 20 * 3600} {
		s := newest - age
		lo, hi := s/300*300-300, s/300*300+600
		before, _ := a.window("run", time.Unix(lo, 0), time.Unix(hi, 0))
		totalBefore, _, _ := a.total("run")
		e.samples[s], e.counts[s] = map[string][]time.Duration{}, map[string][metrics.NumOutcomes]uint64{}
		e.feed(t, a, r, s)
		after, _ := a.window("run", time.Unix(lo, 0), time.Unix(hi, 0))
		totalAfter, _, _ := a.total("run")
		for key, c := range e.counts[s] {
			var n uint64
			for _, v := range c {
				n += v
			}
			if got := after.Series[key].Total() - before.Series[key].Total(); got != n {
				t.Errorf("late report %d s old, %s: window grew by %d, want %d", age, key, got, n)
			}
			if got := totalAfter.Series[key].Total() - totalBefore.Series[key].Total(); got != n {
				t.Errorf("late report %d s old, %s: total grew by %d, want %d", age, key, got, n)
			}
		}
	}
	totalBefore, trBefore, _ := a.total("run")
	data, _ := (&metrics.Snapshot{}).MarshalBinary()
	err := a.add("run", time.Unix(newest-25*3600, 0), &wire.RunMetrics{Run: "run", Snapshot: data, FramesIn: 5})
	if err == nil {
		t.Fatal("a report older than the retention was taken")
	}
	totalAfter, trAfter, _ := a.total("run")
	if trAfter != trBefore || len(totalAfter.Series) != len(totalBefore.Series) {
		t.Errorf("refused report changed the run: traffic %+v → %+v", trBefore, trAfter)
	}
}

// Whatever a run is fed, its encoded history stays under its ceiling
// (maxRunBytes; lowered here to 256 KiB so that a few seconds reach it):
// sketches of 500 keys, a day of them, dropped oldest first, the
// newest seconds always whole.
func TestRunMemoryCeiling(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	reports := make([][]byte, 3)
	for i := range reports {
		var rec metrics.Recorder
		for k := range maxKeys {
			key := fmt.Sprintf("api:m%03d", k)
			for range 50 {
				// Log-uniform from 1 ms to 1 s: fifty bins each.
				rec.Observe(key, time.Duration(math.Exp(r.Float64()*math.Log(1e3)))*time.Millisecond, metrics.OK)
			}
		}
		data, err := rec.Snapshot().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		reports[i] = data
	}
	a := newAggregator()
	a.maxBytes = 256 << 10
	base := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	var fed int64
	// Every 20 minutes for a day, then every second for 30 s.
	for s := int64(0); s < 24*3600+30; {
		if err := a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%3]}); err != nil {
			t.Fatal(err)
		}
		rs := a.runs["run"]
		if rs.bytes > a.maxBytes {
			t.Fatalf("second %d: %d encoded bytes over %d", s, rs.bytes, a.maxBytes)
		}
		var held int
		for i := range rs.rings {
			for _, b := range rs.rings[i] {
				held += b.enc.n
			}
		}
		if held != rs.bytes {
			t.Fatalf("second %d: %d bytes held, %d counted", s, held, rs.bytes)
		}
		if n, ok := a.historyBytes("run"); !ok || n != held {
			t.Fatalf("second %d: historyBytes says %d (%v), %d held", s, n, ok, held)
		}
		fed = s
		if s < 24*3600 {
			s += 1200
		} else {
			s++
		}
	}
	if _, ok := a.historyBytes("no such run"); ok {
		t.Error("historyBytes found a run that has no series")
	}
	day, _ := a.window("run", base, base.Add(25*time.Hour))
	if got, all := day.Series["api:m000"].Total(), uint64(24*3+30)*50; got >= all {
		t.Fatalf("the run holds %d of %d observations: the test does not reach the ceiling", got, all)
	}
	recent, _ := a.window("run", base.Add(time.Duration(fed-14)*time.Second), base.Add(time.Duration(fed+1)*time.Second))
	if got := recent.Series["api:m000"].Total(); got != 15*50 {
		t.Errorf("the newest 15 s hold %d observations, want %d", got, 15*50)
	}
	total, _, _ := a.total("run")
	if got, all := total.Series["api:m000"].Total(), uint64(24*3+30)*50; got != all {
		t.Errorf("the total holds %d observations, want all %d", got, all)
	}
}

// The window cache gives what the aggregator gives for windows reaching
// the coarser tiers, while seconds move into them.
func TestWindowCacheAcrossTiers(t *testing.T) {
	snaps := reportSnapshots(t, 2, 3)
	k := &Keeper{agg: newAggregator(), guard: newGuard(), windows: newWindowCache()}
	base := time.Date(2026, 12, 3, 15, 0, 0, 3, time.UTC)
	for sec := range 420 {
		at := base.Add(time.Duration(sec) * time.Second)
		if err := k.agg.add("run", at, &wire.RunMetrics{Run: "run", Snapshot: snaps[sec%2]}); err != nil {
			t.Fatal(err)
		}
		if sec < 280 || sec%5 != 0 {
			continue
		}
		to := at.Add(time.Second)
		for _, span := range []time.Duration{time.Hour, 333 * time.Second} {
			got := k.series("run", selector("api:*", false), to.Add(-span), to)
			snap, _ := k.agg.window("run", to.Add(-span), to)
			want := pick(snap, selector("api:*", false))
			if got == nil || want == nil || got.Counts != want.Counts || got.Samples() != want.Samples() {
				t.Fatalf("second %d over %v: cached %+v, aggregator %+v", sec, span, got, want)
			}
			g, _ := got.Quantile(0.99)
			w, _ := want.Quantile(0.99)
			if g != w {
				t.Fatalf("second %d over %v: cached p99 %v, aggregator %v", sec, span, g, w)
			}
		}
		k.windows.endPass(map[string]bool{"run": true})
	}
	if n := len(k.windows.runs["run"]["~api:*"].tiers[1]); n == 0 {
		t.Error("no 10 s bucket cached")
	}
}
