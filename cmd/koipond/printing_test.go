package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/keeper/contract"
)

// A run stop some schools have not confirmed yet names no one as late
// until the keeper says so ("late:" with nothing after it read as an
// error); once it does, the late schools are named.
func TestPrintRunStopLate(t *testing.T) {
	for _, c := range []struct {
		late []string
		want string
	}{
		// confirmations still coming in: nobody is late yet
		{nil, "  stop: 1 of 2 schools confirmed\n"},
		// the lease passed: the keeper named the late school
		{[]string{"school-b"}, "  stop: 1 of 2 schools confirmed; late: school-b\n"},
	} {
		v := map[string]any{"id": "run-1", "state": "stopped", "stop": contract.StopTrack{
			Expected: []string{"school-a", "school-b"}, Acks: map[string]time.Time{"school-a": time.Now()}, Late: c.late}}
		raw, _ := json.Marshal(v)
		var b strings.Builder
		if err := printRun(&clientFlags{}, &b, raw); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(b.String(), c.want) {
			t.Errorf("late %v:\n%s\nwant the last line %q", c.late, b.String(), c.want)
		}
	}
}

func TestStopConfirmedWording(t *testing.T) {
	for n, want := range map[int]string{
		0: "stop complete: no school had koi",
		1: "stop confirmed by the 1 school in 12 ms",
		3: "stop confirmed by all 3 schools in 12 ms",
	} {
		if got := stopConfirmed(n, 12); got != want {
			t.Errorf("%d schools: %q, want %q", n, got, want)
		}
	}
	if got := plural(1, "step", "steps") + ", " + plural(int64(2), "part", "parts"); got != "1 step, 2 parts" {
		t.Errorf("plural: %q", got)
	}
}

// A long formation key no longer pads every row of the text report to
// its length: the key column is capped, cut in the middle.
func TestReportKeyColumnCapped(t *testing.T) {
	long := "formation:Viewing and reacting to a message in Announcement Channel:step 2"
	rep := &api.Report{Run: "run-1", Keys: []contract.ReportKey{{Key: "api:auth.test", Count: 1}, {Key: long, Count: 1}}}
	var b strings.Builder
	printReport(&b, rep)
	lines := strings.Split(b.String(), "\n")
	var table []string
	for _, l := range lines {
		if strings.Contains(l, "COUNT") || strings.Contains(l, "api:auth.test") || strings.Contains(l, "formation:") {
			table = append(table, l)
		}
	}
	if len(table) != 3 {
		t.Fatalf("report table:\n%s", b.String())
	}
	for _, l := range table {
		if n := len([]rune(l)); n > reportKeyWidth+80 {
			t.Errorf("a row of %d columns:\n%s", n, l)
		}
	}
	if !strings.Contains(b.String(), "formation:Viewing a…ement Channel:step 2") {
		t.Errorf("the long key is not cut in the middle:\n%s", b.String())
	}
}

// run list shows "–" connected for a stopped run every school confirmed,
// and what is left while the stop is still being confirmed.
func TestConnectedCell(t *testing.T) {
	stopped := func(connected int, track *contract.StopTrack) *runView {
		v := &runView{}
		v.Run = api.Run{State: api.RunStopped, Stop: track}
		v.KoiNow.Connected = connected
		return v
	}
	running := &runView{}
	running.Run = api.Run{State: "running"}
	running.KoiNow.Connected = 7
	for _, c := range []struct {
		v    *runView
		want string
	}{
		// a confirmed stop: a stale count from a school's last poll is history
		{stopped(1, &contract.StopTrack{CompleteAt: time.Now()}), "–"},
		// nothing left
		{stopped(0, &contract.StopTrack{}), "–"},
		// the stop is still being confirmed and koi are still connected
		{stopped(3, &contract.StopTrack{}), "3"},
		// a running run shows its koi
		{running, "7"},
	} {
		if got := connectedCell(c.v); got != c.want {
			t.Errorf("connectedCell(%s, %d connected) = %q, want %q", c.v.State, c.v.KoiNow.Connected, got, c.want)
		}
	}
}
