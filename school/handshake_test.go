package school_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A run whose target answers every websocket handshake with a header
// line that never ends keeps the school under its memory ceiling while
// its koi dial, fail and dial again. (Unbounded, 200 koi took a school
// with a ceiling 256 MiB above its baseline to 3.7 times the ceiling.)
func TestEndlessHandshakeRepliesStayUnderTheCeiling(t *testing.T) {
	const n = 200
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	addr, accepted := wiretest.EndlessHandshake(t)
	h := addSet(t, k, `{"behaviors": {}}`)
	k.set(func(k *fakeKeeper) {
		k.leaseMS = (10 * time.Minute).Milliseconds() // about memory, not leases (see openCalmSchool)
		k.assignments["*"] = []wire.Assignment{{Run: "hdr", From: 0, To: n, Spec: wire.RunSpec{Name: "hdr", BehaviorSet: h,
			WebsocketURL: "ws://" + addr + "/ws", Token: "t{{.Index}}", TimeScale: 1}}}
	})
	runtime.GC()
	limit := goMemory() + 256<<20
	s := openSchool(t, url, school.Config{ID: "s1", MemoryLimit: limit, PressureHold: time.Hour})
	var peak int64
	wiretest.WaitFor(t, 60*time.Second, fmt.Sprintf("every koi to dial again (%d dials)", 2*n), func() error {
		peak = max(peak, goMemory())
		if peak > limit {
			poll, _ := k.lastPoll("s1")
			t.Fatalf("Go memory reached %s, over the %s ceiling, with %d handshakes (school: %s)",
				school.FormatBytes(peak), school.FormatBytes(limit), accepted.Load(), pressureOf(poll, s))
		}
		if got := accepted.Load(); got < 2*n {
			return fmt.Errorf("%d dials; peak Go memory %s", got, school.FormatBytes(peak))
		}
		return nil
	})
	t.Logf("ceiling %s; peak Go memory %s over %d handshakes", school.FormatBytes(limit), school.FormatBytes(peak), accepted.Load())
}
