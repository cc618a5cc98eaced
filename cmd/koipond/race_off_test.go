//go:build !race

package main

// raceEnabled reports whether the race detector is on: load-sized tests
// then leave their run to the non-race pass of make test.
const raceEnabled = false
