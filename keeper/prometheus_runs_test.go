package keeper

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire/wiretest"
)

// koipond_run_requests_total counts, per key and outcome, what the run's
// merged total holds: every count the total had before a scrape, at most
// what it had after, and no key or outcome the total lacks.
func TestPrometheusRequestsTotalAreTheRunsCounts(t *testing.T) {
	r := newRig(t, 20)
	p := newPond(t, nil)
	run, err := r.k.CreateRun(context.Background(), "test", spec("counted", p, 10))
	if err != nil {
		t.Fatal(err)
	}
	counts := func() map[string]uint64 {
		out := map[string]uint64{}
		snap, _, _ := r.k.agg.total(run.ID)
		for key, ss := range snap.Series {
			for o, c := range ss.Counts {
				if c > 0 {
					out[key+" "+metrics.Outcome(o).String()] = c
				}
			}
		}
		return out
	}
	wiretest.WaitFor(t, 30*time.Second, "calls to api:auth.test in the run's total", func() error {
		if c := counts(); c["api:auth.test ok"] < 5 {
			return fmt.Errorf("counts %v", c)
		}
		return nil
	})
	before := counts()
	text := apiText(t, r.k, "/metrics")
	after := counts()
	line := regexp.MustCompile(`(?m)^koipond_run_requests_total\{run="` + run.ID + `",name="counted",key="([^"]+)",outcome="([a-z_]+)"\} ([0-9]+)$`)
	scraped := map[string]uint64{}
	for _, m := range line.FindAllStringSubmatch(text, -1) {
		n, err := strconv.ParseUint(m[3], 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		scraped[m[1]+" "+m[2]] = n
	}
	// Every count before is positive (and one of them is api:auth.test's),
	// so a series missing from the scrape fails here.
	for k, b := range before {
		if got := scraped[k]; got < b || got > after[k] {
			t.Errorf("%s: scraped %d, the total held %d before and %d after", k, got, b, after[k])
		}
	}
	for k, got := range scraped {
		if _, ok := after[k]; !ok {
			t.Errorf("%s: scraped %d, not in the run's total", k, got)
		}
	}
}
