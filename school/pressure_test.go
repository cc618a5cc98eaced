package school_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// floodServer answers every API call with a reply far larger than usual:
// an n-byte string, quick to decode, that a koi can keep whole.
func floodServer(t testing.TB, n int) *httptest.Server {
	t.Helper()
	body := []byte(`{"ok":true,"items":"` + strings.Repeat("x", n) + `"}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// goMemory is what the Go runtime counts against its memory limit.
func goMemory() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}

// calm is the koi of openCalmSchool's run.
const calm = 10

// openCalmSchool opens a school whose memory ceiling is 96 MiB above what
// the test process uses now, running one run, "calm", of calm koi on
// pond; it returns once their websockets are open.
func openCalmSchool(t *testing.T) (*fakeKeeper, *pond.Server, *school.School, int64) {
	t.Helper()
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	p := openPond(t)
	pondHash := addSet(t, k, pondSet)
	k.set(func(k *fakeKeeper) {
		// A lease longer than the test: these tests are about memory
		// (lease expiry has TestLeaseExpiryPauses). Beside a CPU hog,
		// under the race detector, decoding floods starved the school's
		// polls for two 10 s leases, and it rightly closed every koi,
		// the calm run's too.
		k.leaseMS = (10 * time.Minute).Milliseconds()
		k.assignments["*"] = []wire.Assignment{pondAssignment("calm", calm, pondHash, p)}
	})
	runtime.GC()
	limit := goMemory() + 96<<20
	s := openSchool(t, url, school.Config{ID: "s1", MemoryLimit: limit, PressureHold: time.Hour})
	wiretest.Until(t, 20*time.Second, "the calm run's websockets", func() bool { return p.Stats().WebsocketsOpen == calm })
	return k, p, s, limit
}

// A target whose replies are far larger than usual, kept by the koi in
// their stores, pushes the school towards a small memory ceiling: the
// school closes that run's koi (and only that run's), reports why to the
// keeper in its poll, stays alive, and the second run's koi keep their
// websockets throughout.
func TestMemoryPressureClosesTheHeaviestRun(t *testing.T) {
	k, p, s, limit := openCalmSchool(t)
	flood := floodServer(t, 512<<10) // 512 KiB replies
	bombHash := addSet(t, k, `{"behaviors": {"hoard": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "flood",
	  "post_actions": ["{{ setKoi (printf \"r%d\" (randInt 0 1000)) .items }}"]}}]}}}`)
	const bombs = 32

	// The bomb: koi each keeping every 512 KiB reply it gets, up to the
	// 4 MiB that one koi's variables may hold (behaviors.MaxVarBytes).
	// What they keep must pass the ceiling by itself: the school's reply
	// budget refuses floods beyond it and the soft limit collects the
	// garbage. Four koi keeping arrays of a million zeros (16 MiB kept,
	// each slow to decode) reached 90% of a +96 MiB ceiling only when
	// garbage happened to peak at a sample; 32 koi keeping strings keep
	// up to 128 MiB within seconds.
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = append(k.assignments["*"], wire.Assignment{Run: "bomb", From: 0, To: bombs, Spec: wire.RunSpec{
			Name: "bomb", BehaviorSet: bombHash, APIBase: flood.URL + "/api", Token: "t{{.Index}}", TimeScale: 120}})
	})
	var peak int64
	wiretest.WaitFor(t, 60*time.Second, "the bomb run closed for memory pressure", func() error {
		peak = max(peak, goMemory())
		poll, _ := k.lastPoll("s1")
		if ws := p.Stats().WebsocketsOpen; ws != calm {
			t.Fatalf("the calm run has %d websockets open while the bomb runs, want %d (school: %s)", ws, calm, pressureOf(poll, s))
		}
		for _, rs := range poll.Runs {
			if rs.Run == "bomb" && rs.Pressure != "" {
				return nil
			}
		}
		return fmt.Errorf("peak Go memory %s; school: %s", school.FormatBytes(peak), pressureOf(poll, s))
	})
	t.Logf("memory limit %s, peak Go memory while the bomb ran %s", school.FormatBytes(limit), school.FormatBytes(peak))

	poll, _ := k.lastPoll("s1")
	for _, rs := range poll.Runs {
		switch rs.Run {
		case "bomb":
			if !strings.Contains(rs.Pressure, "memory ceiling") || rs.PressureAt.IsZero() {
				t.Errorf("bomb run's pressure = %q at %v, want a memory ceiling reason and a time", rs.Pressure, rs.PressureAt)
			}
		case "calm":
			if rs.Pressure != "" {
				t.Errorf("the calm run was blamed: %q", rs.Pressure)
			}
		}
	}
	// The bomb's koi close, the memory comes back, the calm run keeps
	// all its koi, and the school keeps working.
	wiretest.Until(t, 30*time.Second, "the bomb run's koi closed", func() bool {
		for _, r := range s.Status().Runs {
			if r.Run == "bomb" {
				return r.Koi.Booting+r.Koi.Connected+r.Koi.Reconnecting == 0
			}
		}
		return false
	})
	wiretest.Until(t, 30*time.Second, "memory below the ceiling again", func() bool {
		return float64(s.Status().Memory.InUse) < school.PressureHigh*float64(limit)
	})
	st := s.Status()
	for _, r := range st.Runs {
		if r.Run == "calm" && r.Koi.Connected != calm {
			t.Errorf("calm run: %d koi connected, want %d", r.Koi.Connected, calm)
		}
	}
	if st.Memory.PressurePauses != 1 || st.Memory.Limit != limit {
		t.Errorf("memory status %+v: want one pressure pause under limit %d", st.Memory, limit)
	}
	before := requests(p, "auth.test")
	wiretest.Until(t, 10*time.Second, "the calm run still calling pond", func() bool { return requests(p, "auth.test") > before+calm })
	if ws := p.Stats().WebsocketsOpen; ws != calm {
		t.Errorf("calm run: %d websockets after the bomb, want %d", ws, calm)
	}
}

// pressureOf says, for a failure message, which runs the school blamed and
// whether it had paused itself.
func pressureOf(poll wire.PollRequest, s *school.School) string {
	var b strings.Builder
	for _, rs := range poll.Runs {
		fmt.Fprintf(&b, "run %s pressure %q; ", rs.Run, rs.Pressure)
	}
	st := s.Status()
	fmt.Fprintf(&b, "self-paused %v, memory %+v", st.SelfPaused, st.Memory)
	return b.String()
}

// garbageSink keeps an allocation reachable only while it is being made.
var garbageSink []byte

// Memory at the ceiling that is only garbage (a run the keeper stopped
// left it; nothing has collected it yet) is nobody's fault: the school
// collects and returns it before it blames a run, and the run that is
// merely running keeps its koi and is not reported to the keeper.
func TestGarbageAtTheCeilingBlamesNoRun(t *testing.T) {
	k, p, s, limit := openCalmSchool(t)

	// One allocation takes the memory past the high mark and is garbage
	// the moment it is made. The runtime may hand it back by itself
	// before the school samples; then the next one is tried.
	high := int64(school.PressureHigh * float64(limit))
	var peak int64
	wiretest.WaitFor(t, 60*time.Second, "the school to see garbage at its ceiling and collect it", func() error {
		if n := limit - goMemory(); n > 0 {
			garbageSink = make([]byte, n)
			garbageSink = nil
		}
		peak = max(peak, goMemory())
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if s.Status().Memory.Reclaims > 0 {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		poll, _ := k.lastPoll("s1")
		return fmt.Errorf("peak Go memory %s (high mark %s); school: %s", school.FormatBytes(peak), school.FormatBytes(high), pressureOf(poll, s))
	})
	wiretest.Until(t, 10*time.Second, "memory below the high mark", func() bool { return s.Status().Memory.InUse < high })
	// Let the school sample a few more times: nothing may be blamed.
	time.Sleep(5 * 200 * time.Millisecond)
	st := s.Status()
	if st.Memory.PressurePauses != 0 {
		t.Errorf("memory status %+v: a run was closed for garbage", st.Memory)
	}
	for _, r := range st.Runs {
		if r.Pressure != "" || r.Koi.Connected != calm {
			t.Errorf("calm run: pressure %q, %d koi connected, want none and %d", r.Pressure, r.Koi.Connected, calm)
		}
	}
	if ws := p.Stats().WebsocketsOpen; ws != calm {
		t.Errorf("calm run: %d websockets, want %d", ws, calm)
	}
	t.Logf("limit %s, peak Go memory %s, reclaims %d, in use after %s", school.FormatBytes(limit), school.FormatBytes(peak),
		st.Memory.Reclaims, school.FormatBytes(st.Memory.InUse))
}
