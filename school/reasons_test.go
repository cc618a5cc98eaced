package school

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
)

// reasonSnap is a snapshot with one failure per reason under key.
func reasonSnap(key string, reasons ...string) *metrics.Snapshot {
	var r metrics.Recorder
	s := r.Series(key)
	for _, reason := range reasons {
		s.CountReason(metrics.Error, reason, "sample of "+reason)
	}
	return r.Snapshot()
}

// The reason log says each (key, reason) of a run once, at most
// reasonLogPerMinute new ones a minute; the rest are summed in one line
// when the minute ends and said, if they recur, in a later minute.
func TestReasonLogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := newReasonLog("r1")
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	count := func(s string) int { return strings.Count(buf.String(), s) }

	l.note(log, reasonSnap("api:auth.test", "not_authed"), t0)
	l.note(log, reasonSnap("api:auth.test", "not_authed"), t0.Add(time.Second)) // seen: silent
	if n := count("reason=not_authed"); n != 1 {
		t.Fatalf("not_authed logged %d times, want once:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `sample="sample of not_authed"`) || !strings.Contains(buf.String(), "run=r1") {
		t.Fatalf("log line lacks the run or the sample:\n%s", buf.String())
	}

	// 8 reasons per key and snapshot (metrics keeps no more): 20 new ones
	// over three keys within the same minute: 9 fit beside not_authed, 12
	// do not.
	var many []string
	for i := range 7 {
		many = append(many, fmt.Sprintf("e%d", i))
	}
	for _, key := range []string{"a", "b", "c"} {
		l.note(log, reasonSnap(key, many...), t0.Add(2*time.Second))
	}
	if n := count("msg=\"requests failing\""); n != reasonLogPerMinute {
		t.Fatalf("%d reasons logged in the first minute, want %d", n, reasonLogPerMinute)
	}
	// The next minute: the suppressed sum, then the recurring ones.
	l.note(log, reasonSnap("c", many...), t0.Add(61*time.Second))
	if !strings.Contains(buf.String(), "suppressed=12") {
		t.Fatalf("no suppressed=12 line:\n%s", buf.String())
	}
	if n := count("msg=\"requests failing\" run=r1 key=c"); n != 7 {
		t.Fatalf("key c: %d of its 7 reasons logged by the second minute:\n%s", n, buf.String())
	}
}

// A target inventing a reason per call cannot grow the log's memory.
func TestReasonLogMemoryBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := newReasonLog("r1")
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i := range 2 * reasonLogMemory / reasonLogPerMinute {
		var rs []string
		for j := range reasonLogPerMinute {
			rs = append(rs, fmt.Sprintf("e%d-%d", i, j))
		}
		// One key per minute, so each stays within the 8 per key.
		l.note(log, reasonSnap(fmt.Sprintf("k%d", i), rs[:7]...), t0.Add(time.Duration(i)*time.Minute))
		l.note(log, reasonSnap(fmt.Sprintf("k%d-2", i), rs[7:]...), t0.Add(time.Duration(i)*time.Minute))
	}
	if len(l.seen) > reasonLogMemory {
		t.Fatalf("the log remembers %d reasons, more than %d", len(l.seen), reasonLogMemory)
	}
	if n := strings.Count(buf.String(), "too many distinct reasons"); n != 1 {
		t.Fatalf("the memory limit was said %d times, want once", n)
	}
}
