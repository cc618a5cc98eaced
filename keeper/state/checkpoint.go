package state

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
)

func checkpointKey(run string) string { return prefixCheckpoint + enc(run) }

// Checkpoint is a run's merged metrics since it started (the keeper's
// running total, metrics.Snapshot in its binary encoding) and its
// websocket traffic, as of At. The keeper writes one every
// few seconds while the run lives, restores it into its aggregator when it
// opens, and deletes it with the run's final report: a keeper restarted
// mid-run still reports the run's whole life, less what arrived after the
// last checkpoint before the restart.
type Checkpoint struct {
	Run       string    `json:"run"`
	At        time.Time `json:"at"`
	Snapshot  []byte    `json:"snapshot"`
	FramesIn  uint64    `json:"frames_in"`
	FramesOut uint64    `json:"frames_out"`
	BytesIn   uint64    `json:"bytes_in"`
	BytesOut  uint64    `json:"bytes_out"`
}

// MaxCheckpointSnapshot bounds the encoded snapshot of a checkpoint
// record, like MaxReportSnapshot (under NATS's default 1 MiB message).
const MaxCheckpointSnapshot = MaxReportSnapshot

// Checkpoint returns a run's checkpoint, or nil.
func (r *Reader) Checkpoint(ws memdb.WatchSet, run string) *Checkpoint {
	return first[Checkpoint](r, ws, TableCheckpoints, indexID, run)
}

// Checkpoints returns every checkpoint, by run.
func (r *Reader) Checkpoints(ws memdb.WatchSet) []*Checkpoint {
	return all[Checkpoint](r, ws, TableCheckpoints, indexID)
}

// PutCheckpoint stores a run's checkpoint, replacing the last one. A
// snapshot over MaxCheckpointSnapshot bytes is refused.
func (t *Txn) PutCheckpoint(c *Checkpoint) error {
	if c.Run == "" {
		return fmt.Errorf("state: a checkpoint needs its run")
	}
	if len(c.Snapshot) > MaxCheckpointSnapshot {
		return fmt.Errorf("state: checkpoint of run %q: snapshot of %d bytes is over %d", c.Run, len(c.Snapshot), MaxCheckpointSnapshot)
	}
	return put(t, TableCheckpoints, checkpointKey(c.Run), c, t.Checkpoint(nil, c.Run))
}

// DeleteCheckpoint removes a run's checkpoint, if any.
func (t *Txn) DeleteCheckpoint(run string) error {
	return del(t, TableCheckpoints, checkpointKey(run), t.Checkpoint(nil, run))
}
