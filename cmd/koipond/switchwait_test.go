package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats.go"
)

// stuckSchool polls the keeper as a school whose koi never stop (one koi
// running, one websocket open, whatever the switch says): what a hung
// school looks like to the keeper. It polls until the test ends.
func stuckSchool(t *testing.T, k *keeper.Keeper, id string) {
	t.Helper()
	opts := []nats.Option{nats.Name(id), nats.CustomInboxPrefix(wire.SchoolInboxPrefix)}
	o, err := nats.NkeyOptionFromSeed(k.SchoolNKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(k.NATSURL(), append(opts, o)...)
	if err != nil {
		t.Fatal(err)
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(quit); <-done; nc.Close() })
	go func() {
		defer close(done)
		for {
			data, err := wire.Encode(&wire.PollRequest{School: id, Software: "stuck", Clock: time.Now(), KoiRunning: 1, WebsocketsOpen: 1})
			if err == nil {
				_, _ = nc.Request(wire.SubjectPoll, data, time.Second)
			}
			select {
			case <-quit:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// liveSchools counts the schools the keeper calls live.
func liveSchools(t *testing.T, k *keeper.Keeper) int {
	t.Helper()
	var schools []struct{ Health string }
	wiretest.API{Base: "http://" + k.HTTPAddr() + "/api/v1"}.Call(t, "GET", "/schools", nil, &schools)
	n := 0
	for _, s := range schools {
		if s.Health == "live" {
			n++
		}
	}
	return n
}

// tickFile writes tickSet to a file for behaviors upload.
func tickFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tick.json")
	if err := os.WriteFile(f, []byte(tickSet), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

var confirmedLine = regexp.MustCompile(`(?m)^    (school-[12]) +\+(\d+) ms$`)

// TestSwitchWait: pause --wait and stop --wait block until both schools
// confirmed and print each with its delay; a school that never stops its
// koi is named late and the stop exits 1.
func TestSwitchWait(t *testing.T) {
	k := testKeeper(t)
	p := testPond(t, 50, 5, nil)
	testSchool(t, k, "school-1", 10)
	testSchool(t, k, "school-2", 10)
	url := "--keeper=http://" + k.HTTPAddr()
	wiretest.Until(t, 30*time.Second, "both schools live", func() bool { return liveSchools(t, k) == 2 })
	if _, errOut, code := runCmd(t, "behaviors", "upload", url, "--name", "tick", tickFile(t)); code != 0 {
		t.Fatalf("upload: %s", errOut)
	}
	if _, errOut, code := runCmd(t, "run", "create", url, "--name", "bg", "--behaviors", "tick", "--api-base", p.URL()+"/api",
		"--token-template", "xoxp-pond-{{.Index}}", "--koi", "16", "--ramp", "0", "--time-scale", "60"); code != 0 {
		t.Fatalf("run create: %s", errOut)
	}
	wiretest.Until(t, 30*time.Second, "16 koi connected at pond", func() bool { return p.Stats().WebsocketsOpen == 16 })

	out, errOut, code := runCmd(t, "pause", url, "--wait")
	t.Logf("pause --wait (exit %d):\n%s", code, out)
	if code != 0 || len(confirmedLine.FindAllString(out, -1)) != 2 || !strings.Contains(out, "confirmed by 2 of 2 schools") {
		t.Errorf("pause --wait: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCmd(t, "resume", url, "--wait", "--json")
	var res switchWaitResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || len(res.Confirmed) != 2 || len(res.Late) != 0 || res.State != wire.Running {
		t.Errorf("resume --wait --json: exit %d %v\n%s%s", code, err, out, errOut)
	}

	stuckSchool(t, k, "school-stuck")
	wiretest.Until(t, 30*time.Second, "the stuck school live", func() bool { return liveSchools(t, k) == 3 })
	start := time.Now()
	out, errOut, code = runCmd(t, "stop", url, "--wait", "--timeout", "3s")
	took := time.Since(start)
	t.Logf("stop --wait with a stuck school (exit %d):\n%s", code, out)
	if code != exitFailed || !strings.Contains(out, "late: school-stuck (no confirmation within 3s)") ||
		!strings.Contains(out, "confirmed by 2 of 3 schools") {
		t.Errorf("stop --wait with a stuck school: exit %d\n%s%s", code, out, errOut)
	}
	for _, m := range confirmedLine.FindAllStringSubmatch(out, -1) {
		if ms, _ := strconv.Atoi(m[2]); time.Duration(ms)*time.Millisecond > took {
			t.Errorf("%s confirmed %d ms after the stop, but the command took %v", m[1], ms, took)
		}
	}
	if n := len(confirmedLine.FindAllString(out, -1)); n != 2 {
		t.Errorf("%d confirmations listed, want 2:\n%s", n, out)
	}
	if p.Stats().WebsocketsOpen != 0 {
		t.Errorf("stop --wait returned with %d websockets open at pond", p.Stats().WebsocketsOpen)
	}
}
