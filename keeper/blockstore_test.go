package keeper

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// spaces are the two kinds of block space: memory, and a file in a
// temporary directory.
func spaces(t *testing.T) map[string]func() *blockSpace {
	return map[string]func() *blockSpace{
		"memory": newMemorySpace,
		"file": func() *blockSpace {
			sp, err := newFileSpace(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return sp
		},
	}
}

// A store gives back what was put, through any mix of puts that grow and
// shrink a bucket, drops and reuse, and it reuses freed blocks before it
// takes new ones; a bucket put again of the size it had reads back in one
// span.
func TestBlockStoreKeepsWhatIsPut(t *testing.T) {
	for name, newSpace := range spaces(t) {
		t.Run(name, func(t *testing.T) {
			sp := newSpace()
			defer sp.close()
			s := newBlockStore(sp)
			r := rand.New(rand.NewPCG(3, 4))
			const slots = 64
			var got [slots]stored
			var want [slots][]byte
			check := func(op int) {
				t.Helper()
				blocks := 0
				for i := range got {
					b, err := s.get(got[i], []byte("x"))
					if err != nil || !bytes.Equal(b[1:], want[i]) || b[0] != 'x' {
						t.Fatalf("op %d: slot %d holds %d bytes (%v), want %d", op, i, len(b)-1, err, len(want[i]))
					}
					if n := (len(want[i]) + blockBytes - 1) / blockBytes; len(got[i].blocks) != n {
						t.Fatalf("op %d: slot %d of %d bytes in %d blocks, want %d", op, i, len(want[i]), len(got[i].blocks), n)
					}
					blocks += len(got[i].blocks)
				}
				if s.used != blocks || s.used+len(s.free) != int(sp.next) {
					t.Fatalf("op %d: %d blocks used, %d free, %d handed out; slots hold %d", op, s.used, len(s.free), sp.next, blocks)
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
			if sp.next > slots*5 {
				t.Errorf("%d blocks handed out for at most %d held at once: freed blocks are not reused", sp.next, slots*5)
			}
			if s.held() != int(sp.next)*blockBytes || sp.bytes() != s.held() {
				t.Errorf("store holds %d bytes, space %d, %d blocks", s.held(), sp.bytes(), sp.next)
			}
			// A bucket dropped and put again takes back its blocks in order.
			var a stored
			if err := s.put(&a, make([]byte, 4*blockBytes)); err != nil {
				t.Fatal(err)
			}
			first := slices.Clone(a.blocks)
			s.drop(&a)
			if err := s.put(&a, make([]byte, 4*blockBytes)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.blocks, first) {
				t.Errorf("blocks %v put again as %v", first, a.blocks)
			}
		})
	}
}

// A full store refuses a put whole: the bucket keeps what it held, and a
// block taken before the store ran out is given back.
func TestBlockStoreFullKeepsTheBucket(t *testing.T) {
	for name, newSpace := range spaces(t) {
		t.Run(name, func(t *testing.T) {
			sp := newSpace()
			defer sp.close()
			s := newBlockStore(sp)
			s.maxBlocks = 16
			var a, b stored
			old := bytes.Repeat([]byte("a"), 3*blockBytes)
			if err := s.put(&a, old); err != nil {
				t.Fatal(err)
			}
			// One block left: growing a by two takes it, then fails.
			if err := s.put(&b, make([]byte, 12*blockBytes)); err != nil {
				t.Fatal(err)
			}
			used := s.used
			err := s.put(&a, bytes.Repeat([]byte("b"), 5*blockBytes))
			if !errors.Is(err, errStoreFull) || !errors.Is(err, errHistoryStore) {
				t.Fatalf("put past the bound: %v, want %v", err, errStoreFull)
			}
			if got, err := s.get(a, nil); err != nil || !bytes.Equal(got, old) || len(a.blocks) != 3 {
				t.Fatalf("after a refused put the bucket holds %q... (%v) in %d blocks", got[:4], err, len(a.blocks))
			}
			if s.used != used || len(s.free) != 1 || sp.next != 16 {
				t.Fatalf("after a refused put: %d blocks used (was %d), %d free, %d handed out; want the taken block free again", s.used, used, len(s.free), sp.next)
			}
			// Room made, the same put fits.
			s.drop(&b)
			if err := s.put(&a, bytes.Repeat([]byte("b"), 5*blockBytes)); err != nil {
				t.Fatal(err)
			}
			// The space's own bound holds too.
			sp.maxBlocks = sp.next
			var c stored
			if err := newBlockStore(sp).put(&c, []byte("c")); !errors.Is(err, errStoreFull) {
				t.Fatalf("put past the space's bound: %v, want %v", err, errStoreFull)
			}
		})
	}
}

// The history file is unlinked from the start: a keeper that dies leaves
// nothing in its data directory to clean up.
func TestHistoryFileLeavesNothingBehind(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "history")
	sp, err := newFileSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	s := newBlockStore(sp)
	var a stored
	if err := s.put(&a, bytes.Repeat([]byte("h"), 10*blockBytes)); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("history directory holds %v (%v), want nothing", ents, err)
	}
	if fi, err := sp.f.Stat(); err != nil || fi.Size() != 10*blockBytes {
		t.Fatalf("history file: %v, %v; want %d bytes", fi, err, 10*blockBytes)
	}
	if sp.memory() != 0 || sp.bytes() != 10*blockBytes {
		t.Errorf("file space: %d bytes of memory, %d of space", sp.memory(), sp.bytes())
	}
}

// A run forgotten gives its blocks back to the space, and the next run
// takes them before the space grows.
func TestForgottenRunsBlocksServeTheNext(t *testing.T) {
	sp, err := newFileSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	a := newAggregatorIn(sp)
	base := time.Unix(1_800_000_000, 0)
	reports := smallBusyReports(t, 9, 10)
	feed := func(run string) {
		for s := range 400 {
			if err := a.add(run, base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: run, Snapshot: reports[s%len(reports)]}); err != nil {
				t.Fatal(err)
			}
		}
	}
	feed("one")
	_, grown, _ := a.storeBytes()
	a.forget("one")
	if len(sp.free)*blockBytes != grown {
		t.Fatalf("forgotten run gave back %d bytes of %d", len(sp.free)*blockBytes, grown)
	}
	feed("two")
	if _, now, _ := a.storeBytes(); now != grown {
		t.Errorf("the space grew from %d to %d bytes for a run like the one forgotten", grown, now)
	}
	if w, _ := a.window("two", base, base.Add(400*time.Second)); w.Series["behavior:conversations.history"].Total() == 0 {
		t.Error("the second run's window is empty")
	}
}

// A history file that fails (here closed under the store: a disk error
// cannot be made to order) loses the buckets it could not keep and says
// so; the run goes on, its total whole, its accounting true.
func TestHistoryFileFailingLosesHistoryNotTheRun(t *testing.T) {
	sp, err := newFileSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newAggregatorIn(sp)
	base := time.Unix(1_800_000_000, 0)
	reports := smallBusyReports(t, 11, 12)
	add := func(s int) error {
		return a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]})
	}
	for s := range 30 {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	sp.f.Close()
	err = add(30)
	if !errors.Is(err, errHistoryStore) || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("report into a failed file: %v, want a history store error", err)
	}
	if w, _ := a.window("run", base, base.Add(31*time.Second)); len(w.Series) == 0 {
		t.Error("a window over the run merges nothing: the live seconds are lost too")
	}
	if _, _, readErrs := a.storeBytes(); readErrs == 0 {
		t.Error("buckets that could not be read were not counted")
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
	total, _, _ := a.total("run")
	if got := total.Series["behavior:conversations.history"].Total(); got == 0 {
		t.Error("the run's total lost its reports")
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
	got := rs.store.held()
	if lo, hi := rs.bytes, rs.bytes+buckets*blockBytes+len(rs.store.free)*blockBytes; got < lo || got > hi {
		t.Errorf("store holds %d bytes for %d encoded in %d buckets; want %d to %d", got, rs.bytes, buckets, lo, hi)
	}
	if _, space, _ := a.storeBytes(); space != got {
		t.Errorf("the space has handed out %d bytes, the run's store holds %d", space, got)
	}
	a.forget("run")
	if rs.store.held() != 0 || len(a.space.free)*blockBytes != got {
		t.Errorf("after the run was forgotten: its store holds %d bytes; %d bytes free in the space, want %d", rs.store.held(), len(a.space.free)*blockBytes, got)
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
			rs.store.maxBlocks = rs.store.used + len(rs.store.free) // full once its free blocks are used
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

// After the keeper closes its history, a late report or window (a handler
// finishing) gets an error or nothing, never a crash, from either space.
func TestClosedHistoryRefusesWithoutCrashing(t *testing.T) {
	for name, newSpace := range spaces(t) {
		t.Run(name, func(t *testing.T) {
			a := newAggregatorIn(newSpace())
			base := time.Unix(1_800_000_000, 0)
			reports := smallBusyReports(t, 13, 14)
			for s := range 20 {
				if err := a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]}); err != nil {
					t.Fatal(err)
				}
			}
			a.close()
			err := a.add("run", base.Add(20*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[0]})
			if !errors.Is(err, errSpaceClosed) {
				t.Fatalf("report after close: %v, want %v", err, errSpaceClosed)
			}
			a.window("run", base, base.Add(21*time.Second))
			a.forget("run")
		})
	}
}
