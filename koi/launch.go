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
// time), with the launch parameters readable by get, and tells hooks when
// it begins and how it ends. Pause or stop aborts it. It is measured under
// the formation's shared keys, "formation:<name>" (the whole sequence)
// and "formation:<name>:N" (step N), which thresholds and comparisons
// name, and, when key is another one (the launch's own, e.g.
// "formation:<name>#<launch id>"), under key and key:N as well.
func (k *Koi) LaunchTracked(name, key string, seq *behaviors.Sequence, params map[string]string, delay time.Duration, hooks LaunchHooks) {
	shared := "formation:" + name
	if key == shared {
		key = ""
	}
	ended := func(o metrics.Outcome) {
		if hooks.Ended != nil {
			hooks.Ended(o)
		}
	}
	// count records a sequence's outcome under the shared key and the
	// launch's own; a part cancelled before it began has no latency.
	count := func(took time.Duration, o metrics.Outcome, began bool, err error) {
		for _, sk := range []string{shared, key} {
			switch {
			case sk == "":
			case began:
				record(k.rt.series(sk), took, o, err)
			default:
				k.rt.series(sk).Count(o)
			}
		}
	}
	k.mu.Lock()
	if k.paused || k.actCtx == nil || k.actCtx.Err() != nil {
		k.mu.Unlock()
		count(0, metrics.Canceled, false, nil)
		ended(metrics.Canceled)
		return
	}
	actx := k.actCtx
	k.seqs.Add(1)
	k.mu.Unlock()
	go func() {
		defer k.seqs.Done()
		if !sleepCtx(actx, delay) {
			count(0, metrics.Canceled, false, nil)
			ended(metrics.Canceled)
			return
		}
		env := &behaviors.Env{Store: k.store, Params: params}
		start := time.Now()
		if hooks.Began != nil {
			hooks.Began(start)
		}
		err := k.execute(actx, seq, env, shared, key)
		o := outcomeOf(actx, err)
		count(time.Since(start), o, true, err)
		ended(o)
	}()
}
