package school

import (
	"testing"
	"time"
)

// A poll waits long enough for a slow keeper, never past the lease.
func TestPollTimeout(t *testing.T) {
	const s = time.Second
	for _, c := range []struct {
		name                           string
		interval, lease, left, slowest time.Duration
		want                           time.Duration
	}{
		// Fresh lease, nothing observed yet: half the lease.
		{"half the lease", s, 10 * s, 10 * s, 0, 5 * s},
		// A long poll interval (the keeper's choice) is waited for whole.
		{"poll interval", 6 * s, 10 * s, 10 * s, 0, 6 * s},
		// A keeper answering in 2 s gets 8 s (4×) while the lease allows.
		{"slow replies", s, 10 * s, 10 * s, 2 * s, 8 * s},
		// Never past what the lease has left.
		{"capped by the lease", s, 10 * s, 3 * s, 2 * s, 3 * s},
		// A lease about to end still gets a short try.
		{"lease nearly over", s, 10 * s, 10 * time.Millisecond, 0, minPollTimeout},
	} {
		if got := pollTimeout(c.interval, c.lease, c.left, c.slowest); got != c.want {
			t.Errorf("%s: pollTimeout(%v, %v, %v, %v) = %v, want %v", c.name, c.interval, c.lease, c.left, c.slowest, got, c.want)
		}
	}
}
