package behaviors

import (
	"reflect"
	"runtime"
	"sync"
	"testing"
)

// Stores that live on read their entries without the workspace's lock
// while other stores come and go: collected stores let go of theirs, the
// freed slots are reused for other values. A store that still holds a
// handle must never see a slot reused under it (another koi's value).
func TestSharedStoreEntriesSurviveReuse(t *testing.T) {
	w := NewWorkspace(64 << 10) // small: refusals and own tables too
	const keep = 4
	kept := make([]*Store, keep)
	want := make([]map[string]any, keep)
	for i := range kept {
		kept[i] = NewSharedStore(Identity{Index: i}, w)
		storeOps(kept[i], uint64(i+1), 300)
		private := NewStore(Identity{})
		storeOps(private, uint64(i+1), 300)
		want[i] = storeView(private)
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	for g := range 2 {
		churn.Go(func() {
			for round := uint64(0); ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				s := NewSharedStore(Identity{}, w)
				storeOps(s, 100+round*2+uint64(g), 150)
				s = nil
				if round%4 == 0 {
					runtime.GC()
				}
			}
		})
	}
	var readers sync.WaitGroup
	errs := make(chan string, keep)
	for i := range kept {
		readers.Go(func() {
			for range 25 {
				if got := storeView(kept[i]); !reflect.DeepEqual(got, want[i]) {
					for k := range got {
						if !reflect.DeepEqual(got[k], want[i][k]) {
							errs <- k
							return
						}
					}
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	churn.Wait()
	close(errs)
	for k := range errs {
		t.Errorf("a kept store's %s changed while other stores came and went", k)
	}
	runtime.KeepAlive(kept)
}
