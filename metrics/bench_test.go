package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// latencies is a fixed, realistic spread (log-normal around 20 ms) so the
// benchmarks touch many sketch bins, not one.
var latencies = func() []time.Duration {
	r := rand.New(rand.NewPCG(1, 2))
	l := make([]time.Duration, 4096)
	for i := range l {
		l[i] = time.Duration(math.Exp(math.Log(float64(20*time.Millisecond)) + r.NormFloat64()))
	}
	return l
}()

// BenchmarkObserve is the speed target: one latency sample on a cached
// Series from one goroutine, ≤ 100 ns/op and 0 allocs/op.
func BenchmarkObserve(b *testing.B) {
	var r Recorder
	s := r.Series("api:conversations.history")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Observe(latencies[i&4095], OK)
		i++
	}
}

// BenchmarkRecorderObserve adds the key lookup (Recorder.Observe).
func BenchmarkRecorderObserve(b *testing.B) {
	var r Recorder
	key := Key("api", "conversations.history")
	r.Series(key)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Observe(key, latencies[i&4095], OK)
		i++
	}
}

// BenchmarkObserveParallel records into one Series from GOMAXPROCS
// goroutines and from 1000 per P (thousands of koi on few cores).
func BenchmarkObserveParallel(b *testing.B) {
	for _, perP := range []int{1, 1000} {
		b.Run(fmt.Sprintf("goroutines=%dxP", perP), func(b *testing.B) {
			var r Recorder
			s := r.Series("api:conversations.history")
			b.ReportAllocs()
			b.SetParallelism(perP)
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(4096)
				for pb.Next() {
					s.Observe(latencies[i&4095], OK)
					i++
				}
			})
		})
	}
}

// benchSnapshot is a school's interval: 50 keys, 2,000 samples each.
func benchSnapshot() *Snapshot {
	var r Recorder
	for k := range 50 {
		s := r.Series(fmt.Sprintf("api:method.%02d", k))
		for i := range 2000 {
			o := OK
			if i%100 == 0 {
				o = ServerError
			}
			s.Observe(latencies[(i*7+k)&4095]*time.Duration(1+k%5), o)
		}
	}
	return r.Snapshot()
}

// BenchmarkSnapshotEncode measures MarshalBinary of a 50-key interval.
func BenchmarkSnapshotEncode(b *testing.B) {
	s := benchSnapshot()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		data, err := s.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		n = len(data)
	}
	b.ReportMetric(float64(n), "bytes/snapshot")
}

// BenchmarkSnapshotDecodeMerge is the keeper's side: decode a 50-key
// report and merge it into the running total.
func BenchmarkSnapshotDecodeMerge(b *testing.B) {
	data, err := benchSnapshot().MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	var total Snapshot
	b.ReportAllocs()
	for b.Loop() {
		var s Snapshot
		if err := s.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
		if err := total.Merge(&s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot measures Recorder.Snapshot over 50 busy keys.
func BenchmarkSnapshot(b *testing.B) {
	var r Recorder
	var series []*Series
	for k := range 50 {
		series = append(series, r.Series(fmt.Sprintf("api:method.%02d", k)))
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, s := range series {
			for i := range 100 {
				s.Observe(latencies[i], OK)
			}
		}
		b.StartTimer()
		r.Snapshot()
	}
}

// BenchmarkObserveFailure is the per-failure recording cost: a failure
// recorded as before reasons existed (Observe), with a reason seen before
// (ObserveReason: the target's usual few reasons), and with a reason that
// needs escaping each time.
func BenchmarkObserveFailure(b *testing.B) {
	reasons := []string{"not_authed", "channel_not_found", "http 503", "timeout"}
	b.Run("observe", func(b *testing.B) {
		var r Recorder
		s := r.Series("api:chat.postMessage")
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.Observe(latencies[i&4095], Error)
			i++
		}
	})
	b.Run("reason", func(b *testing.B) {
		var r Recorder
		s := r.Series("api:chat.postMessage")
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.ObserveReason(latencies[i&4095], Error, reasons[i&3], `{"ok":false}`)
			i++
		}
	})
	b.Run("reason-escaped", func(b *testing.B) {
		var r Recorder
		s := r.Series("api:chat.postMessage")
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.ObserveReason(latencies[i&4095], Error, "bad\nreason", `{"ok":false}`)
			i++
		}
	})
}
