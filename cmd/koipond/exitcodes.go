package main

import "errors"

// The exit codes every command keeps to, so CI jobs can tell a regression
// of the target from an outage of koipond itself.
const (
	// exitOK: the command did what was asked and every check passed.
	exitOK = 0
	// exitFailed: thresholds failed, a guardrail acted, a validator found
	// problems, or the command failed for another reason.
	exitFailed = 1
	// exitUsage: the command line was wrong (unknown command or flag,
	// missing argument).
	exitUsage = 2
	// exitUnavailable: koipond itself could not be reached or answered
	// that it is not available (keeper down, NATS down, 502/503/504).
	exitUnavailable = 3
)

// errUnavailable marks (wrapped) errors that mean koipond itself is not
// available; main maps them to exitUnavailable.
var errUnavailable = errors.New("koipond unavailable")
