package behaviors

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// slowLoop is a legal template that runs for a good while: 99,000 range
// iterations (within MaxIterations), each hashing 1 KB. It says when it
// has begun through the koi's store.
const slowLoop = `{{ setKoi "begun" true }}{{ $s := repeat 1024 "x" }}{{ range until 9000 }}{{ range until 10 }}{{ $h := sha256sum $s }}{{ end }}{{ end }}`

// A running template ends soon after its context does, with an error that
// wraps the context's (never ErrLimit), and gives its executor back.
func TestRenderEndsWhenItsContextEnds(t *testing.T) {
	p := NewProgram()
	tx := compileOne(t, p, slowLoop)

	// One whole rendering, on this machine as it is now.
	start := time.Now()
	if err := p.Run(context.Background(), &Env{Store: NewStore(Identity{})}, tx, nil); err != nil {
		t.Fatalf("the slow template, left alone: %v", err)
	}
	whole := time.Since(start)

	st := NewStore(Identity{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, &Env{Store: st}, tx, nil) }()
	for st.Get("begun") != true {
		select {
		case err := <-done:
			t.Fatalf("the template ended before the stop: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	stopAt := time.Now()
	cancel()
	err := <-done
	took := time.Since(stopAt)
	t.Logf("ended %v after its context (a whole rendering takes %v): %v", took, whole, err)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrLimit) {
		t.Errorf("err = %v, want one wrapping context.Canceled and not ErrLimit", err)
	}
	if took > whole/4 {
		t.Errorf("ended %v after its context, more than a quarter of a whole rendering (%v)", took, whole)
	}
	if n := len(p.execs.slots); n != 0 {
		t.Errorf("%d executor slots still held after the rendering ended", n)
	}
}

// An execution waiting for an executor (every slot taken by executions
// that wait on the workspace's lock) gives up as soon as its context
// ends, holding no slot; the others then run as usual.
func TestRenderWaitingForAnExecutorEndsWithItsContext(t *testing.T) {
	p := NewProgram()
	tx := compileOne(t, p, `{{ addUserIDs (list "U1" "U2") }}`)
	p.execs.init() // before the executions: the test reads the slots
	ws := NewWorkspace(0)
	ws.mu.Lock() // a long holder of the workspace lock
	locked := true
	defer func() {
		if locked {
			ws.mu.Unlock()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, MaxExecutors())
	for i := range MaxExecutors() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(context.Background(), &Env{Store: NewSharedStore(Identity{Index: i}, ws)}, tx, nil); err != nil {
				errs <- err
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for blockedIn("TestRenderWaitingForAnExecutorEndsWithItsContext") < MaxExecutors() {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d executions took a slot after 30 s", blockedIn("TestRenderWaitingForAnExecutorEndsWithItsContext"), MaxExecutors())
		}
		time.Sleep(time.Millisecond)
	}
	if n := len(p.execs.slots); n != MaxExecutors() {
		t.Fatalf("%d slots taken, want all %d", n, MaxExecutors())
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, &Env{Store: NewSharedStore(Identity{Index: -1}, ws)}, tx, nil) }()
	select {
	case err := <-done:
		t.Fatalf("ran with every slot taken: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want one wrapping context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still waiting for an executor 30 s after its context ended")
	}

	ws.mu.Unlock()
	locked = false
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(p.execs.slots); n != 0 {
		t.Errorf("%d executor slots still held after every execution ended", n)
	}
}
