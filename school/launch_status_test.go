package school

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/koipond/koipond/wire"
)

// A school remembering more launches than a poll request holds (a burst
// of short launches, each kept 10 minutes past its window) reports
// wire.MaxLaunchesPerMessage of them: every launch still running, then
// the newest settled ones. The request stays within bounds; before, the
// keeper refused it whole and the school's lease ran out.
func TestLaunchStatusesWithinARequest(t *testing.T) {
	s := &School{launches: map[string]*launchState{}}
	base := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	const settled, running = 1500, 20
	for i := range settled {
		st := &launchState{l: wire.Launch{ID: fmt.Sprintf("done-%04d", i), Count: 1, Start: base.Add(time.Duration(i) * time.Second)}}
		st.finished.Store(1)
		s.launches[st.l.ID] = st
	}
	for i := range running { // the oldest of all: kept for being unsettled
		st := &launchState{l: wire.Launch{ID: fmt.Sprintf("open-%02d", i), Count: 5, Start: base.Add(-time.Hour)}}
		st.started.Add(2)
		s.launches[st.l.ID] = st
	}
	got := s.launchStatusesLocked()
	if len(got) != wire.MaxLaunchesPerMessage {
		t.Fatalf("%d statuses, want %d", len(got), wire.MaxLaunchesPerMessage)
	}
	if err := (&wire.PollRequest{School: "s", Launches: got}).Validate(); err != nil {
		t.Fatalf("the request does not validate: %v", err)
	}
	seen := map[string]bool{}
	for _, st := range got {
		seen[st.Launch] = true
	}
	for i := range running {
		if !seen[fmt.Sprintf("open-%02d", i)] {
			t.Errorf("running launch open-%02d left out", i)
		}
	}
	// The newest settled launches fill the rest.
	for i := settled - (wire.MaxLaunchesPerMessage - running); i < settled; i++ {
		if !seen[fmt.Sprintf("done-%04d", i)] {
			t.Errorf("settled launch done-%04d (among the newest) left out", i)
		}
	}
	if small := (&School{launches: map[string]*launchState{"a": {l: wire.Launch{ID: "a", Count: 1}}}}).launchStatusesLocked(); len(small) != 1 || small[0].Launch != "a" {
		t.Errorf("one launch: %+v", small)
	}
}

// A refusal or launch error of any length fits a poll request.
func TestWireTextFitsARequest(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", wire.MaxText), strings.Repeat("x", wire.MaxText+1), strings.Repeat("é", wire.MaxText)} {
		got := wireText(s)
		if len(s) <= wire.MaxText && got != s {
			t.Errorf("wireText changed a %d-byte text", len(s))
		}
		if len(got) > wire.MaxText || !utf8.ValidString(got) {
			t.Errorf("wireText of %d bytes: %d bytes, valid UTF-8 %v", len(s), len(got), utf8.ValidString(got))
		}
		req := &wire.PollRequest{School: "s", Runs: []wire.RunStatus{{Run: "r", Refused: got}}, Launches: []wire.LaunchStatus{{Launch: "l", Error: got}}}
		if err := req.Validate(); err != nil {
			t.Errorf("wireText of %d bytes: %v", len(s), err)
		}
	}
}
