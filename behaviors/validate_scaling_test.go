package behaviors

import (
	"testing"
	"time"
)

// Validation time grows linearly with the file: eight times the behaviors
// cost about eight times the CPU, not sixty-four (positions were once found
// by rescanning the file from its start for every template, and a 2 MB
// file took a minute). The ratio of two sizes measured on the same machine
// holds on a busy one too; the smallest of three tries is taken for each.
func TestValidationScalesLinearly(t *testing.T) {
	cost := func(n int) time.Duration {
		data, got := setOf(n, 0)
		best := time.Duration(1 << 62)
		for range 3 {
			cpu0 := cpuTime()
			set, diags := Parse(File{Name: "big.json", Data: data})
			if set == nil || len(set.Behaviors) != got {
				t.Fatalf("%d behaviors not loaded: %v", n, diags)
			}
			best = min(best, cpuTime()-cpu0)
		}
		return best
	}
	small, large := cost(500), cost(4000)
	ratio := float64(large) / float64(max(small, time.Microsecond))
	t.Logf("500 behaviors: %v CPU; 4,000: %v CPU; ratio %.1f (linear 8, quadratic 64)", small, large, ratio)
	if ratio > 20 {
		t.Errorf("8× the behaviors cost %.1f× the CPU: validation is not linear", ratio)
	}
}
