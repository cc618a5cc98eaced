package behaviors

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// When an event reaches many koi at once and their on_event actions wait
// on the shared workspace's lock, the program clones no more executors
// than MaxExecutors (each is a copy of the whole namespace): the rest
// wait for a slot, and every execution still runs.
func TestExecutorsBoundedUnderFanOut(t *testing.T) {
	p := NewProgram()
	tx, err := p.compile(`{{ addUserIDs (list "U1" "U2") }}`, "on_event")
	if err != nil {
		t.Fatal(err)
	}
	ws := NewWorkspace(0)
	const koi = 200
	ws.mu.Lock() // a long holder of the workspace lock
	var wg sync.WaitGroup
	errs := make(chan error, koi)
	for i := range koi {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := &Env{Store: NewSharedStore(Identity{Index: i}, ws)}
			if err := p.Run(context.Background(), env, tx, nil); err != nil {
				errs <- err
			}
		}()
	}
	// Every execution has either taken an executor and waits for the
	// lock, or waits for a slot.
	deadline := time.Now().Add(30 * time.Second)
	for blockedIn("TestExecutorsBoundedUnderFanOut") < koi {
		if time.Now().After(deadline) {
			ws.mu.Unlock()
			t.Fatalf("only %d of %d executions blocked after 30 s", blockedIn("TestExecutorsBoundedUnderFanOut"), koi)
		}
		time.Sleep(time.Millisecond)
	}
	ws.mu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if made, limit := p.execs.made.Load(), int64(MaxExecutors()); made > limit {
		t.Errorf("%d executors cloned for %d concurrent executions, want at most %d", made, koi, limit)
	}
}

// blockedIn counts goroutines started by test fn that are blocked on a
// lock or a channel (a select among channels included: a wait for a slot
// also watches its context).
func blockedIn(fn string) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		if strings.Contains(g, "behaviors."+fn+".func") &&
			(strings.Contains(head, "[sync.Mutex.Lock") || strings.Contains(head, "[chan send") || strings.Contains(head, "[chan receive") || strings.Contains(head, "[select") || strings.Contains(head, "[semacquire")) {
			n++
		}
	}
	return n
}
