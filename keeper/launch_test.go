package keeper

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// paramHerd sends every connected koi to conversations.info on the
// channel it is given, within windowSecs (behavior seconds).
func paramHerd(name string, windowSecs int) string {
	return fmt.Sprintf(`{"name": %q, "begin_within_secs": %d, "percent": 100,
  "params": [{"name": "channel_id", "required": true, "doc": "the channel every koi looks at"},
             {"name": "limit", "default": "3", "doc": "unused here"}],
  "sequence": {"steps": [{"request": {"type": "api", "method": "conversations.info",
                                      "args": {"channel": "{{ get \"channel_id\" }}"}}}]}}`, name, windowSecs)
}

// launchRig is a keeper with a real school running koi against pond.
func launchRig(t *testing.T, koi int, formation string) (*Keeper, *pond.Server, *state.Run) {
	t.Helper()
	k := openKeeper(t, t.TempDir())
	p := openPond(t, nil)
	openSchool(t, k, k.NATSURL(), "s1", 100)
	if _, err := k.PutFormation(context.Background(), "test", behaviors.File{Name: "f.json", Data: []byte(formation)}); err != nil {
		t.Fatal(err)
	}
	run := pondRun(t, k, p, "herd", koi, 0)
	wiretest.WaitFor(t, 20*time.Second, "every koi connected", func() error {
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != koi {
			return fmt.Errorf("%d of %d connected", v.KoiNow.Connected, koi)
		}
		return nil
	})
	return k, p, run
}

// waitLaunch waits for a launch to reach state st and returns it.
func waitLaunch(t *testing.T, k *Keeper, id string, st state.LaunchState, d time.Duration) *state.Launch {
	t.Helper()
	var l *state.Launch
	wiretest.WaitFor(t, d, "launch "+string(st), func() error {
		if l = k.State().Launch(nil, id); l.State != st {
			return fmt.Errorf("state %s: %s (started %d finished %d failed %d cancelled %d of %d)", l.State, l.Outcome,
				l.Started, l.Finished, l.Failed, l.Cancelled, l.Count)
		}
		return nil
	})
	return l
}

// A launch's parameters are checked against the formation's declaration
// at the API: a missing required or an undeclared one is refused with 400
// naming it, nothing is stored; a default fills in. Then a launch on a
// real channel finishes every koi and one on a channel pond does not know
// fails every koi: the counts match what pond saw, and each launch's step
// latencies are under its own key.
func TestLaunchParamsAndCountsAtPond(t *testing.T) {
	const koi = 8
	k, p, run := launchRig(t, koi, paramHerd("look", 0))
	c := wiretest.API{Base: "http://" + k.HTTPAddr()}
	refused := []struct {
		name   string
		params map[string]string
		field  string
		want   []string
	}{
		// the required one is named, with what the formation declares
		{"missing", nil, "params.channel_id", []string{"missing required parameter channel_id", "channel_id (required): the channel every koi looks at", `limit (default "3")`}},
		// an empty value is not a value
		{"empty", map[string]string{"channel_id": ""}, "params.channel_id", []string{"missing required parameter channel_id"}},
		// a typo is not silently ignored
		{"unknown", map[string]string{"channel_id": pond.ChannelID(1), "chanel": "x"}, "params.chanel", []string{"unknown parameter chanel"}},
	}
	for _, tt := range refused {
		var e struct {
			Error struct{ Code, Message, Field string } `json:"error"`
		}
		st := c.Do(t, "POST", "/api/v1/launches", map[string]any{"formation": "look", "run": run.ID, "params": tt.params}, &e)
		if st != 400 || e.Error.Field != tt.field {
			t.Errorf("%s: HTTP %d %+v, want 400 on %s", tt.name, st, e.Error, tt.field)
		}
		for _, w := range tt.want {
			if !strings.Contains(e.Error.Message, w) {
				t.Errorf("%s: %q not in %q", tt.name, w, e.Error.Message)
			}
		}
	}
	if ls := k.State().LaunchesOfRun(nil, run.ID); len(ls) != 0 {
		t.Fatalf("refused launches stored: %d", len(ls))
	}

	ctx := context.Background()
	good, err := k.Launch(ctx, "op", LaunchSpec{Formation: "look", Run: run.ID, Params: map[string]string{"channel_id": pond.ChannelID(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if good.Params["limit"] != "3" || !strings.HasSuffix(good.MetricKey, "#"+good.ID) {
		t.Errorf("params %v, key %q", good.Params, good.MetricKey)
	}
	l := waitLaunch(t, k, good.ID, state.LaunchDone, 20*time.Second)
	if l.Count != koi || l.Started != koi || l.Finished != koi || l.Failed != 0 || l.Cancelled != 0 {
		t.Errorf("good launch: %d planned, %d started, %d finished, %d failed, %d cancelled", l.Count, l.Started, l.Finished, l.Failed, l.Cancelled)
	}
	bad, err := k.Launch(ctx, "op", LaunchSpec{Formation: "look", Run: run.ID, Params: map[string]string{"channel_id": "CNOPE"}})
	if err != nil {
		t.Fatal(err)
	}
	l = waitLaunch(t, k, bad.ID, state.LaunchDone, 20*time.Second)
	if l.Count != koi || l.Started != koi || l.Finished != 0 || l.Failed != koi || l.Cancelled != 0 {
		t.Errorf("bad launch: %d planned, %d started, %d finished, %d failed, %d cancelled", l.Count, l.Started, l.Finished, l.Failed, l.Cancelled)
	}
	if !strings.Contains(l.Outcome, fmt.Sprintf("%d failed", koi)) {
		t.Errorf("outcome %q", l.Outcome)
	}
	st := p.Stats()
	if ok, nf := st.Requests["conversations.info"]["200"], st.Errors["conversations.info"]["channel_not_found"]; nf != uint64(koi) || ok != uint64(2*koi) {
		// pond answers ok:false with HTTP 200, so 200s count both launches
		t.Errorf("pond saw %d conversations.info (200), %d channel_not_found; want %d and %d", ok, nf, 2*koi, koi)
	}
	// Each launch reads its own step keys in the report, once the
	// metrics have arrived.
	wiretest.WaitFor(t, 10*time.Second, "each launch's steps in the report", func() error {
		rep, err := k.RunReport(run.ID)
		if err != nil {
			return err
		}
		if len(rep.Launches) != 2 {
			return fmt.Errorf("%d launches", len(rep.Launches))
		}
		for i, want := range []struct {
			id       string
			failures uint64
		}{{good.ID, 0}, {bad.ID, koi}} {
			rl := rep.Launches[i]
			var step *state.ReportKey
			for j := range rl.Steps {
				if rl.Steps[j].Key == rl.Key+":1" {
					step = &rl.Steps[j]
				}
			}
			switch {
			case rl.ID != want.id || !strings.Contains(rl.Key, want.id):
				return fmt.Errorf("launch %d: %s key %q", i, rl.ID, rl.Key)
			case step == nil:
				return fmt.Errorf("launch %s: no step key in %+v", rl.ID, rl.Steps)
			case step.Count != koi || step.Failures != want.failures:
				return fmt.Errorf("launch %s step 1: %d calls, %d failures; want %d, %d", rl.ID, step.Count, step.Failures, koi, want.failures)
			}
		}
		// the formation's shared step key, which thresholds name, still
		// counts both launches
		for _, rk := range rep.Keys {
			if rk.Key == "formation:look:1" {
				if rk.Count != 2*koi || rk.Failures != koi {
					return fmt.Errorf("shared key: %d calls, %d failures", rk.Count, rk.Failures)
				}
				return nil
			}
		}
		return fmt.Errorf("no shared step key formation:look:1")
	})
}

// Stopping a run during a launch's window ends the launch as cancelled in
// the same write, with final counts (every koi that had not finished or
// failed is cancelled); the school's later report agrees, and pond saw no
// more calls than koi started.
func TestLaunchStoppedMidWindow(t *testing.T) {
	const koi = 20
	// 1200 behavior seconds at the run's time scale 60: a 20 s window.
	k, p, run := launchRig(t, koi, paramHerd("slow", 1200))
	ctx := context.Background()
	l, err := k.Launch(ctx, "op", LaunchSpec{Formation: "slow", Run: run.ID, Params: map[string]string{"channel_id": pond.ChannelID(1)}})
	if err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 20*time.Second, "a koi of the launch started", func() error {
		if got := k.State().Launch(nil, l.ID); got.Started == 0 {
			return fmt.Errorf("state %s, %d started", got.State, got.Started)
		}
		return nil
	})
	before := k.State().Launch(nil, l.ID)
	if before.State != state.LaunchRunning || before.Started >= koi {
		t.Fatalf("not mid-window: state %s, %d of %d started", before.State, before.Started, koi)
	}
	if _, err := k.SetRunState(ctx, "op", run.ID, wire.Stopped); err != nil {
		t.Fatal(err)
	}
	// At once, not after the window or a poll.
	now := k.State().Launch(nil, l.ID)
	if now.State != state.LaunchCancelled || now.EndedAt.IsZero() {
		t.Fatalf("after the stop: state %s", now.State)
	}
	if sum := now.Finished + now.Failed + now.Cancelled; sum != koi || now.Cancelled < koi-before.Started {
		t.Errorf("counts not final: %d finished + %d failed + %d cancelled of %d (started %d before the stop)",
			now.Finished, now.Failed, now.Cancelled, koi, before.Started)
	}
	if !strings.Contains(now.Outcome, "cancelled: the run stopped") {
		t.Errorf("outcome %q", now.Outcome)
	}
	// The school's report after the stop settles every koi the same way.
	var final *state.Launch
	wiretest.WaitFor(t, 10*time.Second, "the school's settled report", func() error {
		final = k.State().Launch(nil, l.ID)
		if len(final.Shares) != 1 || final.Shares[0].Error != "" {
			return fmt.Errorf("shares %+v", final.Shares)
		}
		if sh := final.Shares[0]; sh.Finished+sh.Failed+sh.Cancelled != koi || sh.Started < before.Started {
			return fmt.Errorf("share %+v", sh)
		}
		return nil
	})
	calls := p.Stats().Requests["conversations.info"]["200"]
	if final.State != state.LaunchCancelled || final.Failed != 0 || calls < uint64(final.Finished) || calls > uint64(final.Started) {
		t.Errorf("state %s; pond saw %d calls; launch: %d started, %d finished, %d failed, %d cancelled",
			final.State, calls, final.Started, final.Finished, final.Failed, final.Cancelled)
	}
	// A launch on a stopped run is refused.
	if _, err := k.Launch(ctx, "op", LaunchSpec{Formation: "slow", Run: run.ID, Params: map[string]string{"channel_id": "C1"}}); err == nil {
		t.Error("launch on a stopped run accepted")
	}
}

// A school cannot claim more koi than it was planned, nor more ended than
// started: over the real poll subject, the share keeps its last good
// counts and says why.
func TestLaunchCountsRefused(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	run := seedRun(t, k, 10)
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	a := newFakeSchool(t, k, "a", 100)
	wiretest.WaitFor(t, 5*time.Second, "10 koi connected", func() error {
		a.poll()
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != 10 {
			return fmt.Errorf("%d connected", v.KoiNow.Connected)
		}
		return nil
	})
	l, err := k.Launch(ctx, "op", LaunchSpec{Formation: "herd", Run: run.ID, Params: map[string]string{"channel_id": "C1"}})
	if err != nil {
		t.Fatal(err)
	}
	var count int
	wiretest.WaitFor(t, 5*time.Second, "the launch planned for a", func() error {
		for _, wl := range a.poll().Launches {
			if wl.ID == l.ID {
				count = wl.Count
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	say := func(ls wire.LaunchStatus) state.Share {
		t.Helper()
		req := a.request()
		ls.Launch, ls.Planned = l.ID, count
		req.Launches = []wire.LaunchStatus{ls}
		data, err := wire.Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.nc.Request(wire.SubjectPoll, data, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return k.State().Launch(nil, l.ID).Shares[0] // the poll is recorded before the reply
	}
	if sh := say(wire.LaunchStatus{Started: 1}); sh.Started != 1 || sh.Error != "" {
		t.Fatalf("a good report: %+v", sh)
	}
	tests := []struct {
		name string
		ls   wire.LaunchStatus
		want string
	}{
		// more started than planned
		{"started", wire.LaunchStatus{Started: count + 1}, fmt.Sprintf("%d started of %d planned", count+1, count)},
		// more accounted for than planned
		{"sum", wire.LaunchStatus{Started: count, Finished: count, Cancelled: 1}, fmt.Sprintf("%d finished + 0 failed + 1 cancelled of %d planned", count, count)},
		// ended without starting
		{"unstarted", wire.LaunchStatus{Started: 0, Failed: 1}, "1 finished or failed but 0 started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sh := say(tt.ls)
			if sh.Started != 1 || sh.Finished != 0 || sh.Failed != 0 || sh.Cancelled != 0 || !strings.Contains(sh.Error, tt.want) {
				t.Errorf("share %+v, want counts kept and %q", sh, tt.want)
			}
			if got := k.State().Launch(nil, l.ID); got.Started != 1 || got.Finished+got.Failed+got.Cancelled != 0 {
				t.Errorf("launch totals moved: %+v", got)
			}
		})
	}
	// Once the launch has ended, a report may settle more koi, never fewer.
	sh := state.Share{School: "s", Count: 5, Started: 2, Finished: 1, Cancelled: 4, Reported: true}
	if err := checkLaunchStatus(&wire.LaunchStatus{Started: 2, Finished: 1}, &sh, true); err == nil {
		t.Error("an ended launch reopened")
	}
	if err := checkLaunchStatus(&wire.LaunchStatus{Started: 2, Finished: 2, Cancelled: 3}, &sh, true); err != nil {
		t.Errorf("a settled report refused: %v", err)
	}
}

// A launch's parameters are bounded at the keeper: more than a formation
// may declare is refused, even for a formation that declares none, since
// every school would refuse a poll reply carrying it.
func TestLaunchTooManyParams(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	run := seedRun(t, k, 1)
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	params := map[string]string{}
	for i := range 300 {
		params[fmt.Sprintf("p%d", i)] = "v"
	}
	_, err := k.Launch(ctx, "op", LaunchSpec{Formation: "herd", Run: run.ID, Params: params})
	if err == nil || !strings.Contains(err.Error(), "300 parameters; at most 32") {
		t.Fatalf("err = %v", err)
	}
	if ls := k.State().LaunchesOfRun(nil, run.ID); len(ls) != 0 {
		t.Errorf("%d launches stored", len(ls))
	}
}

// A run's launches get their own metric keys until they would pass
// maxLaunchKeys; later launches share the formation's keys, so launches
// cannot grow a run's keys without bound.
func TestLaunchKeysBounded(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	run := seedRun(t, k, 1)
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	const perLaunch = 2 // herd: the sequence and its one step
	own := 0
	for i := range maxLaunchKeys/perLaunch + 3 {
		l, err := k.Launch(ctx, "op", LaunchSpec{Formation: "herd", Run: run.ID, At: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		switch l.MetricKey {
		case "formation:herd#" + l.ID:
			own++
			if i >= maxLaunchKeys/perLaunch {
				t.Fatalf("launch %d has its own key past the budget", i)
			}
		case "formation:herd":
		default:
			t.Fatalf("launch %d: key %q", i, l.MetricKey)
		}
	}
	if own != maxLaunchKeys/perLaunch {
		t.Errorf("%d launches with their own keys, want %d", own, maxLaunchKeys/perLaunch)
	}
}

// A launch is planned over the koi schools hold: what a school says it
// has connected counts up to its assignment of the run, and not at all
// without one. A liar claiming a run's koi it was never given took the
// launch's count, and the honest schools' shares with it.
func TestLaunchCountsOnlyKoiASchoolHolds(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	run := seedRun(t, k, 10)
	fm, err := k.PutFormation(ctx, "test", behaviors.File{Name: "all.json", Data: []byte(`{"name": "all", "begin_within_secs": 2, "percent": 100,
  "sequence": {"steps": [{"request": {"type": "api", "method": "chat.postMessage"}}]}}`)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	says := func(id string, connected int) *state.School {
		return &state.School{ID: id, Capacity: 1000, LastSeen: now, Status: &state.SchoolStatus{School: id,
			Runs: []wire.RunStatus{{Run: run.ID, Koi: wire.KoiCounts{Connected: connected}}}}}
	}
	live := []*state.School{says("honest", 6), says("greedy", 1000), says("liar", wire.MaxKoi)}
	l := &state.Launch{ID: "launch-1", Run: run.ID, Formation: fm.Hash}
	err = k.store.Write(ctx, func(tx *state.Txn) error {
		for _, a := range []*state.Assignment{{Run: run.ID, School: "honest", From: 0, To: 6}, {Run: run.ID, School: "greedy", From: 6, To: 10}} {
			if err := tx.PutAssignment(a); err != nil {
				return err
			}
		}
		return k.plan(tx, l, now, live)
	})
	if err != nil {
		t.Fatal(err)
	}
	var shares []string
	for _, sh := range l.Shares {
		shares = append(shares, fmt.Sprintf("%s %d", sh.School, sh.Count))
	}
	t.Logf("planned: %d connected, %d koi, shares %v", l.Connected, l.Count, shares)
	if l.Connected != 10 || l.Count != 10 || len(l.Shares) != 2 || !sameShare(l.Shares[0], state.Share{School: "honest", Count: 6}) ||
		!sameShare(l.Shares[1], state.Share{School: "greedy", Count: 4}) {
		t.Errorf("planned %d connected, %d koi, shares %v; want 10, 10, honest 6 and greedy 4", l.Connected, l.Count, shares)
	}
}
