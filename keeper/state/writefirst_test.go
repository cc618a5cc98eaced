package state

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// A WriteFirst (the switches) runs right after the write in progress, not
// after every write queued before it.
func TestWriteFirstGoesAheadOfQueuedWrites(t *testing.T) {
	s, err := New(&MemPersister{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	var order []string
	did := func(name string) func(*Txn) error {
		return func(*Txn) error {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}
	}
	release := make(chan struct{})
	running := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s.Write(ctx, func(tx *Txn) error {
			close(running)
			<-release // the write in progress
			return did("running")(tx)
		})
	})
	<-running
	const queued = 6
	for i := range queued {
		wg.Go(func() { s.Write(ctx, did(string(rune('a'+i)))) })
		waitLock(t, s, func(l *writeLock) bool { return l.next == uint64(i)+2 }) // it waits, in turn
	}
	first := make(chan struct{})
	go func() {
		s.WriteFirst(ctx, did("first"))
		close(first)
	}()
	waitLock(t, s, func(l *writeLock) bool { return l.first == 1 }) // it waits too
	close(release)
	<-first
	wg.Wait()
	pos := -1
	for i, name := range order {
		if name == "first" {
			pos = i
		}
	}
	t.Logf("order of the writes: %v", order)
	if pos != 1 {
		t.Errorf("the WriteFirst ran after %d writes (%v), want after the one in progress only", pos, order)
	}
	if want := []string{"running", "first", "a", "b", "c", "d", "e", "f"}; !slices.Equal(order, want) {
		t.Errorf("the writes ran in the order %v, want %v: the others in the order they came", order, want)
	}
}

// waitLock waits until cond holds of s's write lock.
func waitLock(t *testing.T, s *Store, cond func(*writeLock) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.wl.mu.Lock()
		ok := cond(&s.wl)
		s.wl.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the write never came to wait for the lock")
		}
	}
}
