package keeper

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// stats counts what the keeper did, for /metrics and tests.
type stats struct {
	polls, blobs, reports, controls atomic.Uint64
	pollNanos                       atomic.Uint64 // total poll handling time

	mu       sync.Mutex
	rejected map[string]uint64 // by cause
}

func newStats() *stats { return &stats{rejected: map[string]uint64{}} }

// reject counts a rejected message and logs the first of each cause.
func (s *stats) reject(log *slog.Logger, cause string, err error, attrs ...any) {
	s.mu.Lock()
	s.rejected[cause]++
	first := s.rejected[cause] == 1
	s.mu.Unlock()
	if first {
		log.Warn("rejecting a message (logged once per cause; see /metrics for counts)",
			append([]any{"cause", cause, "err", err}, attrs...)...)
	}
}

// Rejected returns the count of rejected messages per cause.
func (s *stats) rejections() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.rejected))
	for k, v := range s.rejected {
		out[k] = v
	}
	return out
}

func (s *stats) rejectionCauses() []string {
	r := s.rejections()
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (s *stats) pollTook(d time.Duration) {
	s.polls.Add(1)
	s.pollNanos.Add(uint64(d))
}

// Rejections returns how many incoming NATS messages were rejected, per
// cause (e.g. "poll: unknown version").
func (k *Keeper) Rejections() map[string]uint64 { return k.stats.rejections() }
