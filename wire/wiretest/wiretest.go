// Package wiretest is what koipond's tests share to stand up the other end
// of a contract: an embedded nats-server with JetStream in a temporary
// folder and the keeper's NATS roles (the keeper↔school wire), a JSON
// caller for the keeper's HTTP API (the CLI and UI's contract), and one
// poll-until helper to wait for the other side to show a state.
//
// It lives under wire, the lowest koipond package, and imports only wire
// and the NATS libraries, so the tests of any package (school, koi, pond,
// keeper, ui, cmd/koipond, deploy) may use it without an import pointing
// up; like net/http/httptest it is for tests, never for the binary.
package wiretest

import (
	"errors"
	"testing"
	"time"
)

// PollInterval is the shortest pause between two tries of WaitFor's
// condition.
const PollInterval = 10 * time.Millisecond

// WaitFor calls cond until it returns nil; if d passes first, it fails tb
// naming what it waited for and cond's last error. Between two tries it
// pauses PollInterval, or as long as the last try took if that was
// longer, so a costly condition (a scrape, an API call on a busy machine)
// takes at most about half the time. Tests poll for a condition instead
// of sleeping: on a busy machine the condition comes late, not never.
func WaitFor(tb testing.TB, d time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		start := time.Now()
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
			return
		}
		time.Sleep(max(PollInterval, time.Since(start)))
	}
}

// errNotYet is what Until's condition says while it does not hold.
var errNotYet = errors.New("not yet")

// Until is WaitFor for a condition that has nothing to say but yes or no.
func Until(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	WaitFor(tb, d, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// NoneBefore polls count until at and fails tb if a poll that ended more
// than the schools' clock error before at saw anything: nothing a launch
// starts may happen before its instant. A school times a launch by its
// estimate of the keeper's clock, which is off by up to half the round
// trip of the poll it trusts: on a busy machine a few milliseconds. So
// clockErr is called on every poll (for schools sharing the keeper's
// clock, the largest |offset| they estimate now) and a count is judged
// against the largest error seen, which it returns for the test's other
// bounds. A poll ending after at proves nothing (the test itself may run
// late), so it returns how many polls counted.
func NoneBefore(tb testing.TB, at time.Time, what string, count func() uint64, clockErr func() time.Duration) (polls int, worstClockErr time.Duration) {
	tb.Helper()
	for {
		worstClockErr = max(worstClockErr, clockErr())
		got := count()
		early := time.Until(at)
		if early <= 0 {
			return polls, worstClockErr
		}
		polls++
		if got != 0 && early > worstClockErr {
			tb.Errorf("%d %s %v before the instant (the schools' clock estimates were off by up to %v)",
				got, what, early.Round(time.Millisecond), worstClockErr)
			return polls, worstClockErr
		}
		time.Sleep(min(20*time.Millisecond, early))
	}
}
