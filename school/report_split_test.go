package school

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/koipond/koipond/wire"
)

// splitReport keeps each part within the payload and the run count a
// report may carry, keeps the runs' order, and leaves out only a run that
// cannot be sent on its own.
func TestSplitReportBounds(t *testing.T) {
	base := wire.MetricsReport{School: "s1", Start: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 5, 10, 0, 1, 0, time.UTC)}
	const limit = 16 << 10
	var runs []wire.RunMetrics
	for i := range 40 {
		n := 1500 + 37*i
		if i == 7 {
			n = limit // too large whatever else is in its report
		}
		runs = append(runs, wire.RunMetrics{Run: fmt.Sprintf("run-%02d", i), Snapshot: bytes.Repeat([]byte{byte(i)}, n),
			Koi: wire.KoiCounts{Connected: i}, FramesIn: wire.MaxTraffic})
	}
	parts, dropped := splitReport(base, runs, limit)
	if len(dropped) != 1 || dropped[0].Run != "run-07" {
		t.Fatalf("dropped %d runs, want run-07 alone", len(dropped))
	}
	next := 0
	for i, p := range parts {
		p.Seq = math.MaxUint64
		b, err := wire.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > limit {
			t.Errorf("part %d encodes to %d bytes, more than %d", i, len(b), limit)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("part %d: %v", i, err)
		}
		if p.School != base.School || !p.Start.Equal(base.Start) || !p.End.Equal(base.End) {
			t.Errorf("part %d is for %s %v–%v, want the base's interval", i, p.School, p.Start, p.End)
		}
		for _, rm := range p.Runs {
			if next == 7 {
				next++
			}
			if rm.Run != runs[next].Run {
				t.Fatalf("part %d holds %s where %s was next", i, rm.Run, runs[next].Run)
			}
			next++
		}
	}
	if next != len(runs) {
		t.Errorf("the parts hold runs up to %d of %d", next, len(runs))
	}
	if len(parts) < 4 {
		t.Errorf("%d parts for about 100 KB at %d bytes each: the runs were not spread", len(parts), limit)
	}

	// Many small runs: no report carries more than MaxRunsPerMessage.
	runs = runs[:0]
	for i := range wire.MaxRunsPerMessage + 500 {
		runs = append(runs, wire.RunMetrics{Run: fmt.Sprintf("r%d", i)})
	}
	parts, dropped = splitReport(base, runs, 64<<20)
	if len(dropped) != 0 || len(parts) != 2 || len(parts[0].Runs) != wire.MaxRunsPerMessage || len(parts[1].Runs) != 500 {
		t.Errorf("%d runs: %d parts, %d dropped; want %d and 500 runs in two", len(runs), len(parts), len(dropped), wire.MaxRunsPerMessage)
	}
}
