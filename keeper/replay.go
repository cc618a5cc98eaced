package keeper

import (
	"sync"
	"time"

	"github.com/koipond/koipond/wire"
)

// reportMark is the newest metrics report taken from one school.
type reportMark struct {
	seq uint64
	end time.Time
}

// replayGuard drops a metrics report that a school already sent (or one
// older than it): NATS does not deduplicate, and a replayed report would
// count its requests and its exposure twice. A school restarted counts
// its reports from 1 again, but over later intervals, so its reports
// pass. At most maxReportMarks schools are remembered; past that the
// marks start over (a replay then passes once).
type replayGuard struct {
	mu    sync.Mutex
	marks map[string]reportMark
}

const maxReportMarks = 10_000

// fresh reports whether rep is newer than the last report of its school
// (by sequence or by interval end), and remembers it if so. end is the
// interval's end as the keeper files it (ingest): a school's clock it
// cannot trust counts as the arrival, so a report from decades ahead
// cannot make the school's honest reports after it look old.
func (g *replayGuard) fresh(rep *wire.MetricsReport, end time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	last, ok := g.marks[rep.School]
	if ok && rep.Seq <= last.seq && !end.After(last.end) {
		return false
	}
	if g.marks == nil || len(g.marks) >= maxReportMarks {
		g.marks = map[string]reportMark{}
	}
	g.marks[rep.School] = reportMark{seq: rep.Seq, end: end}
	return true
}
