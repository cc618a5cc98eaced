package school_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A school whose runs' metrics together are more than NATS takes in one
// message sends each interval in several reports, each within the
// server's payload limit and with a sequence number of its own, and every
// run's interval arrives.
func TestMetricsReportsSplitToFitTheNATSPayload(t *testing.T) {
	const maxPayload = 16 << 10
	url := wiretest.StartNATS(t, wiretest.NATSConfig{MaxPayload: maxPayload}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	// 60 behaviors, once a second each: about 60 metric keys per run
	// and interval, some 3 KB of snapshot.
	var b strings.Builder
	b.WriteString(`{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]}, "behaviors": {`)
	for i := range 60 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"behavior_number_%02d": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}`, i)
	}
	b.WriteString("}}")
	hash := addSet(t, k, b.String())
	const runs = 12
	k.set(func(k *fakeKeeper) {
		for i := range runs {
			k.assignments["*"] = append(k.assignments["*"], wire.Assignment{Run: fmt.Sprintf("run-%02d", i), From: 0, To: 1,
				Spec: wire.RunSpec{Name: "wide", BehaviorSet: hash, APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}", TimeScale: 60}})
		}
	})
	openSchool(t, url, school.Config{ID: "s1"})
	wiretest.Until(t, 20*time.Second, "every run's koi connected", func() bool { return p.Stats().WebsocketsOpen == runs })

	// One interval, once every run has had time to report a wide one:
	// every run in it, in more than one report.
	var got map[time.Time][]wire.MetricsReport
	wiretest.WaitFor(t, 30*time.Second, "an interval with every run's metrics, sent in parts", func() error {
		k.mu.Lock()
		reports := append([]wire.MetricsReport(nil), k.reports...)
		k.mu.Unlock()
		got = map[time.Time][]wire.MetricsReport{}
		var lastSeq uint64
		for _, r := range reports {
			if r.Seq <= lastSeq {
				t.Fatalf("report seq %d after %d: every report needs a sequence number of its own", r.Seq, lastSeq)
			}
			lastSeq = r.Seq
			got[r.End] = append(got[r.End], r)
		}
		best := ""
		for end, parts := range got {
			seen := map[string]bool{}
			bytes := 0
			for _, r := range parts {
				if !r.Start.Equal(parts[0].Start) {
					t.Fatalf("the parts of the interval ending %v start at %v and %v", end, parts[0].Start, r.Start)
				}
				for _, rm := range r.Runs {
					if seen[rm.Run] {
						t.Fatalf("run %s twice in the interval ending %v", rm.Run, end)
					}
					seen[rm.Run] = true
					bytes += len(rm.Snapshot)
				}
			}
			if len(seen) == runs && len(parts) > 1 {
				t.Logf("interval ending %v: %d runs, %d bytes of snapshots, in %d reports of at most %d bytes", end.Format(time.StampMilli),
					len(seen), bytes, len(parts), maxPayload)
				return nil
			}
			best = fmt.Sprintf("an interval with %d of %d runs in %d reports (%d bytes of snapshots)", len(seen), runs, len(parts), bytes)
		}
		return fmt.Errorf("%d reports; last seen: %s", len(reports), best)
	})
}
