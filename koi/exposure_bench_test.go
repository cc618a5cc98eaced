package koi

import (
	"fmt"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// BenchmarkExposureFold is the exposure accounting of one koi over one
// school metrics interval (1 s of wall time), what FoldExposure costs per
// koi and report: at time scale 60 the span lies in one behavior hour, at
// 3,600 it crosses one, at 10^6 it is 11.6 behavior days.
func BenchmarkExposureFold(b *testing.B) {
	set, diags := behaviors.Parse(behaviors.File{Name: "b.json", Data: []byte(`{"behaviors": {"a": {"frequency": 0.1, "steps": [{"request": {"type": "api", "method": "a"}}]}}}`)})
	if set == nil {
		b.Fatal(diags)
	}
	for _, scale := range []float64{60, 3600, 1e6} {
		b.Run(fmt.Sprintf("scale=%g", scale), func(b *testing.B) {
			rt, err := NewRuntime(RuntimeConfig{Set: set, APIBase: "http://127.0.0.1:1/api", TimeScale: scale})
			if err != nil {
				b.Fatal(err)
			}
			origin := rt.start.Add(1234567 * time.Microsecond)
			var e metrics.Exposure
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// The 1 s spans of a koi's first minute of wall time (at
				// 10^6, behavior time past 292 years overflows a Duration).
				from := time.Duration(i%60) * time.Second
				rt.accrue(&e, origin, 1.3, from, from+time.Second)
				i++
			}
		})
	}
}
