package koi

import "github.com/koipond/koipond/behaviors"

// waiter is a ws request awaiting a matching frame.
type waiter struct {
	await *behaviors.Await
	ch    chan *Frame // buffered 1
}

// matches reports whether f is the frame w waits for.
func (w *waiter) matches(f *Frame) bool { return w.await.Matches(f.Type, f.Raw) }

// deliver hands f to every waiting ws request it matches; each waiter
// takes at most one frame and is then removed.
func (k *Koi) deliver(f *Frame) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := 0; i < len(k.waiters); i++ {
		w := k.waiters[i]
		if w.matches(f) {
			select {
			case w.ch <- f:
			default:
			}
			k.waiters = append(k.waiters[:i], k.waiters[i+1:]...)
			i--
		}
	}
}

// addWaiter registers a ws request waiting for a frame.
func (k *Koi) addWaiter(a *behaviors.Await) *waiter {
	w := &waiter{await: a, ch: make(chan *Frame, 1)}
	k.mu.Lock()
	k.waiters = append(k.waiters, w)
	k.mu.Unlock()
	return w
}

func (k *Koi) removeWaiter(w *waiter) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, x := range k.waiters {
		if x == w {
			k.waiters = append(k.waiters[:i], k.waiters[i+1:]...)
			return
		}
	}
}
