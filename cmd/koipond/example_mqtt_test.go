package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/examples"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire/wiretest"
)

// The MQTT example (examples/mqtt) against a real broker: Debian's
// mosquitto with a websockets listener, run by the test. 50 koi at time
// scale 60 (a behavior minute lasts 1 s) connect, join their room and
// publish; the broker's own log says what arrived.
//
//   - Over a window of steady koi-minutes, the broker's count of each
//     behavior's packets lies within 4 SE of frequency × koi-minutes.
//   - Paused, the broker has received exactly the frames koipond says it
//     wrote (traffic frames_out), per packet kind as per request key.
//   - No frame is event:invalid or unnamed (event:other); event:publish
//     (the room's fan-out) has latency samples from the payload's sent_at,
//     and every chat message reached every koi of its room.
//   - The broker restarted (no persistence: sessions and subscriptions
//     gone): every koi reconnects, CONNECTs and SUBSCRIBEs again (the
//     broker sees it, and koipond counts on_connect OK) within the bound
//     the reconnect backoff gives.
//   - The global stop: the broker holds no client and no socket within 1 s.
//
// It is load-sized: 50 koi at time scale 60 handle ~500 binary frames a
// second, which a race-instrumented process on a shared machine does not
// keep up with (its fan-out delay reached seconds and its koi fired late,
// so the frequencies measured the machine); make test runs it in its
// non-race pass (see the Makefile), so it is never left out.
func TestMQTTExample(t *testing.T) {
	if raceEnabled {
		t.Skip("load-sized: runs in make test's non-race pass")
	}
	m := startMosquitto(t, false)
	k := mqttKeeper(t)
	schools := []*school.School{testSchool(t, k, "mqtt", 200)}
	base := "http://" + k.HTTPAddr()
	hash := uploadMQTTExample(t, base)

	const n, rooms = 50, 10 // the set puts koi i in rooms/<i mod 10>
	const scale = 60.0
	minute := time.Duration(float64(time.Minute) / scale)
	freq := map[string]float64{"chat": 0.5, "presence": 0.8, "ping": 1}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("koi-%d", i)
	}

	created := time.Now()
	var run struct{ ID string }
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/runs", map[string]any{"name": "mqtt-example", "behavior_set": hash, "koi": n, "ramp": 0,
		"time_scale": scale, "target": map[string]any{"websocket_url": m.URL(), "websocket_subprotocols": []string{"mqtt"}}}, &run)
	t.Cleanup(func() { // runs before the keeper closes
		if t.Failed() {
			logRun(t, m, base, run.ID)
		}
	})
	wiretest.Until(t, 60*time.Second, "every koi connected and subscribed at the broker", func() bool { return m.Subscribed(ids) == n })
	allOn := time.Since(created)
	t.Logf("start: %d koi connected and subscribed at the broker %v after the run was created", n, allOn.Round(time.Millisecond))

	// Frequencies, counted by the broker over a window of steady
	// koi-minutes: whole seconds of the broker's own clock, starting a
	// behavior minute after every koi had subscribed (a koi's minutes
	// start when its schedule does, so koi booted at different moments
	// have different phases, and its behaviors wait for on_connect), so
	// that each koi's minutes, whatever their phase, hold window/minute
	// minutes in expectation.
	first := time.Now().Add(minute).Unix() + 1
	const seconds = 12
	last := first + seconds
	time.Sleep(time.Until(time.Unix(last, 0)))
	wiretest.Until(t, 10*time.Second, "the broker's log past the window", func() bool { return m.LoggedUntil() > last })
	koiMinutes := float64(n) * seconds * float64(time.Second) / float64(minute)
	inWindow := map[string]int{}
	for _, p := range m.Packets() {
		if p.Sec >= first && p.Sec < last {
			inWindow[packetBehavior(p)]++
		}
	}
	for name, f := range freq {
		got := float64(inWindow[name])
		want := f * koiMinutes
		se := math.Sqrt(koiMinutes * f * (1 - f))
		if f == 1 {
			// One call in every minute: only the window's two ends, which
			// cut one minute of each koi into parts a and 1-a, vary (a
			// call in each part with probability a and 1-a: variance
			// 2a(1-a) ≤ 1/2 per koi).
			se = math.Sqrt(float64(n) / 2)
		}
		bound := 4 * se
		t.Logf("frequency: %-8s broker counted %5.0f in %.0f koi-minutes: %.4f per koi-minute (f=%.2f, expected %.0f ± %.1f (1 SE))",
			name, got, koiMinutes, got/koiMinutes, f, want, se)
		if math.Abs(got-want) > bound {
			t.Errorf("%s: the broker counted %.0f in %.0f koi-minutes, more than %.1f from f × koi-minutes = %.0f", name, got, koiMinutes, bound, want)
		}
	}

	// Pause: once nothing is on its way, the broker has received exactly
	// what koipond wrote.
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/control", map[string]string{"state": "paused"}, nil)
	wiretest.Until(t, 10*time.Second, "every koi to pause", func() bool { return koiPaused(schools, run.ID) == n })
	var sum *api.MetricsSummary
	var received map[string]int
	matched := func() bool {
		sum = runMetrics(t, base, run.ID)
		received = brokerReceived(m)
		return uint64(received["total"]) == sum.Traffic.FramesOut
	}
	deadline := time.Now().Add(10 * time.Second)
	for !matched() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	keys := keyMap(sum)
	t.Logf("paused: the broker received %d packets, koipond wrote %d frames; by kind: broker %v", received["total"], sum.Traffic.FramesOut, received)
	if uint64(received["total"]) != sum.Traffic.FramesOut {
		t.Errorf("the broker received %d packets, koipond reports %d frames written", received["total"], sum.Traffic.FramesOut)
	}
	for kind, key := range map[string]string{"connect": "ws:mqtt.connect", "subscribe": "ws:mqtt.subscribe",
		"chat": "ws:chat", "presence": "ws:presence", "ping": "ws:ping"} {
		ks := keys[key]
		// A request canceled by the pause may or may not have been written.
		canceled := ks.Outcomes["canceled"]
		t.Logf("paused: %-18s koipond %d (%v), broker %d", key, ks.Count, ks.Outcomes, received[kind])
		if got := uint64(received[kind]); got > ks.Count || got+canceled < ks.Count {
			t.Errorf("%s: the broker received %d, koipond counted %d (%d canceled by the pause)", key, got, ks.Count, canceled)
		}
	}
	for _, key := range []string{"event:invalid", "event:other"} {
		if ks, ok := keys[key]; ok {
			t.Errorf("%s counted %d frames: every MQTT packet must be classified (outcomes %v)", key, ks.Count, ks.Outcomes)
		}
	}
	// Every chat message fans out to the koi of its room (ten once all
	// have subscribed); the koi count each PUBLISH the broker sent them
	// under event:publish, with its fan-out delay.
	// (The broker logs a delivery just after the PUBLISH it delivers, and
	// the koi's reports trail: wait until both sides agree, or 10 s.)
	var delivered int
	deadline = time.Now().Add(10 * time.Second)
	for {
		delivered, keys = m.Delivered(), keyMap(runMetrics(t, base, run.ID))
		if keys["event:publish"].Count == uint64(delivered) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	pub := keys["event:publish"]
	t.Logf("fan-out: the broker sent %d PUBLISH for %d chat messages (%.2f per message, %d koi per room); the koi counted %d",
		delivered, received["chat"], float64(delivered)/float64(max(received["chat"], 1)), n/rooms, pub.Count)
	if pub.Count != uint64(delivered) || delivered > n/rooms*received["chat"] || delivered < (n/rooms-1)*received["chat"] {
		t.Errorf("event:publish counted %d deliveries; the broker sent %d for %d chat messages in rooms of %d koi", pub.Count, delivered, received["chat"], n/rooms)
	}
	if pub.P50 == nil || pub.P99 == nil {
		t.Errorf("event:publish has no latency samples (fan-out delay from the payload's sent_at): %+v", pub)
	} else {
		t.Logf("fan-out: %d deliveries, delay p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", pub.Count, *pub.P50, *pub.P95, *pub.P99)
	}
	for _, key := range []string{"on_connect", "ws:chat", "ws:ping", "behavior:chat"} {
		if ks := keys[key]; ks.Count == 0 || ks.P50 == nil {
			t.Errorf("%s: no latency samples: %+v", key, ks)
		}
	}
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/control", map[string]string{"state": "running"}, nil)
	wiretest.Until(t, 10*time.Second, "every koi to resume", func() bool { return koiPaused(schools, run.ID) == 0 })

	// The broker restarts, forgetting every session and subscription:
	// each koi must notice, reconnect and run on_connect again. A koi that
	// backs off from attempt 0 (its connection lasted longer than the
	// backoff reset) and whose dials fail while the broker is down for D
	// is sleeping, when the broker returns, an interval that began at
	// s ≤ D and lasts at most 2s + min backoff (each interval at most
	// doubles the previous, which lasted at least half its length): it
	// redials by 3D + 250 ms (capped by the 30 s max backoff), and then
	// needs what a first connection needed.
	okBefore := keys["on_connect"].Outcomes["ok"]
	down := time.Now()
	m.restart()
	up := time.Now()
	gen := m.Generation()
	outage := up.Sub(down)
	bound := min(3*outage+250*time.Millisecond, 30*time.Second) + allOn
	wiretest.Until(t, bound+5*time.Second, "every koi reconnected and subscribed at the new broker", func() bool {
		return m.Subscribed(ids) == n
	})
	back := time.Since(up)
	t.Logf("restart: broker down %v; every koi connected and subscribed again %v after it came back (bound %v)",
		outage.Round(time.Millisecond), back.Round(time.Millisecond), bound.Round(time.Millisecond))
	if back > bound {
		t.Errorf("the koi took %v to come back, over the backoff bound %v", back, bound)
	}
	wiretest.Until(t, 10*time.Second, "koipond to count every koi's on_connect again", func() bool {
		return keyMap(runMetrics(t, base, run.ID))["on_connect"].Outcomes["ok"] >= okBefore+n
	})
	chatsBack := func() int {
		c := 0
		for _, p := range m.Packets() {
			if p.Gen == gen && packetBehavior(p) == "chat" {
				c++
			}
		}
		return c
	}
	wiretest.Until(t, 10*time.Second, "chat messages on the new broker", func() bool { return chatsBack() >= n/4 })

	// Paused again, the whole run: some sends died with the old broker
	// (written to a socket it never read, or acknowledged by nobody), so
	// the broker received at most what koipond sent, and at least what
	// koipond counts as acknowledged (PUBACK, PINGRESP).
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/control", map[string]string{"state": "paused"}, nil)
	wiretest.Until(t, 10*time.Second, "every koi to pause", func() bool { return koiPaused(schools, run.ID) == n })
	sum = settledMetrics(t, base, run.ID)
	keys, received = keyMap(sum), brokerReceived(m)
	// A send the pause caught awaiting its acknowledgement is counted
	// (canceled) in the report after the pause, which can land after the
	// frames have settled: wait, bounded, for the counts to cover what
	// the broker received.
	kinds := map[string]string{"chat": "ws:chat", "presence": "ws:presence", "ping": "ws:ping"}
	covered := func() bool {
		for kind, key := range kinds {
			if uint64(received[kind]) > keys[key].Count {
				return false
			}
		}
		return true
	}
	if waitFrom := time.Now(); !covered() {
		for deadline := waitFrom.Add(10 * time.Second); !covered() && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			sum = runMetrics(t, base, run.ID)
			keys = keyMap(sum)
		}
		t.Logf("whole run: the counts covered what the broker received %v after the frames settled (covered: %v)", time.Since(waitFrom).Round(time.Millisecond), covered())
	}
	t.Logf("whole run: the broker received %v; koipond wrote %d frames", received, sum.Traffic.FramesOut)
	if uint64(received["total"]) > sum.Traffic.FramesOut {
		t.Errorf("whole run: the broker received %d packets, more than the %d frames koipond wrote", received["total"], sum.Traffic.FramesOut)
	}
	for kind, key := range kinds {
		ks := keys[key]
		if got := uint64(received[kind]); got < ks.Outcomes["ok"] && kind != "presence" || got > ks.Count {
			t.Errorf("whole run: the broker received %d for %s; koipond sent %d (%v)", got, key, ks.Count, ks.Outcomes)
		}
	}
	for _, key := range sortedKeys(keys) {
		ks := keys[key]
		t.Logf("  %-22s %6d %v", key, ks.Count, ks.Outcomes)
	}

	// The global stop: the broker holds no client and no socket within 1 s.
	stopAt := time.Now()
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/control", map[string]string{"state": "stopped"}, nil)
	var sockets int
	wiretest.Until(t, 5*time.Second, "the broker to hold no client and no socket", func() bool {
		sockets, _ = m.Sockets()
		return m.Clients() == 0 && sockets == 0
	})
	stopped := time.Since(stopAt)
	t.Logf("stop: the broker holds no client and no socket %v after the API call", stopped.Round(time.Millisecond))
	if stopped > time.Second {
		t.Errorf("the broker still held connections %v after the stop", stopped)
	}
}

// settledMetrics returns a paused run's metrics once the keeper's count
// of frames written holds still over a span longer than a school's
// report interval (1 s, jittered ±10%).
func settledMetrics(t *testing.T, base, run string) *api.MetricsSummary {
	t.Helper()
	sum := runMetrics(t, base, run)
	since := time.Now()
	wiretest.Until(t, 20*time.Second, "the run's metrics to settle", func() bool {
		time.Sleep(250 * time.Millisecond)
		next := runMetrics(t, base, run)
		if next.Traffic.FramesOut != sum.Traffic.FramesOut {
			sum, since = next, time.Now()
		}
		return time.Since(since) > 1500*time.Millisecond
	})
	return sum
}

// A broker that refuses every client (no anonymous access, CONNACK 5):
// each koi's on_connect fails, the socket closes and the koi
// retries with a backoff that grows (a connection whose on_connect failed
// does not reset it), no behavior publishes anything, and the global stop
// still closes every socket at once.
func TestMQTTExampleRefused(t *testing.T) {
	m := startMosquitto(t, true)
	k := mqttKeeper(t)
	testSchool(t, k, "mqtt", 20)
	base := "http://" + k.HTTPAddr()
	hash := uploadMQTTExample(t, base)
	const n = 10
	created := time.Now()
	var run struct{ ID string }
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/runs", map[string]any{"name": "mqtt-refused", "behavior_set": hash, "koi": n, "ramp": 0,
		"time_scale": 60, "target": map[string]any{"websocket_url": m.URL(), "websocket_subprotocols": []string{"mqtt"}}}, &run)
	t.Cleanup(func() {
		if t.Failed() {
			logRun(t, m, base, run.ID)
		}
	})
	failed := func(ks api.KeySummary) uint64 { return ks.Count - ks.Outcomes["ok"] }
	wiretest.Until(t, 30*time.Second, "every koi refused twice", func() bool {
		return m.Refused() >= 2*n && failed(keyMap(runMetrics(t, base, run.ID))["on_connect"]) >= 2*n
	})
	time.Sleep(3 * time.Second)
	span := time.Since(created)
	refused := m.Refused()
	keys := keyMap(runMetrics(t, base, run.ID))
	oc := keys["on_connect"]
	t.Logf("refused: in %v the broker refused %d CONNECTs of %d koi; on_connect %d %v; ws:mqtt.connect %v",
		span.Round(time.Millisecond), refused, n, oc.Count, oc.Outcomes, keys["ws:mqtt.connect"].Outcomes)
	// The broker closes the socket right after its CONNACK: on_connect
	// fails on the return code (error) or, when the close wins the race,
	// on the connection's end (canceled).
	if oc.Outcomes["ok"] != 0 || failed(oc) < uint64(2*n) {
		t.Errorf("on_connect %v: want only failures, at least two per koi", oc.Outcomes)
	}
	// With the backoff growing from 250 ms (each wait random in [d/2, d]),
	// retry i comes at least Σ_{j<i} d_j/2 after the first dial: at most
	// this many attempts fit in the span. A backoff reset after each
	// refusal would make 4 to 8 a second.
	attempts := 1
	for d, waited := 250*time.Millisecond, time.Duration(0); waited+d/2 <= span; d = min(2*d, 30*time.Second) {
		waited += d / 2
		attempts++
	}
	if refused > n*attempts {
		t.Errorf("the broker refused %d CONNECTs in %v: more than %d koi × %d attempts the growing backoff allows", refused, span, n, attempts)
	}
	var published int
	for _, p := range m.Packets() {
		if p.Kind == "PUBLISH" || p.Kind == "PINGREQ" {
			published++
		}
	}
	if published != 0 {
		t.Errorf("the broker received %d PUBLISH/PINGREQ from koi whose on_connect never succeeded", published)
	}
	stopAt := time.Now()
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/control", map[string]string{"state": "stopped"}, nil)
	wiretest.Until(t, 5*time.Second, "the broker to hold no socket", func() bool { s, _ := m.Sockets(); return s == 0 })
	t.Logf("stop: the broker holds no socket %v after the API call", time.Since(stopAt).Round(time.Millisecond))
	if d := time.Since(stopAt); d > time.Second {
		t.Errorf("the broker still held sockets %v after the stop", d)
	}
}

// mqttKeeper is testKeeper with a longer lease: the 2 s one is for
// failover tests, and on a machine this busy a school can miss it and
// pause its koi by itself (fail safe), which these tests do not measure.
func mqttKeeper(t *testing.T) *keeper.Keeper {
	t.Helper()
	k, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Lease: 20 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// uploadMQTTExample stores examples/mqtt as the set "mqtt" and returns
// its hash.
func uploadMQTTExample(t *testing.T, base string) string {
	t.Helper()
	set, err := examples.FS.ReadFile("mqtt/behaviors.json")
	if err != nil {
		t.Fatal(err)
	}
	var bs struct{ Hash string }
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/behavior-sets", map[string]any{"name": "mqtt",
		"files": []map[string]string{{"name": "behaviors.json", "content": string(set)}}}, &bs)
	return bs.Hash
}

// logRun logs what the broker and koipond counted, for a failure's
// diagnosis.
func logRun(t *testing.T, m *mosquitto, base, run string) {
	var sum api.MetricsSummary
	resp, err := http.Get(base + "/api/v1/runs/" + url.PathEscape(run) + "/metrics?window=1h")
	if err == nil {
		err = json.NewDecoder(resp.Body).Decode(&sum)
		resp.Body.Close()
	}
	if err != nil {
		t.Logf("reading the run's metrics: %v", err)
	}
	m.mu.Lock()
	t.Logf("broker: %d clients connected, %d log lines; lines naming clients not understood: %q", len(m.up), m.lines, m.unknown)
	m.mu.Unlock()
	t.Logf("broker received %v; koipond wrote %d frames, read %d", brokerReceived(m), sum.Traffic.FramesOut, sum.Traffic.FramesIn)
	for _, ks := range sum.Keys {
		t.Logf("  %-22s %6d %v", ks.Key, ks.Count, ks.Outcomes)
	}
}

// packetBehavior names the behavior that sent a packet the broker
// received: chat (QoS 1 to rooms/…), presence (QoS 0 to presence/…), ping.
func packetBehavior(p brokerPacket) string {
	switch {
	case p.Kind == "PINGREQ":
		return "ping"
	case p.QoS == 1 && strings.HasPrefix(p.Topic, "rooms/"):
		return "chat"
	case p.QoS == 0 && strings.HasPrefix(p.Topic, "presence/"):
		return "presence"
	}
	return "other"
}

// brokerReceived counts what the broker received by kind (connect,
// subscribe, chat, presence, ping, other) and in total.
func brokerReceived(m *mosquitto) map[string]int {
	out := map[string]int{}
	m.mu.Lock()
	for _, c := range m.connects {
		out["connect"] += c
	}
	for _, c := range m.subs {
		out["subscribe"] += c
	}
	m.mu.Unlock()
	for _, p := range m.Packets() {
		out[packetBehavior(p)]++
	}
	total := 0
	for _, c := range out {
		total += c
	}
	out["total"] = total
	return out
}

// runMetrics reads a run's metrics since it began.
func runMetrics(t *testing.T, base, run string) *api.MetricsSummary {
	t.Helper()
	var sum api.MetricsSummary
	wiretest.API{Base: base + "/api/v1"}.Call(t, "GET", "/runs/"+url.PathEscape(run)+"/metrics?window=1h", nil, &sum)
	return &sum
}

func keyMap(sum *api.MetricsSummary) map[string]api.KeySummary {
	out := map[string]api.KeySummary{}
	for _, ks := range sum.Keys {
		out[ks.Key] = ks
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
