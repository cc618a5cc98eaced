package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
)

// apiCall sends JSON to the keeper's API and decodes the reply into out.
func apiCall(t *testing.T, base, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+"/api/v1"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole system in one process over real sockets: embedded NATS with
// JetStream, the keeper, pond and two schools. A behavior set and an
// always-on run created over the API connect koi at pond; pause, resume
// and stop through the API take effect at pond; a formation launched at
// now+3 s starts exactly round(percent × connected) koi; when a school
// dies its koi move to the other within lease + poll.
func TestSystemEndToEnd(t *testing.T) {
	ctx := context.Background()
	k, err := keeper.Open(ctx, keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
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
	base := "http://" + k.HTTPAddr()

	set := `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
	  "behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`
	var bs struct{ Hash string }
	apiCall(t, base, "POST", "/behavior-sets", map[string]any{"name": "e2e", "files": []map[string]string{{"name": "e2e.json", "content": set}}}, &bs)
	form := `{"name": "herd", "begin_within_secs": 2, "percent": 10,
	  "sequence": {"steps": [{"request": {"type": "api", "method": "users.list", "args": {"limit": "1"}}}]}}`
	var fm struct{ Hash string }
	apiCall(t, base, "POST", "/formations", map[string]any{"file": map[string]string{"name": "herd.json", "content": form}}, &fm)

	const n = 60
	var run struct{ ID string }
	apiCall(t, base, "POST", "/runs", map[string]any{"name": "always-on", "behavior_set": bs.Hash, "koi": n, "ramp": 0,
		"time_scale": 60, "target": map[string]string{"api_base": p.URL() + "/api", "token": "xoxp-pond-{{.Index}}"}}, &run)
	waitUntil(t, 20*time.Second, "60 koi connected at pond", func() bool { return p.Stats().WebsocketsOpen == n })
	for _, s := range schools {
		if st := s.Status(); st.WebsocketsOpen == 0 {
			t.Errorf("school %s runs none of the koi: the run was not spread", st.ID)
		}
	}
	waitUntil(t, 5*time.Second, "behaviors reaching pond", func() bool { return p.Stats().Requests["auth.test"]["200"] > n })

	// Pause through the API: pond hears nothing; websockets stay.
	apiCall(t, base, "POST", "/control", map[string]string{"state": "paused"}, nil)
	time.Sleep(300 * time.Millisecond)
	before := p.Stats().RequestsTotal
	time.Sleep(time.Second)
	if d := p.Stats().RequestsTotal - before; d != 0 {
		t.Errorf("%d requests reached pond while paused", d)
	}
	if ws := p.Stats().WebsocketsOpen; ws != n {
		t.Errorf("%d websockets while paused, want %d", ws, n)
	}
	apiCall(t, base, "POST", "/control", map[string]string{"state": "running"}, nil)
	waitUntil(t, 5*time.Second, "requests after resume", func() bool { return p.Stats().RequestsTotal > before+n/2 })

	// A formation at now+3 s: exactly round(10% × 60) = 6 koi.
	at := time.Now().Add(3 * time.Second)
	var l struct{ ID string }
	apiCall(t, base, "POST", "/launches", map[string]any{"formation": fm.Hash, "run": run.ID, "at": at.Format(time.RFC3339Nano)}, &l)
	time.Sleep(time.Until(at) - 150*time.Millisecond)
	if got := p.Stats().Requests["users.list"]["200"]; got != 0 {
		t.Errorf("%d formation requests before the launch instant", got)
	}
	waitUntil(t, 10*time.Second, "6 formation requests", func() bool { return p.Stats().Requests["users.list"]["200"] == 6 })
	time.Sleep(500 * time.Millisecond)
	if got := p.Stats().Requests["users.list"]["200"]; got != 6 {
		t.Errorf("%d koi took part, want exactly 6", got)
	}
	var launch struct {
		Count, Started, Connected int
		State                     string
	}
	waitUntil(t, 5*time.Second, "the launch to report its koi", func() bool {
		apiCall(t, base, "GET", "/launches/"+l.ID, nil, &launch)
		return launch.Started == 6
	})
	if launch.Count != 6 || launch.Connected != n {
		t.Errorf("launch = %+v, want count 6 of %d connected", launch, n)
	}
	var spread struct {
		Start      time.Time
		FirstStart time.Time `json:"first_start"`
		LastStart  time.Time `json:"last_start"`
	}
	waitUntil(t, 3*time.Second, "the launch's real start times", func() bool {
		apiCall(t, base, "GET", "/launches/"+l.ID, nil, &spread)
		return !spread.FirstStart.IsZero()
	})
	// 2 s window at time scale 60: every koi within 33 ms of the instant.
	if d := spread.FirstStart.Sub(spread.Start); d < -10*time.Millisecond || d > 60*time.Millisecond {
		t.Errorf("first koi started %v from the launch instant", d)
	}
	if d := spread.LastStart.Sub(spread.FirstStart); d < 0 || d > 100*time.Millisecond {
		t.Errorf("start spread %v, want within the 33 ms scaled window", d)
	}
	t.Logf("launch: first start %v from the instant, spread %v", spread.FirstStart.Sub(spread.Start), spread.LastStart.Sub(spread.FirstStart))

	// Failover: school b disappears; its koi come back on a within lease + poll.
	schools[1].Close()
	waitUntil(t, 2*time.Second, "school b's koi gone", func() bool { return p.Stats().WebsocketsOpen < n })
	gone := time.Now()
	waitUntil(t, 10*time.Second, "all 60 koi back on school a", func() bool { return p.Stats().WebsocketsOpen == n })
	t.Logf("failover: %d koi back %v after school b stopped (lease 2s, poll 200ms)", n, time.Since(gone).Round(time.Millisecond))
	if st := schools[0].Status(); st.WebsocketsOpen != n {
		t.Errorf("school a holds %d websockets, want all %d", st.WebsocketsOpen, n)
	}

	// The emergency stop through the API: every websocket closes.
	stopAt := time.Now()
	apiCall(t, base, "POST", "/control", map[string]string{"state": "stopped"}, nil)
	waitUntil(t, 2*time.Second, "every websocket closed", func() bool { return p.Stats().WebsocketsOpen == 0 })
	t.Logf("stop: all websockets closed %v after the API call", time.Since(stopAt).Round(time.Millisecond))
	var ctl struct {
		StopCompleteMS int64 `json:"stop_complete_ms"`
		State          string
	}
	waitUntil(t, 5*time.Second, "the keeper to confirm the stop", func() bool {
		apiCall(t, base, "GET", "/control", nil, &ctl)
		return ctl.StopCompleteMS > 0
	})
	t.Logf("stop confirmed by every school in %d ms", ctl.StopCompleteMS)
}
