package behaviors

import (
	"math"
	"testing"
	"time"
)

// Delay and Pick take any float: NaN and infinities give a pause among the
// quantiles (the lowest for NaN) and never index outside them.
func TestDelayAndPickOddDraws(t *testing.T) {
	st := &Step{DelayQuantiles: []time.Duration{time.Second, 2 * time.Second, 6 * time.Second},
		Choose: []Branch{{Weight: 0.5, Sequence: &Sequence{}}}}
	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{{math.NaN(), time.Second}, {math.Inf(-1), time.Second}, {math.Inf(1), 6 * time.Second}} {
		if got := st.Delay(tc.u); got != tc.want {
			t.Errorf("Delay(%v) = %v, want %v", tc.u, got, tc.want)
		}
	}
	if st.Pick(math.NaN()) != nil {
		t.Errorf("Pick(NaN) picked a branch")
	}
}
