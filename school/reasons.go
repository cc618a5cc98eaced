package school

import (
	"log/slog"
	"time"

	"github.com/koipond/koipond/metrics"
)

// Bounds of the failure-reason log.
const (
	// reasonLogPerMinute is the most new (key, reason) pairs a run logs
	// per minute; the rest are summed in one line when the minute ends
	// and logged, if they recur, in a later minute.
	reasonLogPerMinute = 10
	// reasonLogMemory is the most (key, reason) pairs a run remembers as
	// logged: a target inventing a new error per call cannot grow it.
	reasonLogMemory = 1024
)

// reasonLog logs, at WARN, the first occurrence of each failure reason
// of each metric key of one run, with its sample, so the school log says
// why requests fail ("not_authed") the moment they start to. Only the
// report goroutine uses it.
type reasonLog struct {
	run        string
	seen       map[string]struct{} // key + "\x00" + reason
	minute     time.Time           // start of the current rate window
	logged     int                 // new reasons logged in the window
	suppressed int                 // new reasons not logged in the window
	full       bool                // seen reached reasonLogMemory (said once)
}

func newReasonLog(run string) *reasonLog {
	return &reasonLog{run: run, seen: map[string]struct{}{}}
}

// note logs the reasons in snap not logged before, within the rate
// limit, at time now.
func (l *reasonLog) note(log *slog.Logger, snap *metrics.Snapshot, now time.Time) {
	if now.Sub(l.minute) >= time.Minute {
		if l.suppressed > 0 {
			log.Warn("more new failure reasons suppressed", "run", l.run, "suppressed", l.suppressed,
				"per_minute", reasonLogPerMinute)
		}
		l.minute, l.logged, l.suppressed = now, 0, 0
	}
	for _, key := range snap.Keys() {
		for _, r := range snap.Series[key].Reasons {
			id := key + "\x00" + r.Reason
			if _, ok := l.seen[id]; ok {
				continue
			}
			if len(l.seen) >= reasonLogMemory {
				if !l.full {
					l.full = true
					log.Warn("failure reasons: too many distinct reasons to log each; the run's metrics still count them",
						"run", l.run, "logged", len(l.seen))
				}
				return
			}
			if l.logged >= reasonLogPerMinute {
				l.suppressed++
				continue
			}
			l.seen[id] = struct{}{}
			l.logged++
			log.Warn("requests failing", "run", l.run, "key", key, "reason", r.Reason, "count", r.Count, "sample", r.Sample)
		}
	}
}
