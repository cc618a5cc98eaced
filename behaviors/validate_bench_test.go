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

// setOfSize generates a behavior set of about size bytes made of
// behaviors, each a frequency and a one-step api request with templated
// arguments, written one behavior a line as people and the warehouse write
// them.
func setOfSize(size int) ([]byte, int) {
	var b strings.Builder
	b.Grow(size + 1024)
	b.WriteString("{\n\"behaviors\": {\n")
	n := 0
	for b.Len() < size {
		if n > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  "b%07d": {"frequency": 0.01, "steps": [{"pre_actions": ["{{ set \"c\" (randomChannel false) }}"], "request": {"type": "api", "method": "conversations.history", "args": {"channel": "{{ (get \"c\").ID }}", "limit": "4"}}}]}`, n)
		n++
	}
	b.WriteString("\n}\n}\n")
	return []byte(b.String()), n
}

func benchmarkValidate(b *testing.B, size int) {
	data, n := setOfSize(size)
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

// BenchmarkValidate2MB: about 10,000 behaviors in 2 MB; the target is ≤ 1 s.
func BenchmarkValidate2MB(b *testing.B) { benchmarkValidate(b, 2<<20) }

// BenchmarkValidate16MB: the largest file accepted; the target is ≤ 10 s.
func BenchmarkValidate16MB(b *testing.B) { benchmarkValidate(b, MaxFileSize-64) }
