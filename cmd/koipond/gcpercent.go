package main

import (
	"fmt"
	"os"
	"runtime/debug"

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
// was given, else leaves GOGC's when the environment sets it (the runtime
// read it at start), else sets the flag's default; /metrics says which
// is in force. It returns how to put back the target before (the command
// restores it when it returns: the tests run commands in one process),
// or an error for a value out of range, before anything is changed.
func applyGCPercent(fs *pflag.FlagSet, pct int) (restore func(), err error) {
	given := fs.Changed("gc-percent")
	if given && (pct < minGCPercent || pct > maxGCPercent) {
		return nil, fmt.Errorf("--gc-percent %d: must be %d–%d (how many percent the heap may grow over its live data before a collection)", pct, minGCPercent, maxGCPercent)
	}
	if env, ok := os.LookupEnv("GOGC"); !given && ok && env != "" {
		return func() {}, nil
	}
	prev := debug.SetGCPercent(pct)
	return func() { debug.SetGCPercent(prev) }, nil
}
