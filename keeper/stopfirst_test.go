package keeper

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// largeFile builds a valid behavior set (set) or formation (!set) of
// about size bytes whose every step calls an api method: large files
// parse slowly. tag makes its content, and so its hash, the test's own.
func largeFile(tag string, size int, set bool) []byte {
	var b strings.Builder
	step := `{"pre_actions": ["{{ set \"c\" (randomChannel false) }}"], "request": {"type": "api", "method": "conversations.info", "args": {"channel": "{{ (get \"c\").ID }}"}}}`
	if set {
		fmt.Fprintf(&b, `{"doc": %q, "behaviors": {`, tag)
	} else {
		fmt.Fprintf(&b, `{"name": "large", "doc": %q, "begin_within_secs": 2, "percent": 10, "sequence": {"steps": [`, tag)
	}
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		if set {
			fmt.Fprintf(&b, `"b%06d": {"frequency": 0.01, "steps": [%s]}`, i, step)
		} else {
			b.WriteString(step)
		}
	}
	if set {
		b.WriteString("}}\n")
	} else {
		b.WriteString("]}}\n")
	}
	return []byte(b.String())
}

// parseTime is the shortest of three parses of data: what one parse
// costs on this machine now.
func parseTime(t *testing.T, data []byte, set bool) time.Duration {
	t.Helper()
	best := time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		if set {
			if s, diags := behaviors.Parse(behaviors.File{Name: "large.json", Data: data}); s == nil {
				t.Fatal(diags)
			}
		} else if f, diags := formations.Parse(behaviors.File{Name: "large.json", Data: data}); f == nil {
			t.Fatal(diags)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// stopDuring starts n calls of do at once, stops everything while they
// parse their file (one parse takes parse), and returns how long the
// stop took; every call must succeed.
func stopDuring(t *testing.T, k *Keeper, parse time.Duration, n int, do func() error) time.Duration {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- do() })
	}
	time.Sleep(parse / 4) // they are parsing
	start := time.Now()
	if _, err := k.SetSwitch(context.Background(), "ops", wire.Stopped); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("%.300v", err)
		}
	}
	return took
}

// A global stop is never kept waiting while run creations parse a large
// behavior set: they parse it before their write (once between them),
// so the stop waits for writes of a few milliseconds, not for parses of
// a second each (4 creations kept it waiting 4.5 s).
func TestStopIsNotKeptWaitingByRunCreations(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	parse := parseTime(t, largeFile(t.Name(), 1<<20, true), true)
	for i, target := range []state.Target{{APIBase: "http://127.0.0.1:9/api"}, {}} {
		if _, err := k.SetSwitch(ctx, "ops", wire.Running); err != nil {
			t.Fatal(err)
		}
		tag := fmt.Sprintf("%s-%d", t.Name(), i)
		data := largeFile(tag, 1<<20, true) // a set no call has parsed yet
		if _, err := k.PutBehaviorSet(ctx, "test", tag, []behaviors.File{{Name: "large.json", Data: data}}); err != nil {
			t.Fatalf("%.300v", err)
		}
		took := stopDuring(t, k, parse, 4, func() error {
			_, err := k.CreateRun(ctx, "test", RunSpec{Name: "r", BehaviorSet: tag, Koi: 1, Target: target})
			if target.APIBase == "" { // refused: the set sends api requests
				if e, ok := err.(*Error); ok && e.Field == "target.api_base" {
					return nil
				}
				return fmt.Errorf("without api_base: %v, want refused for target.api_base", err)
			}
			return err
		})
		t.Logf("api_base %q: one parse of the %d KiB set takes %v; the stop took %v while 4 run creations parsed it", target.APIBase, len(data)>>10, parse, took)
		if took > parse/2 {
			t.Errorf("api_base %q: the stop took %v, more than half a parse (%v): it waited for them", target.APIBase, took, parse)
		}
	}
}

// A global stop is never kept waiting while launches parse a large
// formation (2 launches kept it waiting 4 s).
func TestStopIsNotKeptWaitingByLaunches(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	run := seedRun(t, k, 10)
	data := largeFile(t.Name(), 1<<20, false)
	parse := parseTime(t, data, false)
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "large.json", Data: data}); err != nil {
		t.Fatalf("%.300v", err)
	}
	took := stopDuring(t, k, parse, 2, func() error {
		_, err := k.Launch(ctx, "test", LaunchSpec{Formation: "large", Run: run.ID})
		if e, ok := err.(*Error); ok && strings.Contains(e.Message, "everything is stopped") {
			return nil // the stop came first: refused, as it should be
		}
		return err
	})
	t.Logf("one parse of the %d KiB formation takes %v; the stop took %v while 2 launches parsed it", len(data)>>10, parse, took)
	if took > parse/2 {
		t.Errorf("the stop took %v, more than half a parse (%v): it waited for them", took, parse)
	}
}
