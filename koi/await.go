package koi

import (
	"strconv"

	"github.com/koipond/koipond/behaviors"
)

// waiter is a ws request watching the incoming frames: for the frame it
// awaits, and for an error frame it declared. It takes at most one frame.
type waiter struct {
	await *behaviors.BoundMatch // nil: the request only watches for errors
	fail  *behaviors.BoundMatch // nil: no error declaration
	ch    chan delivery         // buffered 1; at most one send (the claim is under k.mu)
}

// delivery is the frame a waiter took, whether it was an error frame, and
// a reference to the frame's reservation, which the taker drops once done
// with the frame's value.
type delivery struct {
	f     *Frame
	isErr bool
	hold  *hold
}

// match reports whether f is for w, and whether as an error frame (an
// error declaration wins over the await when a frame matches both). It may
// render `when` templates: never call it holding k.mu.
func (w *waiter) match(f *Frame) (hit, isErr bool) {
	if w.fail != nil && w.fail.Matches(f.Type, f.Raw, f.Value, f.JSON) {
		return true, true
	}
	if w.await != nil && w.await.Matches(f.Type, f.Raw, f.Value, f.JSON) {
		return true, false
	}
	return false, false
}

// deliver hands f to every waiting ws request it matches; each waiter
// takes at most one frame and is then removed. The waiters are matched
// outside k.mu (a `when` template may run, charged to its own template
// budget, and may read the store) and claimed under it, so a request that
// gave up meanwhile is never handed a frame. Each waiter handed the frame
// keeps a reference to its reservation, fh.
func (k *Koi) deliver(f *Frame, fh *frameHold) {
	if k.nWaiting.Load() == 0 {
		return
	}
	k.mu.Lock()
	var buf [8]*waiter
	snap := append(buf[:0], k.waiters...)
	k.mu.Unlock()
	for _, w := range snap {
		hit, isErr := w.match(f)
		if !hit {
			continue
		}
		k.mu.Lock()
		if k.dropWaiterLocked(w) {
			w.ch <- delivery{f: f, isErr: isErr, hold: fh.keep()}
		}
		k.mu.Unlock()
	}
}

// addWaiter registers a ws request watching for frames.
func (k *Koi) addWaiter(await, fail *behaviors.BoundMatch) *waiter {
	w := &waiter{await: await, fail: fail, ch: make(chan delivery, 1)}
	k.mu.Lock()
	k.waiters = append(k.waiters, w)
	k.nWaiting.Store(int32(len(k.waiters)))
	k.mu.Unlock()
	return w
}

// removeWaiter removes w, and drops the reservation of a frame it was
// handed and nobody took.
func (k *Koi) removeWaiter(w *waiter) {
	k.mu.Lock()
	k.dropWaiterLocked(w)
	k.mu.Unlock()
	select { // no frame is handed to w after it is removed
	case d := <-w.ch:
		d.hold.drop()
	default:
	}
}

// dropWaiterLocked removes w, reporting whether it was still there.
func (k *Koi) dropWaiterLocked(w *waiter) bool {
	for i, x := range k.waiters {
		if x == w {
			last := len(k.waiters) - 1
			copy(k.waiters[i:], k.waiters[i+1:])
			k.waiters[last] = nil
			k.waiters = k.waiters[:last]
			k.nWaiting.Store(int32(last))
			return true
		}
	}
	return false
}

// maxFrameQuote is how much of a frame an error message quotes.
const maxFrameQuote = 120

// quoteFrame quotes the start of a frame for an error message.
func quoteFrame(raw []byte) string {
	if len(raw) <= maxFrameQuote {
		return strconv.Quote(string(raw))
	}
	return strconv.Quote(string(raw[:maxFrameQuote])) + "… (" + strconv.Itoa(len(raw)) + " bytes)"
}
