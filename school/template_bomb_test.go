package school_test

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// bombRunSet holds the template bombs that used to kill a school (and
// each school the run failed over to) beside an ordinary behavior. The
// bombs pass validation: their sizes come from variables and from pond's
// replies.
var bombRunSet = `{
  "boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {
    "tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
    "repeat-bomb": {"frequency": 1, "steps": [{"pre_actions": [
      "{{ set \"n\" 10000 }}",
      "{{ $x := repeat (get \"n\") (repeat (get \"n\") (repeat (get \"n\") \"x\")) }}"]}]},
    "print-doubling": {"frequency": 1, "steps": [{
      "request": {"type": "api", "method": "conversations.list"},
      "post_actions": ["{{ $s := toJson . }}` + strings.Repeat(`{{ $s = print $s $s }}`, 30) + `"]}]}}}`

// A run whose behaviors are template bombs keeps the school alive and its
// heap under 100 MB, while its ordinary behavior keeps reaching pond.
func TestTemplateBombRunKeepsSchoolSmall(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	hash := addSet(t, k, bombRunSet)
	const n = 40
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = []wire.Assignment{{Run: "bomb", From: 0, To: n, Ramp: 1000, Spec: wire.RunSpec{
			Name: "bomb", BehaviorSet: hash, APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}", TimeScale: 60}}}
	})

	// The heap counts garbage until a collection: start from a collected
	// heap, not from what the tests before this one left.
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); sampler.Wait() }()

	s := openSchool(t, url, school.Config{ID: "s1"})
	// The koi connect, and the bombs go off, as fast as the machine lets
	// them: wait while they make progress.
	state := func() string {
		st := s.Status()
		return fmt.Sprintf("school: %d koi running, self-paused %v, last poll %v", st.KoiRunning, st.SelfPaused, st.LastPoll)
	}
	untilReached(t, 20*time.Second, "every koi connected", n, func() int { return int(p.Stats().WebsocketsOpen) }, state)
	// At time scale 60 every koi runs every behavior about once a second:
	// wait until the bombs have gone off a few hundred times.
	lists := func() uint64 { return requests(p, "conversations.list") }
	untilReached(t, 20*time.Second, "the bombs going off", 4*n, func() int { return int(lists()) }, state)
	ticks := int(requests(p, "auth.test"))
	untilReached(t, 20*time.Second, "the ordinary behavior going on", ticks+n, func() int { return int(requests(p, "auth.test")) }, state)
	if st := s.Status(); st.KoiRunning != n {
		t.Errorf("%d koi running, want %d", st.KoiRunning, n)
	}
	if got := peak.Load(); got > 100<<20 {
		t.Errorf("heap peaked at %d MB", got>>20)
	}
	t.Logf("%d koi, %d print-doubling bombs after a pond reply (and as many repeat bombs): heap peak %.1f MB (sampled every 2 ms), %s",
		n, lists(), float64(peak.Load())/1e6, procRSS())
}

// procRSS reads the process's resident set size and its peak from /proc.
func procRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}
