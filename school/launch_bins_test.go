package school

import (
	"testing"
	"time"

	"github.com/koipond/koipond/wire"
)

// Each real start lands in the bin of its offset into the window: before
// the window (a launch that arrived late) in the first, past it in the
// last, and all in the first when the window is empty.
func TestLaunchStartBins(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	window := 64 * time.Second // one second a bin
	tests := []struct {
		name   string
		window time.Duration
		start  time.Duration // after at
		bin    int
	}{
		{"at the instant", window, 0, 0},
		{"before the window", window, -5 * time.Second, 0},
		{"inside bin 0", window, 999 * time.Millisecond, 0},
		{"start of bin 1", window, time.Second, 1},
		{"middle", window, 31*time.Second + 500*time.Millisecond, 31},
		{"last bin", window, 63*time.Second + 999*time.Millisecond, wire.LaunchOffsetBins - 1},
		{"at the window's end", window, window, wire.LaunchOffsetBins - 1},
		{"long after", window, time.Hour, wire.LaunchOffsetBins - 1},
		{"no window", 0, 3 * time.Second, 0},
	}
	for _, tt := range tests {
		ls := &launchState{at: at, window: tt.window}
		if st := ls.status(); st.Offsets != nil {
			t.Fatalf("%s: offsets %v before any start", tt.name, st.Offsets)
		}
		ls.started.Add(1)
		ls.bin(at.Add(tt.start))
		st := ls.status()
		if len(st.Offsets) != wire.LaunchOffsetBins || st.Offsets[tt.bin] != 1 || sumBins(st.Offsets) != 1 {
			t.Errorf("%s: offsets %v, want the start in bin %d", tt.name, st.Offsets, tt.bin)
		}
		if err := (&wire.PollRequest{School: "s", Launches: []wire.LaunchStatus{withID(st)}}).Validate(); err != nil {
			t.Errorf("%s: the report does not validate: %v", tt.name, err)
		}
	}
}

func sumBins(b []uint32) (n uint32) {
	for _, x := range b {
		n += x
	}
	return n
}

func withID(st wire.LaunchStatus) wire.LaunchStatus {
	st.Launch = "l1"
	return st
}
