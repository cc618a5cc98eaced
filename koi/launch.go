package koi

import (
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// LaunchHooks are told how one koi's part in a launch goes. Either may be
// nil; both are called from the koi's goroutine and must not block.
type LaunchHooks struct {
	// Began is called when the sequence really begins (after the delay),
	// with the wall time it began.
	Began func(time.Time)
	// Ended is called exactly once when the koi's part is over: OK when
	// every step was done, Halted when the sequence halted itself on
	// purpose, Canceled when a pause or stop aborted it (before or after
	// it began), else the failing step's outcome.
	Ended func(metrics.Outcome)
}

// LaunchTracked runs a formation's sequence on this koi after delay (wall
// time), with the launch parameters readable by get, measured under key
// (the whole sequence) and key:N (step N), and tells hooks when it begins
// and how it ends. Pause or stop aborts it.
func (k *Koi) LaunchTracked(key string, seq *behaviors.Sequence, params map[string]string, delay time.Duration, hooks LaunchHooks) {
	ended := func(o metrics.Outcome) {
		if hooks.Ended != nil {
			hooks.Ended(o)
		}
	}
	k.mu.Lock()
	if k.paused || k.actCtx == nil || k.actCtx.Err() != nil {
		k.mu.Unlock()
		k.rt.series(key).Count(metrics.Canceled)
		ended(metrics.Canceled)
		return
	}
	actx := k.actCtx
	k.seqs.Add(1)
	k.mu.Unlock()
	go func() {
		defer k.seqs.Done()
		if !sleepCtx(actx, delay) {
			k.rt.series(key).Count(metrics.Canceled)
			ended(metrics.Canceled)
			return
		}
		env := &behaviors.Env{Store: k.store, Params: params}
		start := time.Now()
		if hooks.Began != nil {
			hooks.Began(start)
		}
		err := k.execute(actx, seq, env, key)
		o := outcomeOf(actx, err)
		record(k.rt.series(key), time.Since(start), o)
		ended(o)
	}()
}
