package keeper

import (
	"context"
	"fmt"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
)

// A run's metrics total is checkpointed into the KV bucket (only when it
// changed) every checkpointEvery while it is small, and less often as it
// grows: a checkpoint of n bytes waits n/checkpointRate seconds before the
// next, up to checkpointMaxEvery. A keeper that crashes mid-run loses what
// was merged in that wait (plus one scheduler pass) and what schools
// published while it was down; one that closes checkpoints first
// (checkpointOnClose) and loses only what came after. Everything before
// the last checkpoint is in the final report.
//
// Why a rate: a KV bucket's stream keeps every replaced checkpoint in its
// last file block until the block fills, and the server reads that whole
// block back into memory for the next write once its cache has been
// collected. Every 10 s, a busy run's 15 KB checkpoint grew the block 1.5
// KB a second, and each write re-read up to 8 MB: the keeper's heap goal
// swung from 19 to 37 MB and its RSS climbed 3% per 10 minutes in a
// 30-minute soak (issue 14; the heap goal stayed at 15-21 MB without
// checkpoints). Once a minute, the same run's records (about 20 KB as
// JSON) fill the block six times more slowly. Checkpoints also have
// buckets of their own, replaced every 192 KiB or so (state's
// checkpointgens.go), so the block re-read stays under 256 KiB however
// long the run.
const (
	checkpointEvery    = 10 * time.Second
	checkpointMaxEvery = time.Minute
	checkpointRate     = 256 // bytes per second per run
)

// checkpointRollTimeout bounds a scheduler pass's turn at rolling the
// checkpoints' bucket (state.KV.RollCheckpoints): a roll cut short is
// finished by a later pass, checkpointRollBackoff after a failure, so
// that a NATS that cannot create a bucket does not hold up every pass.
const (
	checkpointRollTimeout = 10 * time.Second
	checkpointRollBackoff = 30 * time.Second
)

// rollCheckpoints rolls the checkpoints' bucket once it has taken enough
// (or finishes a roll cut short), unless a try failed within
// checkpointRollBackoff. Only the scheduler goroutine calls it.
func (k *Keeper) rollCheckpoints(ctx context.Context) {
	if time.Now().Before(k.rollAfter) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, checkpointRollTimeout)
	defer cancel()
	if err := k.kv.RollCheckpoints(ctx); err != nil {
		k.rollAfter = time.Now().Add(checkpointRollBackoff)
		k.stats.reject(k.log, "checkpoint: rolling its bucket failed", err, "retry in", checkpointRollBackoff)
	}
}

// checkpointWait is how long a run whose last checkpoint's snapshot was
// size bytes waits for its next one. Sizes past a minute's worth are a
// minute's worth, so no size overflows the product.
func checkpointWait(size int) time.Duration {
	size = min(size, checkpointRate*int(checkpointMaxEvery/time.Second))
	return min(max(time.Duration(size)*time.Second/checkpointRate, checkpointEvery), checkpointMaxEvery)
}

// ckptMark is what the last checkpoint of a run covered, and the size of
// its snapshot (which sets the wait for the next).
type ckptMark struct {
	changes uint64
	at      time.Time
	size    int
}

// totalAt returns a copy of a run's total, its traffic and its change
// count, read together; nil without series.
func (a *aggregator) totalAt(run string) (*metrics.Snapshot, traffic, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.runs[run]
	if rs == nil || rs.total == nil {
		return nil, traffic{}, 0
	}
	out := &metrics.Snapshot{}
	_ = out.Merge(rs.total) // built by this package: cannot fail
	return out, rs.traffic, rs.changes
}

// restore seeds a run's total and traffic from a checkpoint, before any
// report of this keeper is merged (Open calls it before subscribing). The
// windows of the live views start empty: they show the time since.
func (a *aggregator) restore(run string, snap *metrics.Snapshot, tr traffic) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.series(run)
	for key := range snap.Series {
		if _, ok := rs.keyID(key); !ok {
			delete(snap.Series, key)
		}
	}
	rs.total = snap
	rs.traffic = tr
}

// restoreCheckpoints seeds the aggregator from every run's checkpoint. A
// checkpoint whose snapshot does not decode is skipped with a warning:
// the run's report then covers the time since this keeper opened.
func (k *Keeper) restoreCheckpoints() {
	k.ckpt = map[string]ckptMark{}
	for _, c := range k.store.Read().Checkpoints(nil) {
		snap := &metrics.Snapshot{}
		if err := snap.UnmarshalBinary(c.Snapshot); err != nil {
			k.log.Warn("skipping a run's metrics checkpoint that does not decode", "run", c.Run, "err", err)
			continue
		}
		// A checkpoint written before metric keys were bounded may hold
		// keys that reports may no longer carry: kept, made to fit.
		if n := snap.CleanKeys(); n > 0 {
			k.log.Warn("a run's metrics checkpoint had keys too long or not printable; kept under shortened keys", "run", c.Run, "keys", n)
		}
		k.agg.restore(c.Run, snap, traffic{FramesIn: c.FramesIn, FramesOut: c.FramesOut, BytesIn: c.BytesIn, BytesOut: c.BytesOut})
		k.ckpt[c.Run] = ckptMark{at: time.Now()}
		k.log.Info("run metrics restored from a checkpoint", "run", c.Run, "at", c.At, "keys", len(snap.Series))
	}
}

// closingCheckpointTimeout bounds the checkpoint a closing keeper writes.
const closingCheckpointTimeout = 3 * time.Second

// checkpointOnClose checkpoints every changed run's total once more as the
// keeper closes, whatever its checkpointWait says: a keeper restarted
// gracefully then loses only the reports merged after it (one metrics
// interval), not up to a checkpointWait of every run's counts and
// exposure. The scheduler goroutine calls it as it ends, before the NATS
// connection is drained.
func (k *Keeper) checkpointOnClose() {
	for id, m := range k.ckpt {
		m.at = time.Time{}
		k.ckpt[id] = m
	}
	ctx, cancel := context.WithTimeout(context.Background(), closingCheckpointTimeout)
	defer cancel()
	if err := k.checkpointRuns(ctx); err != nil {
		k.log.Warn("closing: checkpointing run metrics failed; a restart loses what was merged since the last checkpoint", "err", err)
	}
}

// checkpointRuns writes the total of every run still waiting for its
// final report whose metrics changed since its last checkpoint, once its
// checkpointWait has passed, and deletes the checkpoints of runs that
// have their report or are gone. Only the scheduler goroutine calls it
// (k.ckpt is its own).
func (k *Keeper) checkpointRuns(ctx context.Context) error {
	r := k.store.Read()
	now := time.Now()
	for _, c := range r.Checkpoints(nil) {
		if r.Run(nil, c.Run) == nil || r.Report(nil, c.Run) != nil {
			if err := k.write(ctx, "deleting a settled run's checkpoint", func(tx *state.Txn) error { return tx.DeleteCheckpoint(c.Run) }); err != nil {
				return err
			}
			delete(k.ckpt, c.Run)
		}
	}
	for _, id := range k.agg.runIDs() {
		run := r.Run(nil, id)
		if run == nil || r.Report(nil, id) != nil {
			delete(k.ckpt, id)
			continue
		}
		if !run.Active() && now.Sub(run.EndedAt) > coarseSlots*time.Minute {
			continue // never reported: forgetOldSeries drops it
		}
		last := k.ckpt[id]
		if now.Sub(last.at) < checkpointWait(last.size) {
			continue
		}
		snap, tr, changes := k.agg.totalAt(id)
		if snap == nil || changes == last.changes {
			continue
		}
		// A run whose keys all fail in many hostile ways sheds the
		// reasons' samples, then the reasons, rather than its checkpoint.
		enc, err := snap.MarshalBinaryWithin(state.MaxCheckpointSnapshot)
		if err != nil {
			return fmt.Errorf("encoding run %s's checkpoint: %w", id, err)
		}
		mark := ckptMark{changes: changes, at: now, size: len(enc)}
		if len(enc) > state.MaxCheckpointSnapshot {
			k.ckpt[id] = mark // too large whatever we do: do not retry each pass
			k.stats.reject(k.log, "checkpoint: snapshot too large", fmt.Errorf("%d bytes over %d", len(enc), state.MaxCheckpointSnapshot), "run", id)
			continue
		}
		c := &state.Checkpoint{Run: id, At: now, Snapshot: enc, FramesIn: tr.FramesIn, FramesOut: tr.FramesOut, BytesIn: tr.BytesIn, BytesOut: tr.BytesOut}
		err = k.write(ctx, "checkpointing run metrics", func(tx *state.Txn) error {
			if tx.Run(nil, id) == nil || tx.Report(nil, id) != nil {
				return nil // settled meanwhile
			}
			return tx.PutCheckpoint(c)
		})
		if err != nil {
			return err // unmarked: the next pass tries again
		}
		k.ckpt[id] = mark
	}
	return nil
}
