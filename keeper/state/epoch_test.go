package state

import (
	"context"
	"math"
	"testing"

	"github.com/koipond/koipond/wire"
)

// Epochs saturate at wire.MaxEpoch: raised to anything (the attack's
// 2^64−1 included) and counted on, they never wrap to a value below the
// last, so no later switch can look older than one given out.
func TestEpochSaturatesInsteadOfWrapping(t *testing.T) {
	s, err := New(&MemPersister{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []uint64
	for _, raise := range []uint64{wire.MaxEpoch - 2, math.MaxUint64, 0} {
		err := s.Write(ctx, func(tx *Txn) error {
			tx.RaiseEpoch(raise)
			got = append(got, tx.NextEpoch(), tx.NextEpoch())
			return tx.PutSwitch(&GlobalSwitch{Switch: Switch{State: wire.Stopped, Epoch: got[len(got)-1]}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []uint64{wire.MaxEpoch - 1, wire.MaxEpoch, wire.MaxEpoch, wire.MaxEpoch, wire.MaxEpoch, wire.MaxEpoch}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("epochs %v, want %v", got, want)
		}
	}
	if e := s.Epoch(); e != wire.MaxEpoch {
		t.Errorf("store epoch %d, want %d", e, uint64(wire.MaxEpoch))
	}
}
