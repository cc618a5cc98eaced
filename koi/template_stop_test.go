package koi_test

import (
	"context"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire/wiretest"
)

// slowTemplateSet has one behavior whose pre_action is legal and slow:
// 22,000 range iterations (within MaxIterations), each hashing 7 KB, so
// one rendering takes a good fraction of a second, far more than a stop
// needs.
const slowTemplateSet = `{"behaviors": {"slow": {"frequency": 1, "steps": [{"pre_actions": [
  "{{ $s := repeat 1000 \"abcdefg\" }}{{ range until 2000 }}{{ range until 10 }}{{ $h := sha256sum $s }}{{ end }}{{ end }}"]}]}}}`

// A stop ends the templates its koi are running and those waiting for an
// executor: with twice as many koi as executors, every koi mid-way
// through its slow pre_action or queued behind the others, every Run
// returns in well under the time one rendering takes alone (it waited for
// every queued rendering to run to its end: 16 koi, 20 s), and the
// interrupted behaviors are counted canceled, not failed.
func TestStopEndsRunningAndQueuedTemplates(t *testing.T) {
	set := parseSet(t, slowTemplateSet)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, TimeScale: 60}) // a minute is 1 s
	seq := set.Behavior("slow").Sequence

	// One rendering alone, on this machine as it is now.
	start := time.Now()
	if err := rt.New(behaviors.Identity{Index: 1000}, 1).RunSequence(context.Background(), seq, nil); err != nil {
		t.Fatalf("the slow behavior alone: %v", err)
	}
	one := time.Since(start)

	n := 2 * behaviors.MaxExecutors()
	tot := newTotals(rt)
	sw := startSwarm(t, rt, n)
	wiretest.Until(t, 30*time.Second, "every koi to start its behavior", func() bool {
		var started int64
		for _, k := range sw.kois {
			started += k.Stats().Behaviors
		}
		return started >= int64(n)
	})
	took := sw.stopWithin(t, 10*time.Minute)
	t.Logf("%d koi, %d executors: every Run returned %v after the stop; one rendering alone takes %v", n, behaviors.MaxExecutors(), took, one)
	if took > one/2 {
		t.Errorf("every Run returned %v after the stop, more than half of one rendering alone (%v): the stop waited for templates", took, one)
	}
	s := tot.series(t, set.Behavior("slow").Key)
	for o, c := range s.Counts {
		if metrics.Outcome(o).Failure() && c > 0 {
			t.Errorf("%d slow behaviors counted %v: a stop is not a failure (counts %v)", c, metrics.Outcome(o), s.Counts)
		}
	}
	if s.Counts[metrics.Canceled] == 0 {
		t.Errorf("no slow behavior counted canceled (counts %v)", s.Counts)
	}
}
