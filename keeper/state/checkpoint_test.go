package state

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// A checkpoint round-trips through the persister and a restore; a
// replacement keeps one record; an oversized snapshot is refused and the
// write it was part of leaves nothing behind; deleting it removes the
// record.
func TestCheckpointPersistRestoreBoundDelete(t *testing.T) {
	p := &MemPersister{}
	s, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(c *Checkpoint) error {
		return s.Write(ctx, func(tx *Txn) error { return tx.PutCheckpoint(c) })
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	if err := put(&Checkpoint{Run: "r1", At: at, Snapshot: []byte{1, 2, 3}, FramesIn: 7}); err != nil {
		t.Fatal(err)
	}
	if err := put(&Checkpoint{Run: "r1", At: at.Add(time.Second), Snapshot: []byte{4, 5}, FramesIn: 9, BytesOut: 11}); err != nil {
		t.Fatal(err)
	}
	if err := put(&Checkpoint{Run: ""}); err == nil {
		t.Error("a checkpoint without its run was stored")
	}
	err = s.Write(ctx, func(tx *Txn) error {
		if err := tx.PutReport(&Report{Run: "r2"}); err != nil {
			return err
		}
		return tx.PutCheckpoint(&Checkpoint{Run: "r2", Snapshot: make([]byte, MaxCheckpointSnapshot+1)})
	})
	if err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("oversized checkpoint: %v", err)
	}
	if s.Read().Report(nil, "r2") != nil || p.Records[reportKey("r2")] != nil {
		t.Error("the failed write left its report behind")
	}
	n := 0
	for k := range p.Records {
		if strings.HasPrefix(k, prefixCheckpoint) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d checkpoint records, want 1", n)
	}

	s2, err := New(&MemPersister{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Restore(p.Records); err != nil {
		t.Fatal(err)
	}
	c := s2.Read().Checkpoint(nil, "r1")
	if c == nil || !c.At.Equal(at.Add(time.Second)) || !bytes.Equal(c.Snapshot, []byte{4, 5}) || c.FramesIn != 9 || c.BytesOut != 11 {
		t.Errorf("restored %+v", c)
	}
	if got := s2.Read().Checkpoints(nil); len(got) != 1 {
		t.Errorf("%d checkpoints restored", len(got))
	}
	if err := s.Write(ctx, func(tx *Txn) error { return tx.DeleteCheckpoint("r1") }); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, func(tx *Txn) error { return tx.DeleteCheckpoint("r1") }); err != nil {
		t.Errorf("deleting a missing checkpoint: %v", err)
	}
	if s.Read().Checkpoint(nil, "r1") != nil || p.Records[checkpointKey("r1")] != nil {
		t.Error("checkpoint kept after delete")
	}
}
