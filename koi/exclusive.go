package koi

import (
	"context"

	"github.com/koipond/koipond/behaviors"
)

// MaxExclusivePending bounds the firings of one exclusive group that wait
// on a koi while one of the group runs; a firing beyond it is dropped and
// counted in Stats.ExclusiveDropped.
const MaxExclusivePending = 4

// exclusiveGroup is one "exclusive" group on one koi, guarded by k.mu:
// whether one of its behaviors runs, and the firings deferred behind it
// (each with the activity context it fired under, so a pause or stop
// discards them: they never start once that context ends).
type exclusiveGroup struct {
	running bool
	pending []deferredFiring
}

type deferredFiring struct {
	ctx context.Context
	b   *behaviors.Behavior
}

// admitLocked decides a due firing: true to start it now; false when its
// group is busy (then it is deferred, or dropped when the group already
// has MaxExclusivePending waiting).
func (k *Koi) admitLocked(ctx context.Context, b *behaviors.Behavior) bool {
	if b.Exclusive == "" {
		return true
	}
	if k.excl == nil {
		k.excl = map[string]*exclusiveGroup{}
	}
	g := k.excl[b.Exclusive]
	if g == nil {
		g = &exclusiveGroup{}
		k.excl[b.Exclusive] = g
	}
	if !g.running {
		g.running = true
		return true
	}
	if len(g.pending) >= MaxExclusivePending {
		k.count(func(s *Stats) { s.ExclusiveDropped++ })
		return false
	}
	g.pending = append(g.pending, deferredFiring{ctx, b})
	return false
}

// nextExclusive is called when a run of group ends: it hands back the
// next deferred firing still live, to run on the caller's goroutine, or
// marks the group idle and returns a nil behavior. Firings whose context
// ended (pause, stop) are discarded.
func (k *Koi) nextExclusive(group string) (context.Context, *behaviors.Behavior) {
	k.mu.Lock()
	defer k.mu.Unlock()
	g := k.excl[group]
	for len(g.pending) > 0 {
		p := g.pending[0]
		g.pending[0] = deferredFiring{}
		g.pending = g.pending[1:]
		if p.ctx.Err() == nil {
			return p.ctx, p.b
		}
	}
	g.pending = nil
	g.running = false
	return nil, nil
}
