package school

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// launchState is what this school did with one launch. The counts are
// atomics because a koi may report its end while School.mu is held (a
// paused koi cancels its part at once, inside applyLaunchesLocked).
type launchState struct {
	l           wire.Launch
	scheduled   int // koi given the sequence (guarded by School.mu)
	err         string
	expires     time.Time
	first, last time.Time // real starts of the sequence, keeper time (guarded by School.mu)
	// offsets bins the real starts by their offset into the launch's
	// window on this school's wall clock: [at, at+window) in
	// wire.LaunchOffsetBins equal bins (guarded by School.mu).
	offsets [wire.LaunchOffsetBins]uint32
	at      time.Time     // the launch instant, this school's wall clock
	window  time.Duration // the window, time scale applied
	// started: koi whose sequence began; finished, failed, cancelled: how
	// each koi's part ended (cancelled includes planned koi that were not
	// connected here, so the three sum to Count once all have ended).
	started, finished, failed, cancelled atomic.Int64
}

// status is what the school reports of the launch; School.mu is held.
// The offsets are binned after started counts a koi, so their sum never
// exceeds Started; no bins are sent until a start has been binned.
func (ls *launchState) status() wire.LaunchStatus {
	st := wire.LaunchStatus{Launch: ls.l.ID, Planned: ls.l.Count, Started: int(ls.started.Load()),
		Finished: int(ls.finished.Load()), Failed: int(ls.failed.Load()), Cancelled: int(ls.cancelled.Load()),
		Error: ls.err, FirstStart: ls.first, LastStart: ls.last}
	if ls.offsets != ([wire.LaunchOffsetBins]uint32{}) {
		st.Offsets = append([]uint32(nil), ls.offsets[:]...)
	}
	return st
}

// bin counts a start at wall time t in its offset bin; School.mu is held.
// A start before the window (a launch that arrived late starts its koi
// at once) counts in the first bin, one after it in the last, and with
// no window every start is in the first.
func (ls *launchState) bin(t time.Time) {
	i := 0
	if off := t.Sub(ls.at); off > 0 && ls.window > 0 {
		i = int(min(float64(wire.LaunchOffsetBins-1), float64(off)/float64(ls.window)*wire.LaunchOffsetBins))
	}
	ls.offsets[i]++
}

// settled reports whether every planned koi has ended.
func (ls *launchState) settled() bool {
	return ls.finished.Load()+ls.failed.Load()+ls.cancelled.Load() >= int64(ls.l.Count)
}

// ended counts how one koi's part ended: a halt is the sequence stopping
// itself on purpose, so it counts as finished, not failed.
func (ls *launchState) ended(o metrics.Outcome) {
	switch {
	case o == metrics.OK || o == metrics.Halted:
		ls.finished.Add(1)
	case o == metrics.Canceled:
		ls.cancelled.Add(1)
	default:
		ls.failed.Add(1)
	}
}

// launchMetricKey is the key a launch's sequence is measured under: the
// keeper's choice, or the formation's shared key from an older keeper.
func launchMetricKey(l wire.Launch) string {
	if l.MetricKey != "" {
		return l.MetricKey
	}
	return "formation:" + l.Name
}

// applyLaunchesLocked starts each new launch once: Count connected koi of
// the run, chosen at random, each at an independent uniform offset within
// the (time-scaled) window after the launch instant converted from keeper
// time to this school's clock. forms holds the launches' formations,
// parsed (prefetch).
func (s *School) applyLaunchesLocked(ls []wire.Launch, forms map[string]parsedFormation) {
	now := time.Now()
	for id, st := range s.launches {
		// Forgotten 10 minutes after its window once every koi has ended
		// (the keeper waits for the last counts), a day later regardless.
		if now.After(st.expires) && (st.settled() || now.After(st.expires.Add(24*time.Hour))) {
			delete(s.launches, id)
		}
	}
	for _, l := range ls {
		if _, done := s.launches[l.ID]; done {
			continue
		}
		st := &launchState{l: l, expires: now.Add(10*time.Minute + wire.Duration(l.BeginWithinMS))}
		s.launches[l.ID] = st
		st.err = wireText(s.startLaunchLocked(st, forms))
		if st.scheduled == 0 {
			st.cancelled.Store(int64(l.Count)) // nothing runs here: the share is settled at once
		}
		if st.err != "" {
			s.logLimited("launch:"+l.ID, "launch not fully started", "launch", l.ID, "planned", l.Count, "scheduled", st.scheduled, "reason", st.err)
		} else {
			s.log.Info("launch scheduled", "launch", l.ID, "formation", l.Name, "koi", st.scheduled, "start", l.Start)
		}
	}
}

func (s *School) startLaunchLocked(st *launchState, forms map[string]parsedFormation) string {
	l := st.l
	r := s.runs[l.Run]
	if r == nil || r.rt == nil {
		return fmt.Sprintf("run %s is not running on this school", l.Run)
	}
	pf, ok := forms[l.Formation]
	if !ok {
		return fmt.Sprintf("formation %s could not be fetched from the keeper", short(l.Formation))
	}
	if pf.f == nil {
		return "formation is invalid: " + pf.err
	}
	f := pf.f
	off, _ := s.clock.offset()
	// Keeper time → school clock → wall delay from now.
	delay := l.Start.Add(-off).Sub(s.cfg.Clock())
	conn := r.connected()
	n := min(l.Count, len(conn))
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	chosen := formations.Choose(rng, len(conn), n)
	st.window = r.rt.Scale(wire.Duration(l.BeginWithinMS))
	st.at = time.Now().Add(delay)
	offsets := formations.Offsets(rng, len(chosen), st.window)
	if s.cfg.TestClumpLaunches {
		clear(offsets) // the fault: every koi starts at the launch instant
	}
	// Each koi reports when it really began, converted to keeper time.
	began := func(wall time.Time) {
		st.started.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		st.bin(wall)
		off, _ := s.clock.offset()
		at := s.cfg.Clock().Add(off - time.Since(wall))
		if st.first.IsZero() || at.Before(st.first) {
			st.first = at
		}
		if at.After(st.last) {
			st.last = at
		}
	}
	st.cancelled.Add(int64(l.Count - len(chosen))) // planned here but not connected: will not run
	st.scheduled = len(chosen)
	key := launchMetricKey(l)
	for i, idx := range chosen {
		conn[idx].LaunchTracked(f.Name, key, f.Sequence, l.Params, delay+offsets[i], koi.LaunchHooks{Began: began, Ended: st.ended})
	}
	if n < l.Count {
		return fmt.Sprintf("only %d of the %d planned koi are connected here", n, l.Count)
	}
	return ""
}
