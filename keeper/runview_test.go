package keeper

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A stopped run shows no connected koi as soon as it is stopped: the
// schools' last reports, made before they heard of the stop, no longer
// count. A school that has heard of the stop and still reports koi
// (closing them) is shown as it is, until it reports none.
func TestStoppedRunShowsNoConnectedKoi(t *testing.T) {
	ctx := context.Background()
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 10)
	// The school's polls, made by hand (Poll is the poll subject's
	// handler): it reports every koi it is assigned connected.
	poll := func(epoch uint64, connected int) {
		t.Helper()
		req := &wire.PollRequest{School: "s1", Software: "test", Capacity: 100, Clock: time.Now()}
		if connected >= 0 {
			req.Runs = []wire.RunStatus{{Run: run.ID, From: 0, To: 10, Target: 10, Epoch: epoch,
				Koi: wire.KoiCounts{Connected: connected}}}
		}
		if _, err := k.Poll(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	connected := func() int { return k.RunView(k.State(), run.ID).KoiNow.Connected }
	wiretest.WaitFor(t, 10*time.Second, "the run assigned to the school", func() error {
		poll(0, -1)
		if v := k.RunView(k.State(), run.ID); v.Assigned != 10 {
			return fmt.Errorf("%d of 10 koi assigned", v.Assigned)
		}
		return nil
	})
	poll(0, 10)
	if n := connected(); n != 10 {
		t.Fatalf("running: %d connected, want the school's 10", n)
	}

	stopped, err := k.SetRunState(ctx, "test", run.ID, wire.Stopped)
	if err != nil {
		t.Fatal(err)
	}
	if n := connected(); n != 0 {
		t.Errorf("stopped, before the school's next poll: %d connected, want 0 (its report predates the stop)", n)
	}
	poll(0, 10) // a report made before the school heard of the stop
	if n := connected(); n != 0 {
		t.Errorf("stopped, a report from before the stop: %d connected, want 0", n)
	}
	poll(stopped.Switch.Epoch, 3) // heard the stop, still closing three
	if n := connected(); n != 3 {
		t.Errorf("stopped, the school still closing 3 koi: %d connected, want 3", n)
	}
	poll(stopped.Switch.Epoch, 0)
	if n := connected(); n != 0 {
		t.Errorf("stopped and closed: %d connected, want 0", n)
	}
	if out := apiText(t, k, "/api/v1/runs"); !strings.Contains(out, `"koi_now":{"booting":0,"connected":0`) {
		t.Errorf("run list: %s, want koi_now with 0 connected", out)
	}
}

// logLines is a slog handler's writer that keeps the lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	return len(p), nil
}

func (l *logLines) with(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

const partialWarning = "runs started partially"

// The keeper does not warn that a run started partially before the
// schools have had a poll interval to take its koi (the demo creates its
// run a moment before its school's first poll and warned "0/500"); a run
// still short after that is warned about.
func TestPartialStartWarnedAfterAPoll(t *testing.T) {
	// A poll interval of 2 s: the real school's first poll, right at its
	// start, is well within it even on a starved machine.
	const poll = 2 * time.Second
	logs := &logLines{}
	k := openKeeper(t, t.TempDir(), func(c *Config) {
		c.PollInterval, c.Lease = poll, 5*poll
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	p := openPond(t, nil)
	run := pondRun(t, k, p, "demo-like", 5, 0)
	created := time.Now()
	openSchool(t, k, k.NATSURL(), "s1", 100)
	wiretest.WaitFor(t, 10*time.Second, "the run's koi assigned", func() error {
		if v := k.RunView(k.State(), run.ID); v.Assigned != 5 {
			return fmt.Errorf("%d of 5 koi assigned", v.Assigned)
		}
		return nil
	})
	if took := time.Since(created); took >= poll {
		t.Fatalf("the school took %v, more than a poll interval (%v), to take the run: the machine is too slow for this test's premise", took, poll)
	}
	if w := logs.with(partialWarning); len(w) > 0 {
		t.Errorf("warned before the school's first poll: %s", w)
	}

	// A second run that no school has room for: warned once it has been
	// short for a poll interval, and not before.
	short, err := k.CreateRun(context.Background(), "test", RunSpec{Name: "too big", BehaviorSet: "pond", Koi: 500, TimeScale: 60,
		Target: state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}
	shortAt := time.Now()
	var line string
	wiretest.WaitFor(t, 5*poll, "the partial start warned", func() error {
		w := logs.with(partialWarning)
		if len(w) == 0 {
			return fmt.Errorf("no %q in the keeper's log", partialWarning)
		}
		line = w[0]
		return nil
	})
	if since := time.Since(shortAt); since < poll {
		t.Errorf("warned %v after the run was created, before a poll interval (%v)", since, poll)
	}
	if !strings.Contains(line, short.ID+":95/500") {
		t.Errorf("warning %q does not name %s at 95/500", line, short.ID)
	}
	if strings.Contains(line, run.ID) {
		t.Errorf("warning %q names the run that is placed in full", line)
	}
}
