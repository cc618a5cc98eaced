package warehouse

import (
	"bufio"
	"compress/gzip"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// heapPeak runs f while sampling the live heap every half millisecond, and
// returns the highest sample above the heap before f.
func heapPeak(f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(500 * time.Microsecond)
		defer tk.Stop()
		for {
			if v := read(); v > peak {
				peak = v
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	if v := read(); v > peak {
		peak = v
	}
	if peak < base {
		return 0
	}
	return peak - base
}

// The attack as a user meets it, through Generate alone: a gzipped CSV
// file whose one data line is 64 MiB (a few hundred KB on disk, written
// here, never stored). Generate stops with an error naming the part, row,
// column and limit, and the heap stays far below the line's size.
func TestGenerateHugeLineFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "calls.csv.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	zw.Write([]byte("user,method,timestamp\n"))
	pat := make([]byte, 1000)
	letters(rand.New(rand.NewPCG(11, 12)))(pat)
	block := []byte(strings.Repeat(string(pat), 64))
	for range (64 << 20) / len(block) {
		zw.Write(block)
	}
	zw.Write([]byte(",m,1793491200\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	f.Close()

	var gerr error
	peak := heapPeak(func() { _, gerr = Generate(context.Background(), Options{From: p, TempDir: t.TempDir()}, nil) })
	if gerr == nil {
		t.Fatal("a 64 MiB line was read as a row")
	}
	for _, w := range []string{p + ": row 1 (line 2), column \"user\"", "1048576 bytes"} {
		if !strings.Contains(gerr.Error(), w) {
			t.Errorf("error %q does not say %q", gerr, w)
		}
	}
	if peak > 24<<20 {
		t.Errorf("heap grew by %s for a 64 MiB line", byteSize(int64(peak)))
	}
	t.Logf("heap +%s: %v", byteSize(int64(peak)), gerr)
}
