package main

import (
	"os"
	"runtime"
	"strings"
	"sync"
)

// heapSampling is the Go runtime's sampling of heap allocations, which
// feeds the heap profile and nothing else. By default the runtime records
// the call stack of one allocation in every 512 KiB, for the life of the
// process, in a table that only grows: 1.4 MiB of hash index mapped at
// the first sample, its pages touched as new stacks arrive, and a record
// for each stack that is never freed. In a keeper serving a busy run
// that was a slow climb (about half of its anonymous memory's growth in
// a 30-minute soak, some 250 KiB per 10 minutes) for a profile that only
// --pprof can read.
// So the binary turns sampling off as main starts, and a command turns it
// back on, at the rate the process started with, when it serves
// /debug/pprof/. GODEBUG=memprofilerate=N, set by the operator, is left
// as it is.
var heapSampling struct {
	mu sync.Mutex
	// stopped is the rate the process started with while main has it
	// turned off, 0 otherwise (not turned off, or back on).
	stopped int
}

// stopHeapSampling turns the heap sampling off for the whole process
// unless GODEBUG sets memprofilerate. main calls it first, before any
// command runs: the runtime's documentation asks for the rate to be set
// once, as early as possible.
func stopHeapSampling() {
	if godebugSets(os.Getenv("GODEBUG"), "memprofilerate") {
		return
	}
	heapSampling.mu.Lock()
	defer heapSampling.mu.Unlock()
	if runtime.MemProfileRate == 0 {
		return
	}
	heapSampling.stopped, runtime.MemProfileRate = runtime.MemProfileRate, 0
}

// sampleHeapForProfiles turns the heap sampling back on, at the rate the
// process started with, for a command that serves /debug/pprof/ (its
// heap profile then holds what was allocated from here on). Nothing
// changes when main did not turn it off.
func sampleHeapForProfiles() {
	heapSampling.mu.Lock()
	defer heapSampling.mu.Unlock()
	if heapSampling.stopped != 0 {
		runtime.MemProfileRate, heapSampling.stopped = heapSampling.stopped, 0
	}
}

// godebugSets reports whether the GODEBUG value v sets the setting name
// (comma-separated name=value pairs; the last one wins in the runtime,
// but any one of them means the operator chose).
func godebugSets(v, name string) bool {
	for kv := range strings.SplitSeq(v, ",") {
		if k, _, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == name {
			return true
		}
	}
	return false
}
