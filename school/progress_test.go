package school_test

import (
	"fmt"
	"testing"
	"time"
)

// untilReached waits until count() reaches want for as long as the count
// keeps growing: it fails only once the count has not moved for stall. On
// a busy machine koi connect and behaviors run late, not never, so a fixed
// deadline measures the machine; a count that stops short of want is a
// failure however quiet the machine is. state, if not nil, adds what the
// failure message should show.
func untilReached(tb testing.TB, stall time.Duration, what string, want int, count func() int, state func() string) {
	tb.Helper()
	start := time.Now()
	last, moved := count(), time.Now()
	for last < want {
		time.Sleep(10 * time.Millisecond)
		switch n := count(); {
		case n > last:
			last, moved = n, time.Now()
		case time.Since(moved) > stall:
			msg := fmt.Sprintf("waiting for %s: stuck at %d of %d for %v (%v in all)", what, n, want, stall, time.Since(start).Round(time.Millisecond))
			if state != nil {
				msg += "; " + state()
			}
			tb.Fatal(msg)
		}
	}
	if d := time.Since(start); d > time.Second {
		tb.Logf("%s: %d reached after %v", what, want, d.Round(time.Millisecond))
	}
}
