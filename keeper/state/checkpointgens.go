package state

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// Checkpoint records (keys under prefixCheckpoint) live apart from the rest
// of the state, in generations: KV buckets named after the state bucket
// and a number (koipond_ckpt_1, koipond_ckpt_2, ...), each replaced by the
// next once about rollBytes have been written to it.
//
// Why: a KV bucket's stream keeps every replaced value in its last file
// block until the block holds 4 MiB, and nats-server reads that whole
// block back into a pooled buffer of 256 KiB, 1 MiB or 4 MiB (the
// smallest that holds it) for a write that comes after the block's cache
// expired (10 s). Every checkpoint of a busy run is such a write. In the
// state bucket the buffer stepped to 1 MiB after about 10 minutes of a
// busy run and to 4 MiB after 40, and the keeper's heap (the embedded
// server runs in its process) swung with it. A generation's block stays
// under the smallest buffer.
//
// A roll creates generation n+1 and sends every put and delete there
// from then on. It then copies each live record of n into n+1 unless n+1
// already has a message for that key (a newer put, or a delete's marker),
// and deletes n. Opening (openCheckpointGens) rolls every
// generation it finds, younger first, and, once, the checkpoints older
// keepers left in the state bucket, into a new generation: a keeper that
// crashed mid-roll finishes it there. At every step the newest value of
// each live checkpoint is in some generation, and a deleted one comes
// back from none.
type checkpointGens struct {
	bucket   string // the state bucket's name
	replicas int
	// rollBytes is rollBytes but for tests.
	rollBytes int64

	// mu guards what follows. Put and Delete hold it for their write, so
	// that none lands in a generation a roll has finished copying; a roll
	// holds it only to swap generations.
	mu     sync.Mutex
	js     jetstream.JetStream
	cur    jetstream.KeyValue
	curGen uint64
	// prev is the generation being rolled from while its records are
	// copied into cur; nil otherwise.
	prev    jetstream.KeyValue
	prevGen uint64
	// gone are the keys deleted since the copy began: it may have put
	// one before its delete.
	gone map[string]bool
	// doomed is a generation rolled from whose bucket is still to be
	// deleted; 0 when none.
	doomed uint64
	// written is about how many bytes cur's stream has stored (every
	// message, replaced or not); live is the size of each live record in
	// cur, and liveBytes their sum.
	written   atomic.Int64 // changed under mu, read without (for /metrics)
	live      map[string]int64
	liveBytes int64
	// rolls counts the rolls finished since the keeper opened.
	rolls atomic.Uint64
}

const (
	// genInfix joins the state bucket's name and a generation's number.
	genInfix = "_ckpt_"
	// rollBytes is how much a generation takes before it is rolled (or
	// twice its live records, if more): its block stays under
	// nats-server's smallest pooled buffer, 256 KiB, with a checkpoint of
	// up to 64 KB on top.
	rollBytes = 192 << 10
	// msgOverhead is about what a stored message adds to its key and
	// value: its subject's prefix, headers, record header and checksum.
	msgOverhead = 64
)

var bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

// ValidBucket says what is wrong with a state bucket's name, or nil.
func ValidBucket(name string) error {
	if !bucketName.MatchString(name) {
		return fmt.Errorf("%q is not 1 to 200 of A-Z a-z 0-9 _ -", name)
	}
	if strings.Contains(name, genInfix) {
		return fmt.Errorf("%q contains %q, which names the buckets of a state bucket's checkpoints", name, genInfix)
	}
	return nil
}

func genName(bucket string, n uint64) string {
	return bucket + genInfix + strconv.FormatUint(n, 10)
}

// parseGen returns the number of a generation of bucket's checkpoints
// named name, or false.
func parseGen(bucket, name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, bucket+genInfix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != rest {
		return 0, false
	}
	return n, true
}

// openCheckpointGens finds bucket's checkpoint generations, rolls them and
// the checkpoints left in the state bucket main into a new one, and
// deletes what it rolled from. On error, nothing is deleted that the new
// generation does not hold.
func openCheckpointGens(ctx context.Context, js jetstream.JetStream, main jetstream.KeyValue, bucket string, replicas int) (*checkpointGens, error) {
	var gens []uint64
	names := js.KeyValueStoreNames(ctx)
	for name := range names.Name() {
		if n, ok := parseGen(bucket, name); ok {
			gens = append(gens, n)
		}
	}
	if err := names.Error(); err != nil {
		return nil, fmt.Errorf("state: listing the checkpoint buckets of %q: %w", bucket, err)
	}
	slices.Sort(gens)
	slices.Reverse(gens) // younger first
	next := uint64(1)
	if len(gens) > 0 {
		if gens[0] == math.MaxUint64 {
			return nil, fmt.Errorf("state: checkpoint bucket %q is numbered as high as a number goes: no next one (delete it, or start with another --bucket)", genName(bucket, gens[0]))
		}
		next = gens[0] + 1
	}
	g := &checkpointGens{bucket: bucket, replicas: max(1, replicas), rollBytes: rollBytes, js: js, live: map[string]int64{}}
	cur, err := g.create(ctx, js, next)
	if err != nil {
		return nil, err
	}
	g.cur, g.curGen = cur, next
	var from []jetstream.KeyValue
	for _, n := range gens {
		kv, err := js.KeyValue(ctx, genName(bucket, n))
		if err != nil {
			return nil, fmt.Errorf("state: opening checkpoint bucket %q: %w", genName(bucket, n), err)
		}
		from = append(from, kv)
	}
	copied, err := copyLive(ctx, cur, append(from, main))
	if err != nil {
		return nil, fmt.Errorf("state: rolling checkpoints into %q: %w", genName(bucket, next), err)
	}
	for key, n := range copied.sizes {
		g.addLive(key, n)
	}
	for _, n := range gens {
		if err := dropBucket(ctx, js, genName(bucket, n)); err != nil {
			return nil, fmt.Errorf("%w, rolled into %q", err, genName(bucket, next))
		}
	}
	for _, key := range copied.fromLast {
		if err := main.Delete(ctx, key); err != nil {
			return nil, fmt.Errorf("state: deleting checkpoint %s from %q, moved into %q: %w", key, bucket, genName(bucket, next), err)
		}
	}
	return g, nil
}

func (g *checkpointGens) create(ctx context.Context, js jetstream.JetStream, n uint64) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      genName(g.bucket, n),
		Description: "koipond keeper: run metrics checkpoints of bucket " + g.bucket,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    g.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("state: creating checkpoint bucket %q: %w", genName(g.bucket, n), err)
	}
	return kv, nil
}

// checkpointKeys matches the keys of checkpoint records, the only ones
// read from a checkpoint bucket: a record of another kind that someone
// put there is not the state's.
const checkpointKeys = prefixCheckpoint + ">"

// eachNewest calls fn with every live checkpoint record of each bucket
// in from (younger first), and i, the bucket's index; newest is true when
// no earlier bucket had a message (a put or a delete) for its key: the
// record is the key's newest, and a key deleted in a younger bucket
// stays deleted.
func eachNewest(ctx context.Context, from []jetstream.KeyValue, fn func(i int, e jetstream.KeyValueEntry, newest bool) error) error {
	seen := map[string]bool{}
	for i, kv := range from {
		err := eachLatest(ctx, kv, checkpointKeys, func(e jetstream.KeyValueEntry) error {
			newest := !seen[e.Key()]
			seen[e.Key()] = true
			if e.Operation() != jetstream.KeyValuePut {
				return nil
			}
			return fn(i, e, newest)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// copied is what copyLive put, each key's size; and every live key of
// the last bucket, copied or not.
type copied struct {
	sizes    map[string]int64
	fromLast []string
}

// copyLive copies into dst the newest live record of each key of the
// buckets in from (eachNewest) that dst has no message for.
func copyLive(ctx context.Context, dst jetstream.KeyValue, from []jetstream.KeyValue) (copied, error) {
	out := copied{sizes: map[string]int64{}}
	err := eachNewest(ctx, from, func(i int, e jetstream.KeyValueEntry, newest bool) error {
		if i == len(from)-1 {
			out.fromLast = append(out.fromLast, e.Key())
		}
		if !newest {
			return nil
		}
		_, err := dst.Update(ctx, e.Key(), e.Value(), 0)
		switch {
		case err == nil:
			out.sizes[e.Key()] = recordSize(e.Key(), e.Value())
			return nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			return nil // dst has a newer put or a delete
		default:
			return fmt.Errorf("copying %s from %q: %w", e.Key(), from[i].Bucket(), err)
		}
	})
	return out, err
}

// eachLatest calls fn with the latest message (put or delete) of each key
// of kv that keys matches (jetstream.AllKeys for every key), in stream
// order.
func eachLatest(ctx context.Context, kv jetstream.KeyValue, keys string, fn func(jetstream.KeyValueEntry) error) error {
	w, err := kv.Watch(ctx, keys)
	if err != nil {
		return fmt.Errorf("reading %q: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("reading %q: %w", kv.Bucket(), ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("reading %q: watcher closed", kv.Bucket())
			}
			if e == nil { // every existing key has been delivered
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// dropBucket deletes a checkpoint bucket; one already gone is no error.
func dropBucket(ctx context.Context, js jetstream.JetStream, name string) error {
	if err := js.DeleteKeyValue(ctx, name); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("state: deleting checkpoint bucket %q: %w", name, err)
	}
	return nil
}

func recordSize(key string, value []byte) int64 {
	return int64(len(key) + len(value) + msgOverhead)
}

// addLive notes key's live record in cur; mu held (or not yet shared).
func (g *checkpointGens) addLive(key string, n int64) {
	g.liveBytes += n - g.live[key]
	g.live[key] = n
	g.written.Add(n)
}

// put writes a checkpoint record to the current generation.
func (g *checkpointGens) put(ctx context.Context, key string, value []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := g.cur.Put(ctx, key, value); err != nil {
		return err
	}
	g.addLive(key, recordSize(key, value))
	return nil
}

// del deletes a checkpoint record. The delete marker it leaves in the
// current generation keeps a roll's copy (and an open's) from bringing
// the record back from an older one.
func (g *checkpointGens) del(ctx context.Context, key string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.cur.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	g.written.Add(recordSize(key, nil))
	g.liveBytes -= g.live[key]
	delete(g.live, key)
	if g.prev != nil {
		g.gone[key] = true
	}
	return nil
}

// load returns every live checkpoint record: the current generation's,
// and those of the one being rolled from that it lacks.
func (g *checkpointGens) load(ctx context.Context) (map[string][]byte, error) {
	g.mu.Lock()
	from := []jetstream.KeyValue{g.cur}
	if g.prev != nil {
		from = append(from, g.prev)
	}
	g.mu.Unlock()
	out := map[string][]byte{}
	err := eachNewest(ctx, from, func(_ int, e jetstream.KeyValueEntry, newest bool) error {
		if newest {
			out[e.Key()] = e.Value()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return out, nil
}

// rollDue reports whether the current generation has taken enough; mu
// held.
func (g *checkpointGens) rollDue() bool {
	return g.written.Load() >= max(g.rollBytes, 2*g.liveBytes)
}

// roll rolls the current generation once it has taken enough (rollDue),
// and finishes what an earlier call left undone: a copy that failed, or
// a bucket not yet deleted. Only one goroutine calls it (the keeper's
// scheduler); puts and deletes may run beside it.
func (g *checkpointGens) roll(ctx context.Context) error {
	if err := g.dropDoomed(ctx); err != nil {
		return err
	}
	g.mu.Lock()
	js := g.js
	if g.prev == nil {
		if !g.rollDue() {
			g.mu.Unlock()
			return nil
		}
		n := g.curGen + 1
		g.mu.Unlock()
		next, err := g.create(ctx, js, n)
		if err != nil {
			return err
		}
		g.mu.Lock()
		g.prev, g.prevGen, g.cur, g.curGen = g.cur, g.curGen, next, n
		g.liveBytes, g.live, g.gone = 0, map[string]int64{}, map[string]bool{}
		g.written.Store(0)
	}
	prev, cur := g.prev, g.cur
	prevName, curName := genName(g.bucket, g.prevGen), genName(g.bucket, g.curGen)
	g.mu.Unlock()
	c, err := copyLive(ctx, cur, []jetstream.KeyValue{prev})
	if err != nil {
		return fmt.Errorf("state: rolling checkpoints from %q into %q: %w", prevName, curName, err)
	}
	// Every live record of prev is in cur now, or cur has a newer message
	// for its key: prev can go.
	g.mu.Lock()
	for key, n := range c.sizes {
		if _, ok := g.live[key]; !ok && !g.gone[key] {
			g.addLive(key, n)
		}
	}
	g.doomed = g.prevGen
	g.prev, g.prevGen, g.gone = nil, 0, nil
	g.rolls.Add(1)
	g.mu.Unlock()
	return g.dropDoomed(ctx)
}

// dropDoomed deletes the bucket a finished roll copied from, if it is
// still there.
func (g *checkpointGens) dropDoomed(ctx context.Context) error {
	g.mu.Lock()
	n, js := g.doomed, g.js
	g.mu.Unlock()
	if n == 0 {
		return nil
	}
	if err := dropBucket(ctx, js, genName(g.bucket, n)); err != nil {
		return err
	}
	g.mu.Lock()
	if g.doomed == n {
		g.doomed = 0
	}
	g.mu.Unlock()
	return nil
}

// rebind reopens the generations through a new JetStream context.
func (g *checkpointGens) rebind(ctx context.Context, js jetstream.JetStream) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur, err := js.KeyValue(ctx, genName(g.bucket, g.curGen))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Deleted around the keeper (or lost with a NATS server's files):
		// made anew, as OpenKV makes the state bucket; the next
		// checkpoints fill it.
		cur, err = g.create(ctx, js, g.curGen)
	}
	if err != nil {
		return fmt.Errorf("state: reopening checkpoint bucket %q: %w", genName(g.bucket, g.curGen), err)
	}
	var prev jetstream.KeyValue
	if g.prev != nil {
		prev, err = js.KeyValue(ctx, genName(g.bucket, g.prevGen))
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			// Deleted around the keeper: there is nothing left to copy.
			prev, g.prevGen, g.gone = nil, 0, nil
		case err != nil:
			return fmt.Errorf("state: reopening checkpoint bucket %q: %w", genName(g.bucket, g.prevGen), err)
		}
	}
	g.js, g.cur, g.prev = js, cur, prev
	return nil
}
