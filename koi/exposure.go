package koi

import (
	"math"
	"sync"
	"time"

	"github.com/koipond/koipond/metrics"
)

// Exposure accounting: how many behavior-minutes each koi spent with its
// background schedule running, split by the hour of day its schedule used
// for them, weighted by its activity (metrics.Exposure): the denominator
// of every behavior's expected number of runs.
//
// A koi's schedule runs from startScheduleLocked (after boot, and at every
// resume) until Pause or stop: exactly while firings can happen. A koi
// keeps only where its unaccounted span begins (an offset from its minute
// origin, monotonic); the span is accounted when it ends (into the
// runtime's pending sum) and by FoldExposure (the school's periodic fold,
// into the caller's sum). Accounting walks the span hour by hour, never
// minute by minute, so its cost does not grow with the time scale.
//
// Minute n of a koi spans [origin + n·minute, origin + (n+1)·minute) and
// its firings use the hour of day of its start (Runtime.hourOf): a span is
// split at the first minute whose start is in the next hour. A minute the
// koi ran only part of counts for that fraction, as its firings lie
// uniformly in it and those outside the span are never made.

// exposureBook is a runtime's exposure of spans that have ended and not
// yet been taken.
type exposureBook struct {
	mu  sync.Mutex
	sum metrics.Exposure
}

// TakeExposure adds to dst the exposure of schedule spans that ended (a
// pause, a stop) since the last call, and forgets it. With FoldExposure on
// every koi still running, it gives the run's exposure over the interval.
func (rt *Runtime) TakeExposure(dst *metrics.Exposure) {
	rt.exposure.mu.Lock()
	dst.Merge(&rt.exposure.sum)
	rt.exposure.sum = metrics.Exposure{}
	rt.exposure.mu.Unlock()
}

// FoldExposure adds to dst the exposure of the koi's running schedule
// span up to now, and starts the span again from now (nothing is counted
// twice). A koi not scheduling adds nothing.
func (k *Koi) FoldExposure(dst *metrics.Exposure) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.expOn {
		return
	}
	to := time.Since(k.origin)
	k.rt.accrue(dst, k.origin, k.activity, k.expAt, to)
	k.expAt = to
}

// beginExposureLocked starts a schedule span now; k.origin is set.
func (k *Koi) beginExposureLocked(now time.Time) {
	k.expOn, k.expAt = true, now.Sub(k.origin)
}

// endExposureLocked ends the running schedule span now, if any, into the
// runtime's pending sum.
func (k *Koi) endExposureLocked() {
	if !k.expOn {
		return
	}
	k.expOn = false
	to := time.Since(k.origin)
	var e metrics.Exposure
	k.rt.accrue(&e, k.origin, k.activity, k.expAt, to)
	k.rt.exposure.mu.Lock()
	k.rt.exposure.sum.Merge(&e)
	k.rt.exposure.mu.Unlock()
}

// accrue adds to dst the schedule span [from, to) (offsets from origin)
// of a koi of the given activity, hour by hour of its minute grid.
func (rt *Runtime) accrue(dst *metrics.Exposure, origin time.Time, activity float64, from, to time.Duration) {
	m := rt.minute
	for from < to {
		n := int64(from / m) // the minute from is in
		h := rt.hourAt(origin, n)
		end := min(to, time.Duration(rt.nextHourMinute(origin, n, h))*m)
		if end <= from { // cannot happen: nextHourMinute > n
			end = to
		}
		dst.Add(h, activity, float64(end-from)/float64(m))
		from = end
	}
}

// hourAt is the hour of day (0–23, in the set's time zone) of the start
// of minute n of a koi whose minutes began at origin: the hour its
// schedule uses when the set has hourly profiles.
func (rt *Runtime) hourAt(origin time.Time, n int64) int {
	return rt.BehaviorTime(origin.Add(time.Duration(n) * rt.minute)).In(rt.zone()).Hour()
}

func (rt *Runtime) zone() *time.Location {
	if rt.set.Timezone == nil {
		return time.UTC
	}
	return rt.set.Timezone
}

// nextHourMinute returns the first minute after n whose start is no
// longer in hour h: computed from the next hour boundary in behavior
// time, then checked against hourAt itself (rounding in the time scale
// may move a boundary by a minute).
func (rt *Runtime) nextHourMinute(origin time.Time, n int64, h int) int64 {
	bt := rt.BehaviorTime(origin.Add(time.Duration(n) * rt.minute)).In(rt.zone())
	next := time.Date(bt.Year(), bt.Month(), bt.Day(), bt.Hour()+1, 0, 0, 0, bt.Location())
	if !next.After(bt) { // a time zone's clock turned back
		next = bt.Add(time.Hour)
	}
	// The wall instant of next, and the first minute starting at or after it.
	wall := rt.start.Add(time.Duration(float64(next.Sub(rt.start)) / rt.cfg.TimeScale))
	n2 := n + 1
	if f := math.Ceil(float64(wall.Sub(origin)) / float64(rt.minute)); f > float64(n2) && f < 1<<53 {
		n2 = int64(f)
	}
	for range 3 {
		switch {
		case n2 > n+1 && rt.hourAt(origin, n2-1) != h:
			n2--
		case rt.hourAt(origin, n2) == h:
			n2++
		default:
			return n2
		}
	}
	return n2
}
