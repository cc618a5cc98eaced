package school

import (
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sort"
	"time"
)

// Memory pressure: the school samples the memory the Go runtime counts
// against its limit every memorySampleEvery (jittered). At PressureHigh of
// the ceiling it closes the koi of the run that uses the most memory it
// can attribute (see runLoad), keeps the run assigned with the reason in
// its poll status (the keeper counts it towards quarantine), and says so
// in its log once. The run's koi come back (at the ramp) once Config's
// PressureHold has passed and memory is below PressureLow; a run that
// takes the school to its ceiling again is closed again, and counted
// again. One run is closed at a time: the school judges again only once
// that run's koi have all ended (at most pressureStopWait), their memory
// is returned and pressureSettle has passed.
//
// Memory past the high mark may be only garbage: the koi of a run the
// keeper stopped leave their stores behind, and the collector, paced by
// allocation, may not look at them for minutes. So unless one run
// plainly holds the memory in replies, the school collects and returns
// free memory (at most once per pressureSettle) before it blames a run,
// and judges what is left: a running run is not closed for another's
// leftovers.
const (
	PressureHigh      = 0.9
	PressureLow       = 0.7
	memorySampleEvery = 200 * time.Millisecond
	pressureSettle    = 2 * time.Second
	pressureStopWait  = time.Minute
	// attributeShare is the share of the ceiling a run's reply bytes
	// must reach for the school to blame it without first collecting
	// garbage (see mayReclaim).
	attributeShare = 1.0 / 16
)

// DefaultPressureHold is how long a run closed for memory pressure stays
// closed on a school at least.
const DefaultPressureHold = 30 * time.Second

// MemoryStatus is the school's memory as /healthz reports it.
type MemoryStatus struct {
	Limit          int64  `json:"limit"`
	InUse          int64  `json:"in_use"`
	ReplyBudget    int64  `json:"reply_budget"`
	ReplyInFlight  int64  `json:"reply_in_flight"`
	RepliesRefused uint64 `json:"replies_refused"`
	// PressurePauses counts runs closed for memory pressure.
	PressurePauses uint64 `json:"pressure_pauses"`
	// Reclaims counts collections forced at the high mark before a run
	// was judged.
	Reclaims uint64 `json:"reclaims"`
}

// applyMemoryLimit sets the Go runtime's soft limit to the school's
// ceiling (never raising a lower one set already) and remembers the old
// one for Close.
func (s *School) applyMemoryLimit() {
	cur := debug.SetMemoryLimit(-1)
	if s.cfg.MemoryLimit < cur {
		s.prevMemLimit = debug.SetMemoryLimit(s.cfg.MemoryLimit)
		s.setMemLimit = true
	}
}

// restoreMemoryLimit undoes applyMemoryLimit, unless something changed
// the limit since.
func (s *School) restoreMemoryLimit() {
	if s.setMemLimit && debug.SetMemoryLimit(-1) == s.cfg.MemoryLimit {
		debug.SetMemoryLimit(s.prevMemLimit)
	}
}

// memoryLoop watches the memory until the school closes.
func (s *School) memoryLoop() {
	defer s.wg.Done()
	for {
		d := time.Duration(float64(memorySampleEvery) * (0.8 + 0.4*rand.Float64()))
		if !sleep(s.ctx, d) {
			return
		}
		used := memoryInUse()
		if s.mayReclaim(used, time.Now()) {
			before := used
			used = s.reclaim()
			s.logLimited("memory-reclaim", "memory at its high mark, no run plainly holding it: garbage collected before judging",
				"before", FormatBytes(before), "after", FormatBytes(used), "limit", FormatBytes(s.cfg.MemoryLimit))
		}
		s.checkMemory(used, time.Now())
	}
}

// mayReclaim says whether the school should collect garbage before it
// judges this sample: memory is at the high mark, no judgement is on
// hold, none was collected lately, and no run that could be blamed
// plainly holds the memory (reserved or recently read reply bytes of at
// least attributeShare of the ceiling: a flood is closed at once, as
// before, its garbage and all).
func (s *School) mayReclaim(used int64, now time.Time) bool {
	limit := float64(s.cfg.MemoryLimit)
	if float64(used) < PressureHigh*limit || now.Sub(s.reclaimedAt) < pressureSettle {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.After(s.pressureQuiet) {
		return false
	}
	for _, r := range s.runs {
		if r.rt == nil || r.pressure != "" {
			continue
		}
		if l, _ := loadOf(r); float64(l.bytes()) >= attributeShare*limit && l.koi > 0 {
			return false
		}
	}
	return true
}

// reclaim collects garbage and returns free memory to the OS (without
// the school's lock: polls go on), then samples again.
func (s *School) reclaim() int64 {
	debug.FreeOSMemory()
	s.reclaims.Add(1)
	s.reclaimedAt = time.Now()
	return memoryInUse()
}

// runLoad is what the school can attribute to one run: the reply bytes
// its koi hold reserved now plus those they read since the last sample
// (a flood shows as the latter long before it is garbage), and its koi
// as a tie-break when no run reads anything.
type runLoad struct {
	r          *run
	inFlight   int64
	readRecent uint64
	koi        int
}

func (l runLoad) bytes() uint64 { return uint64(max(0, l.inFlight)) + l.readRecent }

// loadOf is r's load since the last sample (r.lastRead), and the reply
// bytes its koi have read in all, which a sample makes the next mark.
func loadOf(r *run) (runLoad, uint64) {
	read := r.rt.ReplyBytesRead()
	return runLoad{r: r, inFlight: r.rt.ReplyBytesInFlight(), readRecent: read - min(read, r.lastRead), koi: r.running()}, read
}

// checkMemory is one sample: pause the heaviest run near the ceiling,
// resume runs whose hold is over once memory is low again.
func (s *School) checkMemory(used int64, now time.Time) {
	s.memInUse.Store(used)
	limit := s.cfg.MemoryLimit
	s.mu.Lock()
	defer s.mu.Unlock()
	var loads []runLoad
	for _, r := range s.runs {
		if r.rt == nil {
			continue
		}
		l, read := loadOf(r)
		r.lastRead = read
		loads = append(loads, l)
	}
	high := float64(used) >= PressureHigh*float64(limit)
	if high && now.After(s.pressureQuiet) {
		sort.Slice(loads, func(i, j int) bool {
			a, b := loads[i], loads[j]
			if a.bytes() != b.bytes() {
				return a.bytes() > b.bytes()
			}
			if a.koi != b.koi {
				return a.koi > b.koi
			}
			return a.r.id < b.r.id
		})
		for _, l := range loads {
			if l.r.pressure != "" || l.koi == 0 {
				continue
			}
			s.pauseForPressureLocked(l, used, now)
			break
		}
		return
	}
	if float64(used) >= PressureLow*float64(limit) {
		return
	}
	for _, l := range loads {
		if r := l.r; r.pressure != "" && now.After(r.pressureUntil) {
			s.log.Info("memory below its low mark: the run's koi come back", "run", r.id,
				"memory", FormatBytes(used), "limit", FormatBytes(limit))
			r.pressure, r.pressureAt = "", time.Time{}
			r.reconcile(s.effectiveLocked(r))
		}
	}
}

// pauseForPressureLocked closes a run's koi on this school with a reason.
func (s *School) pauseForPressureLocked(l runLoad, used int64, now time.Time) {
	r := l.r
	r.pressure = fmt.Sprintf("memory ceiling: school at %s of its %s limit (%.0f%%); run holds %s of replies in flight and read %s in the last %v",
		FormatBytes(used), FormatBytes(s.cfg.MemoryLimit), 100*float64(used)/float64(s.cfg.MemoryLimit),
		FormatBytes(l.inFlight), FormatBytes(int64(l.readRecent)), memorySampleEvery)
	r.pressureAt = now
	r.pressureUntil = now.Add(s.cfg.PressureHold)
	s.pressurePauses.Add(1)
	s.log.Warn("memory near the ceiling: closing the koi of the run using the most memory", "run", r.id,
		"koi", l.koi, "reason", r.pressure, "hold", s.cfg.PressureHold)
	r.reconcile(s.effectiveLocked(r))
	// No other run is judged until this one's koi are gone (a koi
	// decoding a reply finishes that first) and their memory is given
	// back: until then the memory still shows this run's.
	s.pressureQuiet = now.Add(pressureStopWait + pressureSettle)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		r.waitStopped(pressureStopWait)
		debug.FreeOSMemory()
		s.mu.Lock()
		s.pressureQuiet = time.Now().Add(pressureSettle)
		s.mu.Unlock()
	}()
}

// memoryStatus reports the memory figures.
func (s *School) memoryStatus() MemoryStatus {
	return MemoryStatus{Limit: s.cfg.MemoryLimit, InUse: s.memInUse.Load(), ReplyBudget: s.budget.Limit(),
		ReplyInFlight: s.budget.InUse(), RepliesRefused: s.budget.Refused(), PressurePauses: s.pressurePauses.Load(),
		Reclaims: s.reclaims.Load()}
}
