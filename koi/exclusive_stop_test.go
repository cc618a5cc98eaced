package koi_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// A stop while exclusive firings wait behind a running one (on many koi,
// some just resumed from a pause with a fresh queue) ends every run at
// once: Run returns without the bubble's clock moving, so no deferred
// firing starts after the stop nor holds Run for its pause.
func TestExclusiveStopWithPendingFirings(t *testing.T) {
	srv := newChatServer(t)
	set := exclusiveSet(t, "1", 100_000) // two group firings a minute, each run 100 s
	synctest.Test(t, func(t *testing.T) {
		rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.apiBase(), TimeScale: 1200,
			HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const n = 8
		kois := make([]*koi.Koi, n)
		done := make(chan struct{}, n)
		for i := range n {
			kois[i] = rt.New(behaviors.Identity{Index: i, Token: tokenOf(i)}, 1)
			go func() { kois[i].Run(ctx); done <- struct{}{} }()
		}
		time.Sleep(10 * rt.Minute())
		for _, k := range kois[:n/2] { // a pause and resume: a new queue under a new context
			k.Pause()
			k.Resume()
		}
		time.Sleep(rt.Minute() / 3)
		var dropped int64
		for _, k := range kois {
			dropped += k.Stats().ExclusiveDropped
		}
		if dropped == 0 {
			t.Fatalf("no firing dropped: the queues never filled")
		}
		synctest.Wait()
		before := len(srv.callsOf("a.start")) + len(srv.callsOf("b.start"))
		behaviorsRun := func() (n int64) {
			for _, k := range kois {
				n += k.Stats().Behaviors
			}
			return n
		}
		ran := behaviorsRun()
		stopAt := time.Now()
		cancel()
		for range n {
			<-done
		}
		if took := time.Since(stopAt); took > 0 {
			t.Errorf("Run returned %v (bubble time) after the stop: something waited", took)
		}
		synctest.Wait()
		if after := len(srv.callsOf("a.start")) + len(srv.callsOf("b.start")); after != before {
			t.Errorf("%d group runs started after the stop", after-before)
		}
		if got := behaviorsRun(); got != ran {
			t.Errorf("%d behaviors ran after the stop: firings waiting at the stop were started", got-ran)
		}
		if r := runningBehaviors(); r != 0 {
			t.Errorf("%d behavior goroutines outlive Run", r)
		}
	})
}
