package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// KV persists records in a JetStream key-value bucket with file storage.
// Its handle can be swapped (Rebind) when the keeper redials NATS: users
// of a KV keep working across the swap.
//
// Once OpenCheckpoints has run, checkpoint records go to buckets of their
// own (checkpointgens.go) and the rest to the state bucket.
type KV struct {
	mu    sync.RWMutex // guards kv and ckpts
	kv    jetstream.KeyValue
	ckpts *checkpointGens
}

// MaxKeyLen is the longest key KV writes. NATS puts the key in the
// subject of a protocol line bounded to 4 KiB; a longer one makes the
// server close the connection (a protocol violation). Put and Delete
// refuse such keys instead.
const MaxKeyLen = 1024

// ErrKeyTooLong is returned for a key longer than MaxKeyLen.
var ErrKeyTooLong = errors.New("state: key too long")

func (k *KV) handle() jetstream.KeyValue {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.kv
}

// checkpoints returns the checkpoint generations, or nil before
// OpenCheckpoints.
func (k *KV) checkpoints() *checkpointGens {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ckpts
}

func isCheckpoint(key string) bool { return strings.HasPrefix(key, prefixCheckpoint) }

// OpenCheckpoints opens the buckets of the state bucket's checkpoints,
// rolling what an earlier keeper left into a new one (see
// checkpointgens.go): from then on, checkpoint records are written there.
// Call it once, after OpenKV, before the store writes.
func (k *KV) OpenCheckpoints(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) error {
	g, err := openCheckpointGens(ctx, js, k.handle(), bucket, replicas)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.ckpts = g
	k.mu.Unlock()
	return nil
}

// CheckpointStats are what the checkpoints' buckets say of themselves.
type CheckpointStats struct {
	// Written is about how many bytes the current bucket's stream has
	// stored, replaced records included: what nats-server re-reads for a
	// checkpoint once the bucket's cache expired.
	Written int64
	// Rolls counts the buckets rolled into a new one since the keeper
	// opened.
	Rolls uint64
}

// CheckpointStats returns the checkpoints' buckets' figures; false before
// OpenCheckpoints.
func (k *KV) CheckpointStats() (CheckpointStats, bool) {
	g := k.checkpoints()
	if g == nil {
		return CheckpointStats{}, false
	}
	return CheckpointStats{Written: g.written.Load(), Rolls: g.rolls.Load()}, true
}

// RollCheckpoints rolls the checkpoints' bucket once it has taken enough,
// and finishes a roll an earlier call could not. One goroutine calls it
// (the keeper's scheduler), beside the store's writes.
func (k *KV) RollCheckpoints(ctx context.Context) error {
	if g := k.checkpoints(); g != nil {
		return g.roll(ctx)
	}
	return nil
}

// Rebind points k at the bucket through a new JetStream context (a new
// connection), creating it as OpenKV does if it is missing.
func (k *KV) Rebind(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) error {
	n, err := OpenKV(ctx, js, bucket, replicas)
	if err != nil {
		return err
	}
	if g := k.checkpoints(); g != nil {
		if err := g.rebind(ctx, js); err != nil {
			return err
		}
	}
	k.mu.Lock()
	k.kv = n.kv
	k.mu.Unlock()
	return nil
}

func checkKey(key string) error {
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes (at most %d): %.40q…", ErrKeyTooLong, len(key), MaxKeyLen, key)
	}
	return nil
}

var _ Persister = (*KV)(nil)

// OpenExistingKV opens a bucket the keeper created, changing nothing about
// it (for the emergency stop written straight to NATS).
func OpenExistingKV(ctx context.Context, js jetstream.JetStream, bucket string) (*KV, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("state: opening KV bucket %q: %w", bucket, err)
	}
	return &KV{kv: kv}, nil
}

// OpenKV creates (or opens) the bucket. replicas is the number of copies
// the NATS cluster keeps (1 for a single server).
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*KV, error) {
	// An existing bucket is never shrunk: a keeper started with a lower
	// --replicas than the cluster's bucket must not drop copies of the
	// state. It may grow.
	if existing, err := js.KeyValue(ctx, bucket); err == nil {
		st, err := existing.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("state: reading KV bucket %q: %w", bucket, err)
		}
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); !ok || bs.StreamInfo().Config.Replicas >= replicas {
			return &KV{kv: existing}, nil
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("state: opening KV bucket %q: %w", bucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "koipond keeper state",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("state: opening KV bucket %q: %w", bucket, err)
	}
	return &KV{kv: kv}, nil
}

// Put implements Persister.
func (k *KV) Put(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if g := k.checkpoints(); g != nil && isCheckpoint(key) {
		return g.put(ctx, key, value)
	}
	_, err := k.handle().Put(ctx, key, value)
	return err
}

// Delete implements Persister. Deleting a missing key is not an error.
func (k *KV) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if g := k.checkpoints(); g != nil && isCheckpoint(key) {
		return g.del(ctx, key)
	}
	err := k.handle().Delete(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// Load reads every live record of the state bucket but checkpoints (for
// Store.AdoptExternal). It runs beside the store's writes and the
// checkpoints' rolls.
func (k *KV) Load(ctx context.Context) (map[string][]byte, error) {
	recs, err := k.loadBucket(ctx)
	if err != nil {
		return nil, err
	}
	if k.checkpoints() != nil {
		for key := range recs {
			if isCheckpoint(key) { // left by a keeper before generations, and moved
				delete(recs, key)
			}
		}
	}
	return recs, nil
}

// LoadAll reads every live record, the checkpoints' too once
// OpenCheckpoints has run, for Store.Restore. Call it before the store
// writes: it does not run beside a roll.
func (k *KV) LoadAll(ctx context.Context) (map[string][]byte, error) {
	recs, err := k.Load(ctx)
	if err != nil {
		return nil, err
	}
	g := k.checkpoints()
	if g == nil {
		return recs, nil
	}
	ckpts, err := g.load(ctx)
	if err != nil {
		return nil, err
	}
	maps.Copy(recs, ckpts)
	return recs, nil
}

func (k *KV) loadBucket(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := eachLatest(ctx, k.handle(), jetstream.AllKeys, func(e jetstream.KeyValueEntry) error {
		if e.Operation() == jetstream.KeyValuePut {
			out[e.Key()] = e.Value()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return out, nil
}

// MemPersister keeps records in memory: for tests and throwaway keepers.
// It is safe for concurrent use through Store (which serializes writes).
type MemPersister struct {
	Records map[string][]byte
	// Fail, when set, makes Put fail for keys it returns true for.
	Fail func(key string) bool
}

var _ Persister = (*MemPersister)(nil)

// Put implements Persister.
func (m *MemPersister) Put(_ context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if m.Fail != nil && m.Fail(key) {
		return fmt.Errorf("injected failure for %s", key)
	}
	if m.Records == nil {
		m.Records = map[string][]byte{}
	}
	m.Records[key] = append([]byte(nil), value...)
	return nil
}

// Delete implements Persister.
func (m *MemPersister) Delete(_ context.Context, key string) error {
	delete(m.Records, key)
	return nil
}

// EmergencySwitch sets the global switch straight in the bucket, for when
// the keeper is down: it restores the state from kv, takes the next epoch
// (higher than every epoch the keeper gave out), and writes the switch and
// an audit entry through to kv. The caller publishes the returned switch
// on wire.SubjectControl. A keeper started afterwards restores it and
// continues from its epoch.
func EmergencySwitch(ctx context.Context, kv *KV, st wire.State, by string) (*GlobalSwitch, error) {
	recs, err := kv.Load(ctx)
	if err != nil {
		return nil, err
	}
	s, err := New(kv)
	if err != nil {
		return nil, err
	}
	if err := s.Restore(recs); err != nil {
		return nil, err
	}
	var g *GlobalSwitch
	err = s.Write(ctx, func(tx *Txn) error {
		g = &GlobalSwitch{Switch: Switch{State: st, Epoch: tx.NextEpoch(), By: by, At: tx.Now()}}
		if err := tx.PutSwitch(g); err != nil {
			return err
		}
		return tx.Audit(by, string(st)+" everything (straight to NATS)", "switch", fmt.Sprintf("epoch %d", g.Epoch))
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}
