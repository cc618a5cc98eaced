package koi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
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
// decodes, and gives the reservation back once the request returns
// (HTTP) or the frame is handled;
// when the budget is exhausted the reply is dropped and the request fails
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
func (rt *Runtime) readReply(r io.Reader, limit, hint int64) (data []byte, held int64, err error) {
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
			if err := rt.reserve(grow); err != nil {
				return nil, held, err
			}
			held += grow
			nb := make([]byte, len(buf), int64(len(buf))+grow)
			copy(nb, buf)
			buf = nb
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
// school's reply budget, classifying failures for metrics. The body's
// reservation is held until the request's context ends, which is when the
// request (read, decode) returns: the decoded reply is where the memory
// is. A stop cancels that context, so it releases at once.
func (k *Koi) readBody(resp *http.Response) ([]byte, error) {
	body, held, err := k.rt.readReply(resp.Body, MaxResponseBody, resp.ContentLength)
	if err != nil || resp.Request == nil {
		k.rt.release(held)
	} else {
		context.AfterFunc(resp.Request.Context(), func() { k.rt.release(held) })
	}
	switch {
	case errors.Is(err, errReplyTooLarge):
		return nil, &requestError{outcome: metrics.Error, msg: fmt.Sprintf("reply larger than %d bytes", MaxResponseBody), reason: reasonReplyTooBig}
	case errors.Is(err, ErrReplyBudget):
		k.rt.series(ReplyBudgetKey).CountReason(metrics.Error, reasonReplyBudget, err.Error())
		return nil, &requestError{outcome: metrics.Error, msg: "reply dropped: " + err.Error(), reason: reasonReplyBudget}
	case err != nil:
		return nil, &requestError{outcome: metrics.Transport, msg: "reading reply: " + err.Error(), reason: transportReason(err)}
	}
	return body, nil
}

// ReplyBudgetKey is the metric key counting replies (HTTP bodies and
// websocket frames) dropped because the school-wide reply budget was
// exhausted.
const ReplyBudgetKey = "reply:budget"
