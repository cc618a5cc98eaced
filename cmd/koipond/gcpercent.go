package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"

	"github.com/spf13/pflag"
)

// defaultKeeperGCPercent is the keeper's Go collector target (GOGC)
// unless the flag or the environment says otherwise. Go's default, 100,
// lets the heap grow to twice its live data before a collection. The
// keeper's live heap is small (a few MiB beside the history it keeps
// outside the heap) and its CPU is low (about half a percent of a core
// with 5,000 busy koi reporting), so collecting twice as often costs
// little and keeps its memory lower and steadier: a third less heap at
// the top of each cycle, and less of it left as free pages between
// cycles. Long-lived Go servers make the same trade (Prometheus since
// 2.53 defaults to 50).
const defaultKeeperGCPercent = 50

// gcPercentFlag defines --gc-percent on fs for a long-lived server.
func gcPercentFlag(fs *pflag.FlagSet, def int) *int {
	return fs.Int("gc-percent", def, fmt.Sprintf("Go collector target: the heap may grow this many `percent` over its live data before a collection, %d–%d; lower trades CPU for memory. Without the flag, GOGC in the environment wins over the default", minGCPercent, maxGCPercent))
}

const (
	minGCPercent = 10
	maxGCPercent = 1000
)

// applyGCPercent sets the collector's target from --gc-percent when it
// was given, else from GOGC when the environment sets it (the runtime
// read it at start: nothing to do), else the flag's default. It returns
// the target in force, where it came from and how to put back the one
// before (the command restores it when it returns: the tests run
// commands in one process), or an error for a value out of range, before
// anything is changed.
func applyGCPercent(fs *pflag.FlagSet, pct int) (int, string, func(), error) {
	given := fs.Changed("gc-percent")
	if given && (pct < minGCPercent || pct > maxGCPercent) {
		return 0, "", nil, fmt.Errorf("--gc-percent %d: must be %d–%d (how many percent the heap may grow over its live data before a collection)", pct, minGCPercent, maxGCPercent)
	}
	from := "default"
	if given {
		from = "--gc-percent"
	} else if env, ok := os.LookupEnv("GOGC"); ok && env != "" {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		cur := -1 // unknown to this Go version
		if s[0].Value.Kind() == metrics.KindUint64 {
			cur = int(s[0].Value.Uint64())
		}
		return cur, "GOGC=" + env, func() {}, nil
	}
	prev := debug.SetGCPercent(pct)
	return pct, from, func() { debug.SetGCPercent(prev) }, nil
}
