package pond

import (
	"math"
	"sync"
	"time"
)

// limiter enforces per-token, per-method token buckets.
type limiter struct {
	rates  map[string]Rate // resolved per method; absent means unlimited
	shards [32]limShard
}

type limShard struct {
	mu      sync.Mutex // a leaf lock
	buckets map[limKey]*bucket
}

type limKey struct {
	user   int32
	method string
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter resolves cfg's limits per method; it returns nil when every
// limit is off.
func newLimiter(cfg Config) *limiter {
	if cfg.DisableRateLimits {
		return nil
	}
	base := DefaultRateLimits()
	for k, r := range cfg.RateLimits {
		base[k] = r
	}
	l := &limiter{rates: map[string]Rate{}}
	for m, tier := range MethodTiers {
		r, ok := base[m]
		if !ok {
			r = base[tier]
		}
		if !r.IsZero() {
			l.rates[m] = r
		}
	}
	if len(l.rates) == 0 {
		return nil
	}
	for i := range l.shards {
		l.shards[i].buckets = map[limKey]*bucket{}
	}
	return l
}

// allow takes one token from user's bucket for method. When none is left it
// returns false and how long until one is.
func (l *limiter) allow(user int, method string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	r, ok := l.rates[method]
	if !ok {
		return true, 0
	}
	perToken := r.Per / time.Duration(r.Limit)
	sh := &l.shards[uint(user)%uint(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := limKey{int32(user), method}
	b := sh.buckets[k]
	if b == nil {
		b = &bucket{tokens: float64(r.Limit), last: now}
		sh.buckets[k] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(float64(r.Limit), b.tokens+float64(el)/float64(perToken))
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(perToken))
}

// retryAfterSecs rounds a wait up to whole seconds, at least 1.
func retryAfterSecs(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
