package school_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// bigFormation is a valid formation of steps steps (about 130 bytes each).
func bigFormation(steps int) []byte {
	var b strings.Builder
	b.WriteString(`{"name": "burst", "begin_within_secs": 2, "percent": 10, "sequence": {"steps": [`)
	for i := range steps {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"request": {"type": "api", "method": "auth.test", "args": {"text": "step %d {{ randInt 0 100 }}"}}}`, i)
	}
	b.WriteString("]}}")
	return []byte(b.String())
}

// A poll reply with a thousand new launches of one large formation (the
// most the keeper sends) costs the school one fetch and one parse of it,
// outside its lock: the lock a stop on the control subject waits for is
// never held for long. Before, the school fetched the formation once per
// launch and parsed it once per launch under its lock: seconds to
// minutes during which a published stop could not be applied. What the
// keeper no longer names is forgotten, so a school running for days does
// not keep every formation it ever launched.
func TestLaunchBurstParsesItsFormationOnce(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	const n = 20
	hash := addSet(t, k, pondSet)
	form := bigFormation(3000)
	start := time.Now()
	if f, diags := formations.Parse(behaviors.File{Name: "burst.json", Data: form}); f == nil {
		t.Fatal(diags)
	}
	parse := time.Since(start)
	k.set(func(k *fakeKeeper) {
		k.blobs["burst"] = []wire.File{{Name: "burst.json", Data: form}}
		k.assignments["*"] = []wire.Assignment{pondAssignment("r1", n, hash, p)}
	})
	s := openSchool(t, url, school.Config{ID: "a"})
	wiretest.Until(t, 20*time.Second, "every koi connected", func() bool { return p.Stats().WebsocketsOpen == n })

	launches := make([]wire.Launch, wire.MaxLaunchesPerMessage)
	at := time.Now().Add(time.Hour) // scheduled, never begun in the test
	for i := range launches {
		launches[i] = wire.Launch{ID: fmt.Sprintf("l%04d", i), Run: "r1", Formation: "burst", Name: "burst", Start: at,
			BeginWithinMS: 2000, Count: 1, MetricKey: fmt.Sprintf("formation:burst#l%04d", i)}
	}
	k.set(func(k *fakeKeeper) { k.launches = launches })
	// How long the school's lock is held: a status read waits for it as
	// a stop does.
	var worst time.Duration
	wiretest.Until(t, 5*time.Minute, "the school reporting every launch", func() bool {
		t0 := time.Now()
		s.Status()
		worst = max(worst, time.Since(t0))
		pr, _ := k.lastPoll("a")
		return len(pr.Launches) == len(launches)
	})
	k.mu.Lock()
	asked := k.blobAsked["burst"]
	k.mu.Unlock()
	t.Logf("%d launches of a %d KB formation (one parse %v): fetched %d times, the lock held up to %v",
		len(launches), len(form)>>10, parse.Round(time.Millisecond), asked, worst.Round(time.Millisecond))
	if asked != 1 {
		t.Errorf("the formation was fetched %d times for one poll reply, want once", asked)
	}
	if bound := time.Second + 10*parse; worst > bound {
		t.Errorf("a status read waited %v for the school's lock, more than %v (1 s and ten parses of the formation)", worst, bound)
	}
	pr, _ := k.lastPoll("a")
	for _, ls := range pr.Launches {
		if ls.Error != "" {
			t.Fatalf("launch %s: %s", ls.Launch, ls.Error)
		}
	}

	// Once the keeper's replies no longer name the formation, the school
	// forgets it: a later launch of it fetches it again.
	k.set(func(k *fakeKeeper) { k.launches = nil })
	k.waitPolls(t, 3) // two replies without the launches applied
	later := launches[0]
	later.ID, later.MetricKey, later.Start = "later", "formation:burst#later", at.Add(time.Minute) // the newest: reported among the 1,000
	k.set(func(k *fakeKeeper) { k.launches = []wire.Launch{later} })
	wiretest.Until(t, 30*time.Second, "the later launch scheduled", func() bool {
		pr, _ := k.lastPoll("a")
		for _, ls := range pr.Launches {
			if ls.Launch == "later" {
				return true
			}
		}
		return false
	})
	k.mu.Lock()
	asked = k.blobAsked["burst"]
	k.mu.Unlock()
	if asked != 2 {
		t.Errorf("the formation was fetched %d times in all, want twice: once for the burst, once after it was forgotten", asked)
	}
}

// bigSet is a valid behavior set of n rarely due behaviors.
func bigSet(n int) string {
	var b strings.Builder
	b.WriteString(`{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]}, "behaviors": {`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"behavior_%04d": {"frequency": 0.0001, "steps": [{"request": {"type": "api", "method": "auth.test", "args": {"text": "b %d {{ randInt 0 100 }}"}}}]}`, i, i)
	}
	b.WriteString("}}")
	return b.String()
}

// Many runs of one large behavior set assigned in one reply (a school
// joining a keeper of always-on runs) cost one fetch and one parse of
// the set, outside the lock a stop waits for. Before, each run parsed
// the set while holding it.
func TestManyRunsOfOneSetParseItOnce(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	src := bigSet(2000)
	start := time.Now()
	if set, diags := behaviors.Parse(behaviors.File{Name: "set.json", Data: []byte(src)}); set == nil {
		t.Fatal(diags)
	}
	parse := time.Since(start)
	hash := addSet(t, k, src)
	const runs = 150
	s := openSchool(t, url, school.Config{ID: "a"})
	k.set(func(k *fakeKeeper) {
		for i := range runs {
			k.assignments["*"] = append(k.assignments["*"], wire.Assignment{Run: fmt.Sprintf("r%03d", i), From: 0, To: 1, Spec: wire.RunSpec{
				BehaviorSet: hash, APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}", TimeScale: 1}})
		}
	})
	var worst time.Duration
	wiretest.Until(t, 5*time.Minute, "every run's koi connected", func() bool {
		t0 := time.Now()
		s.Status()
		worst = max(worst, time.Since(t0))
		return p.Stats().WebsocketsOpen == runs
	})
	k.mu.Lock()
	asked := k.blobAsked[hash]
	k.mu.Unlock()
	t.Logf("%d runs of a %d KB set (one parse %v): fetched %d times, the lock held up to %v",
		runs, len(src)>>10, parse.Round(time.Millisecond), asked, worst.Round(time.Millisecond))
	if asked != 1 {
		t.Errorf("the set was fetched %d times, want once", asked)
	}
	if bound := time.Second + 10*parse; worst > bound {
		t.Errorf("a status read waited %v for the school's lock, more than %v (1 s and ten parses of the set)", worst, bound)
	}
}

// A launch whose formation the keeper cannot send fails once, with the
// reason, and the school does not ask for that formation again at every
// poll while the keeper still lists the launch.
func TestUnfetchableFormationIsAskedForOnce(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	hash := addSet(t, k, pondSet)
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = []wire.Assignment{pondAssignment("r1", 2, hash, p)}
	})
	openSchool(t, url, school.Config{ID: "a"})
	wiretest.Until(t, 20*time.Second, "every koi connected", func() bool { return p.Stats().WebsocketsOpen == 2 })
	k.set(func(k *fakeKeeper) {
		k.launches = []wire.Launch{{ID: "l1", Run: "r1", Formation: "missing", Name: "gone", Start: time.Now().Add(time.Hour),
			BeginWithinMS: 1000, Count: 1, MetricKey: "formation:gone#l1"}}
	})
	var errText string
	wiretest.Until(t, 20*time.Second, "the launch failed with a reason", func() bool {
		pr, _ := k.lastPoll("a")
		for _, ls := range pr.Launches {
			errText = ls.Error
		}
		return errText != ""
	})
	if !strings.Contains(errText, "could not be fetched") {
		t.Errorf("launch error %q, want it to say the formation could not be fetched", errText)
	}
	k.waitPolls(t, 5)
	k.mu.Lock()
	asked := k.blobAsked["missing"]
	k.mu.Unlock()
	if asked != 1 {
		t.Errorf("the missing formation was asked for %d times, want once", asked)
	}
}
