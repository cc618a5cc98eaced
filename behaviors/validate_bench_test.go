package behaviors

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the user+system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// setOf generates a behavior set of n behaviors, or as many as fill size
// bytes when n is 0: each a frequency and a one-step api request with
// templated arguments, one behavior a line, as people and the warehouse
// write them (about 200 bytes a behavior).
func setOf(n, size int) ([]byte, int) {
	var b strings.Builder
	b.Grow(max(size, n*220) + 1024)
	b.WriteString("{\n\"behaviors\": {\n")
	i := 0
	for ; (n > 0 && i < n) || (n == 0 && b.Len() < size-300); i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  "b%05d": {"frequency": 0.01, "steps": [{"pre_actions": ["{{ set \"c\" (randomChannel false) }}"], "request": {"type": "api", "method": "conversations.info", "args": {"channel": "{{ (get \"c\").ID }}"}}}]}`, i)
	}
	b.WriteString("\n}\n}\n")
	return []byte(b.String()), i
}

func benchmarkValidate(b *testing.B, data []byte, n int) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		set, diags := Parse(File{Name: "big.json", Data: data})
		if set == nil || len(set.Behaviors) != n {
			b.Fatalf("not loaded: %v", diags)
		}
	}
	b.ReportMetric(float64(n), "behaviors")
	// CPU time of the whole process (GC included) per validation: on a
	// shared machine wall time mostly measures the neighbours.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkValidate2MB: 10,000 behaviors in at most 2 MiB; the target is
// ≤ 1 s.
func BenchmarkValidate2MB(b *testing.B) {
	data, n := setOf(10_000, 0)
	if len(data) > 2<<20 {
		b.Fatalf("the generated file has %d bytes", len(data))
	}
	benchmarkValidate(b, data, n)
}

// BenchmarkValidate16MB: a file of the largest size accepted; the target is
// ≤ 10 s.
func BenchmarkValidate16MB(b *testing.B) {
	data, n := setOf(0, MaxFileSize)
	if len(data) > MaxFileSize || len(data) < MaxFileSize-1024 {
		b.Fatalf("the generated file has %d bytes", len(data))
	}
	benchmarkValidate(b, data, n)
}
