package state

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"
)

// BenchmarkKVPutAfterCacheExpiry measures what one KV write costs the
// keeper's heap (the embedded NATS server runs in its process) when the
// bucket's last file block has left nats-server's cache, as it has before
// each checkpoint of a busy run (one a minute; the cache expires after
// 10 s). The server reads the whole block back to append to it, into a
// pooled buffer of 256 KiB, 1 MiB, 4 MiB or 8 MiB, whichever first holds
// the block; a KV bucket's block is 4 MiB and keeps every replaced value
// until it is full. Each iteration writes a 27 KB value (a busy run's
// checkpoint) to one key, after a collection, and waits out the cache.
// It reports the bytes allocated around the write and the block's size;
// with -v, each write's. It waits 11 s per iteration:
//
//	go test ./keeper/state -run '^$' -bench KVPutAfterCacheExpiry -benchtime 40x -v
func BenchmarkKVPutAfterCacheExpiry(b *testing.B) {
	dir := b.TempDir()
	ns := wiretest.StartNATS(b, wiretest.NATSConfig{StoreDir: dir}).Server
	defer ns.Shutdown()
	kv, nc := openKV(b, ns.ClientURL())
	defer nc.Close()
	ctx := context.Background()
	val := make([]byte, 27000)
	allocs := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 { metrics.Read(allocs); return allocs[0].Value.Uint64() }
	var total, sum uint64
	var blk int64
	i := 0
	for b.Loop() {
		_, _ = rand.Read(val) // incompressible, like sketch bins
		runtime.GC()
		a0 := allocated()
		if err := kv.Put(ctx, "checkpoint.run", val); err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the server's flush
		n := allocated() - a0
		total += n
		blk = 0
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && filepath.Ext(p) == ".blk" {
				blk += fi.Size()
			}
			return nil
		})
		sum += uint64(blk)
		b.Logf("write %2d: block files %8d B; allocated around the write %8d B", i, blk, n)
		i++
		time.Sleep(11 * time.Second) // past the server's 10 s cache expiry
	}
	b.ReportMetric(float64(total)/float64(b.N), "alloc-B/write")
	b.ReportMetric(float64(sum)/float64(b.N), "block-B")
}
