package keeper

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// A store gives back what was put, through any mix of puts that grow and
// shrink a bucket, drops and reuse, and it reuses freed blocks before it
// touches new memory.
func TestBlockStoreKeepsWhatIsPut(t *testing.T) {
	s := newBlockStore()
	defer s.release()
	r := rand.New(rand.NewPCG(3, 4))
	const slots = 64
	var got [slots]stored
	var want [slots][]byte
	check := func(op int) {
		t.Helper()
		blocks := 0
		for i := range got {
			if b := s.get(got[i], nil); !bytes.Equal(b, want[i]) {
				t.Fatalf("op %d: slot %d holds %d bytes, want %d (equal prefix: %v)", op, i, len(b), len(want[i]), bytes.HasPrefix(want[i], b))
			}
			if n := (len(want[i]) + blockBytes - 1) / blockBytes; len(got[i].blocks) != n {
				t.Fatalf("op %d: slot %d of %d bytes in %d blocks, want %d", op, i, len(want[i]), len(got[i].blocks), n)
			}
			blocks += len(got[i].blocks)
		}
		if s.used != blocks || s.used+len(s.free) != s.next {
			t.Fatalf("op %d: %d blocks used, %d free, %d handed out; slots hold %d", op, s.used, len(s.free), s.next, blocks)
		}
	}
	for op := range 20000 {
		i := r.IntN(slots)
		if r.IntN(5) == 0 {
			s.drop(&got[i])
			want[i] = nil
		} else {
			data := make([]byte, r.IntN(5*blockBytes))
			for j := range data {
				data[j] = byte(r.Uint32())
			}
			if err := s.put(&got[i], data); err != nil {
				t.Fatalf("op %d: %v", op, err)
			}
			if len(data) > 0 {
				want[i] = data
			} else {
				want[i] = nil
			}
		}
		if op%97 == 0 {
			check(op)
		}
	}
	check(-1)
	// At most 64 slots of 5 blocks were ever held at once.
	if s.next > slots*5 {
		t.Errorf("%d blocks handed out for at most %d held at once: freed blocks are not reused", s.next, slots*5)
	}
	if s.mapped() != s.next*blockBytes {
		t.Errorf("mapped %d bytes, %d blocks", s.mapped(), s.next)
	}
}

// A full store refuses a put whole: the bucket keeps what it held, and a
// block taken before the store ran out is given back.
func TestBlockStoreFullKeepsTheBucket(t *testing.T) {
	s := newBlockStore()
	defer s.release()
	s.maxChunks = 1
	var a, b stored
	old := bytes.Repeat([]byte("a"), 3*blockBytes)
	if err := s.put(&a, old); err != nil {
		t.Fatal(err)
	}
	// One block of the chunk left: growing a by two takes it, then fails.
	if err := s.put(&b, make([]byte, chunkBytes-4*blockBytes)); err != nil {
		t.Fatal(err)
	}
	used := s.used
	err := s.put(&a, bytes.Repeat([]byte("b"), 5*blockBytes))
	if !errors.Is(err, errStoreFull) || !errors.Is(err, errHistoryStore) {
		t.Fatalf("put past the bound: %v, want %v", err, errStoreFull)
	}
	if got := s.get(a, nil); !bytes.Equal(got, old) || len(a.blocks) != 3 {
		t.Fatalf("after a refused put the bucket holds %q... in %d blocks", got[:4], len(a.blocks))
	}
	if s.used != used || len(s.free) != 1 || s.next != blocksPerChunk {
		t.Fatalf("after a refused put: %d blocks used (was %d), %d free, %d handed out; want the taken block free again", s.used, used, len(s.free), s.next)
	}
	// Room made, the same put fits.
	s.drop(&b)
	if err := s.put(&a, bytes.Repeat([]byte("b"), 5*blockBytes)); err != nil {
		t.Fatal(err)
	}
}

// smallBusyReports are 8 distinct one-second reports of a busy run with
// 20 latency keys at 200 observations a second.
func smallBusyReports(tb testing.TB, seed1, seed2 uint64) [][]byte {
	lat, events := busyKeys(20)
	r := rand.New(rand.NewPCG(seed1, seed2))
	var reports [][]byte
	for range 8 {
		reports = append(reports, busyReport(tb, r, lat, events, 200, 1))
	}
	return reports
}

// A run's history lives in its store, rounded up to blocks, and its store
// is given back when the run is forgotten.
func TestHistoryStoreFollowsTheRun(t *testing.T) {
	a := newAggregator()
	base := time.Unix(1_800_000_000, 0)
	reports := smallBusyReports(t, 5, 6)
	for s := range 600 {
		if err := a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]}); err != nil {
			t.Fatal(err)
		}
	}
	rs := a.runs["run"]
	buckets := 0
	for i := range rs.rings {
		for _, b := range rs.rings[i] {
			if b.enc.n > 0 {
				buckets++
			}
		}
	}
	if n, ok := a.historyBytes("run"); !ok || n == 0 || buckets == 0 {
		t.Fatalf("history %d bytes (%v) in %d buckets", n, ok, buckets)
	}
	got := a.storeBytes()
	if lo, hi := rs.bytes, rs.bytes+buckets*blockBytes+len(rs.store.free)*blockBytes; got < lo || got > hi {
		t.Errorf("store holds %d bytes for %d encoded in %d buckets; want %d to %d", got, rs.bytes, buckets, lo, hi)
	}
	a.forget("run")
	if got := a.storeBytes(); got != 0 || rs.store.m.c != nil || rs.store.mapped() != 0 {
		t.Errorf("after the run was forgotten: %d bytes in stores; its store still maps %d chunks", got, len(rs.store.m.c))
	}
}

// A run whose store cannot take its history loses history, says so, and
// keeps the rest: every report still counts in its total, the encoded
// bytes it counts are the bytes its buckets hold, and windows still merge.
func TestHistoryStoreFullLosesHistoryNotTheRun(t *testing.T) {
	a := newAggregator()
	base := time.Unix(1_800_000_000, 0)
	reports := smallBusyReports(t, 7, 8)
	var err error
	s := 0
	for ; s < 3600 && err == nil; s++ {
		if s == 30 {
			rs := a.runs["run"]
			rs.store.maxChunks = len(rs.store.m.c) // full once its chunks are
		}
		err = a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]})
	}
	if !errors.Is(err, errHistoryStore) {
		t.Fatalf("after %d seconds into a full store: %v, want a history store error", s, err)
	}
	// Go on past the failure: every report counts in the total.
	for end := s + 120; s < end; s++ {
		if err := a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]}); err != nil && !errors.Is(err, errHistoryStore) {
			t.Fatalf("second %d: %v", s, err)
		}
	}
	rs := a.runs["run"]
	held := 0
	for i := range rs.rings {
		for _, b := range rs.rings[i] {
			held += b.enc.n
		}
	}
	if held != rs.bytes || rs.store.used*blockBytes < held {
		t.Errorf("%d bytes held in buckets, %d counted, %d in used blocks", held, rs.bytes, rs.store.used*blockBytes)
	}
	want := map[string]uint64{}
	for i := range s {
		var snap metrics.Snapshot
		if err := snap.UnmarshalBinary(reports[i%len(reports)]); err != nil {
			t.Fatal(err)
		}
		for k, ss := range snap.Series {
			want[k] += ss.Total()
		}
	}
	total, _, _ := a.total("run")
	for k, n := range want {
		if got := total.Series[k].Total(); got != n {
			t.Errorf("total of %s: %d, want %d", k, got, n)
		}
	}
	if w, _ := a.window("run", base, base.Add(time.Duration(s)*time.Second)); len(w.Series) == 0 {
		t.Error("a window over the run merges nothing")
	}
}
