package main

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire/wiretest"
)

// settledRequests waits until no request is on its way to pond (its
// count holds still over two polls 100 ms apart; a request sent before a
// pause can take that long on a busy machine) and returns the count.
func settledRequests(t *testing.T, p *pond.Server, d time.Duration) uint64 {
	t.Helper()
	last := p.Stats().RequestsTotal
	still := 0
	wiretest.Until(t, d, "requests to pond to stop", func() bool {
		time.Sleep(100 * time.Millisecond)
		now := p.Stats().RequestsTotal
		if now == last {
			still++
		} else {
			still = 0
		}
		last = now
		return still >= 2
	})
	return last
}

// koiPaused counts the paused koi of run on the schools.
func koiPaused(schools []*school.School, run string) int {
	n := 0
	for _, s := range schools {
		for _, rs := range s.Status().Runs {
			if rs.Run == run {
				n += rs.Koi.Paused
			}
		}
	}
	return n
}

// timerLateness arms n timers for at, each on its own goroutine as a
// launch's koi do, and returns a func that waits for them and returns how
// late the latest fired: the margin a start-time bound needs on a busy
// machine beyond its window.
func timerLateness(at time.Time, n int) func() time.Duration {
	late := make(chan time.Duration, n)
	for range n {
		go func() {
			<-time.NewTimer(time.Until(at)).C
			late <- time.Since(at)
		}()
	}
	return func() time.Duration {
		var worst time.Duration
		for range n {
			worst = max(worst, <-late)
		}
		return worst
	}
}

// clockError is how far the schools' estimates of the keeper's clock are
// off now: they share its clock here, so any offset they estimate is
// error.
func clockError(schools []*school.School) time.Duration {
	var worst time.Duration
	for _, s := range schools {
		worst = max(worst, time.Duration(math.Abs(s.Status().ClockOffsetMS)*float64(time.Millisecond)))
	}
	return worst
}

// The whole system in one process over real sockets: embedded NATS with
// JetStream, the keeper, pond and two schools. A behavior set and an
// always-on run created over the API connect koi at pond; pause, resume
// and stop through the API take effect at pond; a formation launched at
// now+3 s starts exactly round(percent × connected) koi; when a school
// dies its koi move to the other within lease + poll.
func TestSystemEndToEnd(t *testing.T) {
	ctx := context.Background()
	k, err := api.Open(ctx, keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	p, err := pond.Open(ctx, pond.Config{Users: 500, Channels: 10, DisableRateLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var schools []*school.School
	for _, id := range []string{"a", "b"} {
		s, err := school.Open(ctx, school.Config{ID: id, NATSURL: k.NATSURL(), NATSNKeySeedFile: k.SchoolNKeyFile(), Capacity: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		schools = append(schools, s)
	}
	api := wiretest.API{Base: "http://" + k.HTTPAddr() + "/api/v1"}

	set := `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
	  "behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`
	var bs struct{ Hash string }
	api.Call(t, "POST", "/behavior-sets", map[string]any{"name": "e2e", "files": []map[string]string{{"name": "e2e.json", "content": set}}}, &bs)
	form := `{"name": "herd", "begin_within_secs": 2, "percent": 10,
	  "sequence": {"steps": [{"request": {"type": "api", "method": "users.list", "args": {"limit": "1"}}}]}}`
	var fm struct{ Hash string }
	api.Call(t, "POST", "/formations", map[string]any{"file": map[string]string{"name": "herd.json", "content": form}}, &fm)

	const n = 60
	var run struct{ ID string }
	api.Call(t, "POST", "/runs", map[string]any{"name": "always-on", "behavior_set": bs.Hash, "koi": n, "ramp": 0,
		"time_scale": 60, "target": map[string]string{"api_base": p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"}}, &run)
	wiretest.Until(t, 20*time.Second, "60 koi connected at pond", func() bool { return p.Stats().WebsocketsOpen == n })
	for _, s := range schools {
		if st := s.Status(); st.WebsocketsOpen == 0 {
			t.Errorf("school %s runs none of the koi: the run was not spread", st.ID)
		}
	}
	wiretest.Until(t, 10*time.Second, "behaviors reaching pond", func() bool { return p.Stats().Requests["auth.test"]["200"] > n })

	// Pause through the API: once every school has applied it and the
	// requests already on their way have landed, pond hears nothing;
	// websockets stay.
	paused := time.Now()
	api.Call(t, "POST", "/control", map[string]string{"state": "paused"}, nil)
	wiretest.Until(t, 10*time.Second, "every koi to pause", func() bool { return koiPaused(schools, run.ID) == n })
	t.Logf("every koi paused %v after the API call", time.Since(paused).Round(time.Millisecond))
	before := settledRequests(t, p, 5*time.Second)
	time.Sleep(time.Second)
	if d := p.Stats().RequestsTotal - before; d != 0 {
		t.Errorf("%d requests reached pond while paused", d)
	}
	if ws := p.Stats().WebsocketsOpen; ws != n {
		t.Errorf("%d websockets while paused, want %d", ws, n)
	}
	api.Call(t, "POST", "/control", map[string]string{"state": "running"}, nil)
	wiretest.Until(t, 10*time.Second, "requests after resume", func() bool { return p.Stats().RequestsTotal > before+n/2 })

	// A formation at now+3 s: exactly round(10% × 60) = 6 koi.
	at := time.Now().Add(3 * time.Second)
	lateness := timerLateness(at, 12)
	var l struct{ ID string }
	api.Call(t, "POST", "/launches", map[string]any{"formation": fm.Hash, "run": run.ID, "at": at.Format(time.RFC3339Nano)}, &l)
	formationRequests := func() uint64 { return p.Stats().Requests["users.list"]["200"] }
	polls, clockErr := wiretest.NoneBefore(t, at, "formation requests", formationRequests, func() time.Duration { return clockError(schools) })
	if polls == 0 {
		t.Logf("no poll of pond ended before the launch instant (the test ran late); the koi's own start times below still bound it")
	}
	wiretest.Until(t, 10*time.Second, "6 formation requests", func() bool { return formationRequests() >= 6 })
	var launch struct {
		Count, Started, Connected int
		State                     string
	}
	wiretest.Until(t, 5*time.Second, "the launch to report its koi", func() bool {
		api.Call(t, "GET", "/launches/"+l.ID, nil, &launch)
		return launch.Started == 6
	})
	if launch.Count != 6 || launch.Connected != n {
		t.Errorf("launch = %+v, want count 6 of %d connected", launch, n)
	}
	if got := formationRequests(); got != 6 {
		t.Errorf("%d formation requests, want exactly 6 (every started koi once)", got)
	}
	var spread struct {
		Start      time.Time
		FirstStart time.Time `json:"first_start"`
		LastStart  time.Time `json:"last_start"`
	}
	wiretest.Until(t, 5*time.Second, "the launch's real start times", func() bool {
		api.Call(t, "GET", "/launches/"+l.ID, nil, &spread)
		return !spread.FirstStart.IsZero()
	})
	// 2 s window at time scale 60: every koi within 33 ms of the instant,
	// give or take how late this process ran timers around the instant
	// and how far each school's keeper-clock estimate is off (the schools
	// share the keeper's clock here, so their offset is the error).
	late := lateness()
	clockErr = max(clockErr, clockError(schools)) // the worst estimate from before the launch to its report
	first, spreadOf := spread.FirstStart.Sub(spread.Start), spread.LastStart.Sub(spread.FirstStart)
	t.Logf("launch: first start %v from the instant, spread %v; timers ran up to %v late, clock estimate off by up to %v",
		first, spreadOf, late, clockErr)
	if first < -10*time.Millisecond-clockErr || first > 60*time.Millisecond+late+clockErr {
		t.Errorf("first koi started %v from the launch instant (timers %v late, clock error %v)", first, late, clockErr)
	}
	if spreadOf < 0 || spreadOf > 100*time.Millisecond+late+2*clockErr {
		t.Errorf("start spread %v, want within the 33 ms scaled window (timers %v late, clock error %v)", spreadOf, late, clockErr)
	}

	// Failover: school b disappears; its koi come back on a within lease + poll.
	schools[1].Close()
	wiretest.Until(t, 2*time.Second, "school b's koi gone", func() bool { return p.Stats().WebsocketsOpen < n })
	gone := time.Now()
	// Pond may still count a few of b's sockets whose close it has not
	// read yet, so the koi are back when school a holds them all.
	wiretest.Until(t, 20*time.Second, "all 60 koi back on school a", func() bool {
		return schools[0].Status().WebsocketsOpen == n && p.Stats().WebsocketsOpen == n
	})
	t.Logf("failover: %d koi back %v after school b stopped (lease 2s, poll 200ms)", n, time.Since(gone).Round(time.Millisecond))

	// The emergency stop through the API: every websocket closes.
	stopAt := time.Now()
	api.Call(t, "POST", "/control", map[string]string{"state": "stopped"}, nil)
	wiretest.Until(t, 2*time.Second, "every websocket closed", func() bool { return p.Stats().WebsocketsOpen == 0 })
	t.Logf("stop: all websockets closed %v after the API call", time.Since(stopAt).Round(time.Millisecond))
	var ctl struct {
		StopCompleteMS int64 `json:"stop_complete_ms"`
		State          string
	}
	wiretest.Until(t, 5*time.Second, "the keeper to confirm the stop", func() bool {
		api.Call(t, "GET", "/control", nil, &ctl)
		return ctl.StopCompleteMS > 0
	})
	t.Logf("stop confirmed by every school in %d ms", ctl.StopCompleteMS)
}
