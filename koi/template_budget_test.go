package koi_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/pond"
)

// bombSet holds the template bombs that used to kill schools: they pass
// validation (their counts come from variables) and each fails its step
// with the byte budget at run time. One starts from a real reply of pond.
var bombSet = `{"behaviors": {
  "repeat-bomb": {"frequency": 1, "steps": [{"pre_actions": [
    "{{ set \"n\" 10000 }}",
    "{{ $x := repeat (get \"n\") (repeat (get \"n\") (repeat (get \"n\") \"x\")) }}"]}]},
  "print-doubling": {"frequency": 1, "steps": [{
    "request": {"type": "api", "method": "conversations.list"},
    "post_actions": ["{{ $s := toJson . }}` + strings.Repeat(`{{ $s = print $s $s }}`, 30) + `"]}]},
  "list-doubling": {"frequency": 1, "steps": [{"pre_actions": [
    "{{ $l := list 1 }}` + strings.Repeat(`{{ $l = list $l $l }}`, 40) + `{{ $l }}"]}]}
}}`

// Koi running the template bombs against pond all fail with the budget
// error and the process heap stays under 100 MB throughout. (Before the
// budget, the first repeat bomb asked for a terabyte and the process died.)
func TestTemplateBombsKeepHeapSmall(t *testing.T) {
	p, err := pond.Open(context.Background(), pond.Config{Users: 100, Channels: 10, DisableRateLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	set := parseSet(t, bombSet)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: p.URL() + "/api"})

	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() { // samples the heap while the koi run
		defer sampler.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	const koiN, rounds = 50, 10
	var wg sync.WaitGroup
	var failures, other atomic.Int64
	var firstOther atomic.Value
	for i := range koiN {
		k := rt.New(behaviors.Identity{Index: i, Token: pond.Token(i)}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				for _, b := range set.Behaviors {
					err := k.RunSequence(context.Background(), b.Sequence, nil)
					if errors.Is(err, behaviors.ErrLimit) && strings.Contains(err.Error(), "template budget") {
						failures.Add(1)
					} else {
						other.Add(1)
						firstOther.CompareAndSwap(nil, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()

	want := int64(koiN * rounds * len(set.Behaviors))
	if failures.Load() != want {
		t.Errorf("%d of %d runs failed with the budget; first other outcome: %v", failures.Load(), want, firstOther.Load())
	}
	if got := peak.Load(); got > 100<<20 {
		t.Errorf("heap peaked at %d MB", got>>20)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d koi × %d rounds × %d bombs: heap peak %.1f MB (sampled every 2 ms), HeapSys %.1f MB, %s",
		koiN, rounds, len(set.Behaviors), float64(peak.Load())/1e6, float64(ms.HeapSys)/1e6, rss())
}

// rss reads the process's resident set size and its peak from /proc.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

// The templates of one request share a budget too: forty arguments (or
// JSON leaves) of 60 kB each are each within a template's limits, but the
// request would hold 2.4 MB.
func TestRequestTemplatesShareABudget(t *testing.T) {
	p, err := pond.Open(context.Background(), pond.Config{Users: 10, Channels: 3, DisableRateLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	var args, leaves []string
	for i := range 40 {
		args = append(args, fmt.Sprintf(`"a%d": "{{ repeat 60000 \"x\" }}"`, i))
		leaves = append(leaves, `"{{ repeat 60000 \"x\" }}"`)
	}
	set := parseSet(t, `{"behaviors": {
	  "args": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test", "args": {`+strings.Join(args, ", ")+`}}}]},
	  "json": {"frequency": 1, "steps": [{"request": {"type": "http", "method": "POST", "url": "`+p.URL()+`/api/auth.test", "json": [`+strings.Join(leaves, ", ")+`]}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: p.URL() + "/api"})
	k := rt.New(behaviors.Identity{Index: 1, Token: pond.Token(1)}, 1)
	for name, want := range map[string]string{"args": "template budget: the request's arguments would produce", "json": "template budget: a JSON body would produce"} {
		err := k.RunSequence(context.Background(), set.Behavior(name).Sequence, nil)
		if !errors.Is(err, behaviors.ErrLimit) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := p.Stats().Requests["auth.test"]; len(got) != 0 {
		t.Errorf("pond saw the oversized requests: %v", got)
	}
}
