package koi

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// waitGoroutines waits up to 5 s for the goroutine count to be ≤ n.
func waitGoroutines(t *testing.T, n int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}

// Jobs one after another reuse one worker; jobs at once each get one (none
// waits behind another); the workers end when the last koi drops.
func TestWorkersReuseRunAtOnceAndEnd(t *testing.T) {
	base := runtime.NumGoroutine()
	w := newWorkers()
	w.hold()
	for range 100 {
		done := make(chan struct{})
		w.run(func() { close(done) })
		<-done
		time.Sleep(time.Millisecond) // the worker goes back to waiting for a job
	}
	if n := w.started.Load(); n > 50 {
		t.Errorf("%d workers started for 100 jobs one after another, want few (a kept worker takes the next)", n)
	}
	const n = 50
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	for range n {
		w.run(func() { started.Done(); <-release })
	}
	ok := make(chan struct{})
	go func() { started.Wait(); close(ok) }()
	select {
	case <-ok:
	case <-time.After(10 * time.Second):
		t.Fatal("50 blocking jobs did not all start: a job waited behind another")
	}
	close(release)
	w.drop()
	if g := waitGoroutines(t, base); g > base {
		t.Errorf("%d goroutines after the last koi dropped, want %d: workers kept", g, base)
	}
}
