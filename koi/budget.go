package koi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/koipond/koipond/metrics"
)

// ErrReplyBudget is returned (wrapped) when a reply cannot be read because
// the school-wide budget for in-flight reply bytes is exhausted.
var ErrReplyBudget = errors.New("school-wide reply budget exhausted")

// replyChunk is the first (and smallest) piece of a reply of unknown size
// the reader reserves and allocates; later pieces double, as a growing
// buffer would. Most websocket frames (events, pongs) are a few hundred
// bytes: a first piece of 32 KiB allocated 100× what a frame needed, on
// every frame of every koi.
const replyChunk = 512

// ReplyBudget bounds the reply bytes every koi of a school holds while
// reading them: HTTP reply bodies and websocket frames, and what they
// grow to when decoded. A koi reserves from it before it allocates room
// for the next piece of a reply, and for the decoded values before it
// decodes, and gives the reservation back once nothing it runs can read
// the decoded value any more: for an HTTP reply or an awaited frame, when
// the step's post_actions have run; for a frame, when it is handled, or
// when the on_event sequences it started end, or when it is handed over
// or dropped after being held while on_connect ran. When the budget is
// exhausted the reply is dropped and the request fails
// with ErrReplyBudget. Reserving never waits, so a full budget can neither
// block a koi nor delay a stop. The per-reply caps (MaxResponseBody,
// RuntimeConfig.ReadLimit) still apply on top of it.
//
// A nil *ReplyBudget has no limit. It is safe for concurrent use.
type ReplyBudget struct {
	limit   int64
	used    atomic.Int64
	refused atomic.Uint64
}

// NewReplyBudget returns a budget of limit bytes (limit ≤ 0: no limit).
func NewReplyBudget(limit int64) *ReplyBudget {
	if limit <= 0 {
		limit = math.MaxInt64
	}
	return &ReplyBudget{limit: limit}
}

// Limit returns the budget's size in bytes.
func (b *ReplyBudget) Limit() int64 {
	if b == nil {
		return math.MaxInt64
	}
	return b.limit
}

// InUse returns the bytes reserved now.
func (b *ReplyBudget) InUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Refused returns how many replies were dropped for want of budget.
func (b *ReplyBudget) Refused() uint64 {
	if b == nil {
		return 0
	}
	return b.refused.Load()
}

// tryReserve reserves n bytes if they fit, without waiting.
func (b *ReplyBudget) tryReserve(n int64) bool {
	if b == nil {
		return true
	}
	for {
		cur := b.used.Load()
		if n > b.limit-cur { // cur ≤ limit always: no overflow
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (b *ReplyBudget) release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// A hold is the reservation of one reply whose decoded value more than
// one part of a koi may keep past the frame's reading: ws requests
// awaiting it, on_event sequences, the frames held while on_connect runs.
// Each keeper owns a reference; the last to let go gives the bytes back.
// A nil *hold holds nothing.
type hold struct {
	rt   *Runtime
	n    int64
	refs atomic.Int32
}

// drop lets go of one reference.
func (h *hold) drop() {
	if h != nil && h.refs.Add(-1) == 0 {
		h.rt.release(h.n)
	}
}

// dropFunc is drop as the release of a step's data (nil for a nil hold).
func (h *hold) dropFunc() func() {
	if h == nil {
		return nil
	}
	return h.drop
}

// frameHold is the reader's reservation for one frame: given back once
// the frame is handled, unless something kept its value (keep), then by
// the last keeper. The reader's own frames pay for a shared hold only
// when something keeps them. A nil *frameHold holds nothing.
type frameHold struct {
	rt *Runtime
	n  int64 // reserved and not yet shared
	h  *hold // shared, the reader's reference among them
}

// size is the bytes the frame holds reserved.
func (f *frameHold) size() int64 {
	switch {
	case f == nil:
		return 0
	case f.h != nil:
		return f.h.n
	}
	return f.n
}

// keep returns a reference to the frame's reservation for a keeper of
// its value, to be dropped when it is done with it.
func (f *frameHold) keep() *hold {
	if f == nil || f.h == nil && f.n == 0 {
		return nil
	}
	if f.h == nil {
		f.h = &hold{rt: f.rt, n: f.n}
		f.h.refs.Store(1) // the reader's
		f.n = 0
	}
	f.h.refs.Add(1)
	return f.h
}

// done is the reader letting go once the frame is handled.
func (f *frameHold) done() {
	if f.h != nil {
		f.h.drop()
	} else {
		f.rt.release(f.n)
	}
}

// errReplyTooLarge marks a reply past its per-reply cap.
var errReplyTooLarge = errors.New("reply too large")

// reserve takes n bytes from the school's budget and charges them to the
// run; it fails without waiting when the budget is exhausted.
func (rt *Runtime) reserve(n int64) error {
	b := rt.cfg.ReplyBudget
	if !b.tryReserve(n) {
		b.refused.Add(1)
		rt.budgetRefused.Add(1)
		return fmt.Errorf("%w: %d of %d bytes in flight, %d more needed", ErrReplyBudget, b.InUse(), b.Limit(), n)
	}
	rt.inFlight.Add(n)
	return nil
}

// release returns bytes reserved with reserve.
func (rt *Runtime) release(n int64) {
	if n > 0 {
		rt.cfg.ReplyBudget.release(n)
		rt.inFlight.Add(-n)
	}
}

// readReply reads a whole reply of at most limit bytes from r, reserving
// every piece of buffer before it is allocated (hint, when positive, is the
// announced size and sizes the first piece), then what decoding it will
// take (decodeCost). It returns the bytes it holds
// reserved, which the caller releases once done with the data — also on
// error. A reply over limit fails with errReplyTooLarge, one that does not
// fit the budget with ErrReplyBudget; r is then left unread.
//
// With pooled, the buffer comes from replyBufs, and the caller gives data
// back with putReplyBuf once nothing refers to it.
func (rt *Runtime) readReply(r io.Reader, limit, hint int64, pooled bool) (data []byte, held int64, err error) {
	var buf []byte
	defer func() { rt.replyBytes.Add(uint64(len(buf))) }() // read, kept or not
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, held, errReplyTooLarge
			}
			grow := int64(max(replyChunk, cap(buf)))
			if cap(buf) == 0 && hint > 0 {
				grow = hint + 1 // room to see EOF without growing again
			}
			grow = max(1, min(grow, limit+1-int64(len(buf))))
			size := int64(len(buf)) + grow
			if pooled {
				size = replyBufCap(size)
			}
			if err := rt.reserve(size - int64(len(buf))); err != nil {
				return nil, held, err
			}
			held += size - int64(len(buf))
			if pooled {
				nb := append(getReplyBuf(size), buf...)
				putReplyBuf(buf)
				buf = nb
			} else {
				buf = append(make([]byte, 0, size), buf...)
			}
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if int64(len(buf)) > limit {
				return nil, held, errReplyTooLarge
			}
			// Decoding is where a reply grows: reserve that too.
			cost := decodeCost(buf)
			if err := rt.reserve(cost); err != nil {
				return nil, held, fmt.Errorf("decoding a %d-byte reply: %w", len(buf), err)
			}
			return buf, held + cost, nil
		}
		if err != nil {
			return nil, held, err
		}
	}
}

// decodedValueBytes is what one JSON value costs once decoded into Go
// values beyond its text: an interface slot and a small allocation.
const decodedValueBytes = 32

// decodeCost estimates the memory a reply takes once decoded beyond its
// own bytes, from the values it separates: `[0,0,0,…]` is 2 bytes a value
// as text and about 34 decoded. One linear pass of bytes.Count each.
func decodeCost(b []byte) int64 {
	n := bytes.Count(b, []byte{','}) + bytes.Count(b, []byte{':'}) + bytes.Count(b, []byte{'['}) + bytes.Count(b, []byte{'{'})
	return int64(n) * decodedValueBytes
}

// ReplyBytesInFlight returns the reply bytes the run's koi hold reserved
// now (see ReplyBudget).
func (rt *Runtime) ReplyBytesInFlight() int64 { return rt.inFlight.Load() }

// ReplyBytesRead returns the reply bytes (HTTP bodies and websocket
// frames) the run's koi have read since the runtime was made.
func (rt *Runtime) ReplyBytesRead() uint64 { return rt.replyBytes.Load() }

// RepliesRefused returns how many of the run's replies were dropped for
// want of budget.
func (rt *Runtime) RepliesRefused() uint64 { return rt.budgetRefused.Load() }

// readBody reads an HTTP reply body within MaxResponseBody and the
// school's reply budget, classifying failures for metrics. The body, and
// its reservation, are held until the caller calls release, once the
// request (read, decode) is over: the decoded reply is where the memory
// is.
func (k *Koi) readBody(resp *http.Response) (body []byte, release func(), err error) {
	body, held, err := k.rt.readReply(resp.Body, MaxResponseBody, resp.ContentLength, true)
	if err != nil {
		k.rt.release(held) // readReply kept no buffer
	}
	switch {
	case errors.Is(err, errReplyTooLarge):
		return nil, nil, &requestError{outcome: metrics.Error, msg: fmt.Sprintf("reply larger than %d bytes", MaxResponseBody), reason: reasonReplyTooBig}
	case errors.Is(err, ErrReplyBudget):
		k.rt.series(ReplyBudgetKey).CountReason(metrics.Error, reasonReplyBudget, err.Error())
		return nil, nil, &requestError{outcome: metrics.Error, msg: "reply dropped: " + err.Error(), reason: reasonReplyBudget}
	case err != nil:
		return nil, nil, &requestError{outcome: metrics.Transport, msg: "reading reply: " + err.Error(), reason: transportReason(err)}
	}
	return body, func() {
		k.rt.release(held)
		putReplyBuf(body)
	}, nil
}

// replyBufs pools reply buffers by power-of-two size, from 1 KiB to 64
// KiB: a busy koi reads its replies into recycled buffers, not a new one
// each (they were half the bytes a busy school allocated, and so half its
// garbage collections).
var replyBufs [7]sync.Pool

const minReplyBuf, maxReplyBuf = 1 << 10, 64 << 10

// replyBufCap is the capacity a pooled buffer of at least n bytes has.
func replyBufCap(n int64) int64 {
	if n > maxReplyBuf {
		return n
	}
	c := int64(minReplyBuf)
	for c < n {
		c <<= 1
	}
	return c
}

// replyBufClass is the pool for capacity c, or -1.
func replyBufClass(c int) int {
	if c < minReplyBuf || c > maxReplyBuf || c&(c-1) != 0 {
		return -1
	}
	return bits.TrailingZeros(uint(c)) - 10
}

// getReplyBuf returns an empty buffer of capacity replyBufCap(n).
func getReplyBuf(n int64) []byte {
	c := replyBufCap(n)
	if i := replyBufClass(int(c)); i >= 0 {
		if b, ok := replyBufs[i].Get().(*[]byte); ok {
			return (*b)[:0]
		}
	}
	return make([]byte, 0, c)
}

// putReplyBuf gives b back for reuse: nothing may refer to it after.
func putReplyBuf(b []byte) {
	if i := replyBufClass(cap(b)); i >= 0 {
		b = b[:0]
		replyBufs[i].Put(&b)
	}
}

// ReplyBudgetKey is the metric key counting replies (HTTP bodies and
// websocket frames) dropped because the school-wide reply budget was
// exhausted.
const ReplyBudgetKey = "reply:budget"
