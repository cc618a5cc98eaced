package keeper

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
			if s.held() != int(sp.next)*blockBytes || sp.bytes() != int64(s.held()) {
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

// A run's history lives in its store, rounded up to blocks, and its
// store is given back when the run is forgotten: its own memory unmapped,
// or its blocks returned to the shared history file.
func TestHistoryStoreFollowsTheRun(t *testing.T) {
	for name, newAgg := range map[string]func() *aggregator{
		"memory": newAggregator,
		"file": func() *aggregator {
			sp, err := newFileSpace(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return newAggregatorIn(sp)
		},
	} {
		t.Run(name, func(t *testing.T) {
			a := newAgg()
			defer a.close()
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
			mem, space, _ := a.storeBytes()
			if space != int64(got) {
				t.Errorf("the space has handed out %d bytes, the run's store holds %d", space, got)
			}
			if inMemory := name == "memory"; (mem >= space && mem > 0) != inMemory {
				t.Errorf("%s: %d bytes of memory for %d of space", name, mem, space)
			}
			sp := rs.store.sp
			a.forget("run")
			if rs.store.held() != 0 {
				t.Errorf("after the run was forgotten its store holds %d bytes", rs.store.held())
			}
			if mem, _, _ := a.storeBytes(); mem != 0 || sp.memory() != 0 {
				t.Errorf("after the run was forgotten: %d bytes of memory in stores, %d in its space", mem, sp.memory())
			}
			if name == "file" && len(sp.free)*blockBytes != got {
				t.Errorf("after the run was forgotten: %d bytes free in the file, want %d", len(sp.free)*blockBytes, got)
			}
		})
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

// A run forgotten gives its blocks back to the file, and the next run
// takes them before the file grows; what the next run reads back is its
// own, not what the forgotten run left in those blocks.
func TestForgottenRunsBlocksServeTheNext(t *testing.T) {
	sp, err := newFileSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newAggregatorIn(sp)
	defer a.close()
	base := time.Unix(1_800_000_000, 0)
	feed := func(run string, reports [][]byte) map[string]uint64 {
		want := map[string]uint64{}
		for s := range 400 {
			rep := reports[s%len(reports)]
			if err := a.add(run, base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: run, Snapshot: rep}); err != nil {
				t.Fatal(err)
			}
			var snap metrics.Snapshot
			if err := snap.UnmarshalBinary(rep); err != nil {
				t.Fatal(err)
			}
			for k, ss := range snap.Series {
				want[k] += ss.Total()
			}
		}
		return want
	}
	feed("one", smallBusyReports(t, 9, 10))
	_, grown, _ := a.storeBytes()
	a.forget("one")
	if int64(len(sp.free))*blockBytes != grown {
		t.Fatalf("forgotten run gave back %d bytes of %d", len(sp.free)*blockBytes, grown)
	}
	// Another run of the same shape: its buckets compress to about the
	// same sizes (key ids, given in report order, may differ).
	want := feed("two", smallBusyReports(t, 19, 20))
	if _, now, _ := a.storeBytes(); now > grown+grown/10 {
		t.Errorf("the space grew from %d to %d bytes for a run like the one forgotten", grown, now)
	}
	// Every second but the live ones is read back from the file.
	w, _ := a.window("two", base, base.Add(400*time.Second))
	for k, n := range want {
		if got := w.Series[k].Total(); got != n {
			t.Errorf("window of the second run, %s: %d, want %d", k, got, n)
		}
	}
}

// A history file that fails (here closed under the store: a disk error
// cannot be made to order) loses the buckets it could not keep and says
// so; the run goes on, its total whole, its accounting true: no block
// lost, none counted twice.
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
	// Past six minutes, seconds move into the 10 s tier, read back and
	// written again.
	const before = 400
	for s := range before {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	sp.f.Close()
	for s := before; s < before+20; s++ {
		err = add(s)
		if !errors.Is(err, errHistoryStore) || !errors.Is(err, os.ErrClosed) {
			t.Fatalf("report %d into a failed file: %v, want a history store error", s, err)
		}
	}
	if w, _ := a.window("run", base.Add(before*time.Second), base.Add((before+20)*time.Second)); len(w.Series) == 0 {
		t.Error("a window over the seconds since the failure merges nothing: the live seconds are lost too")
	}
	if _, _, readErrs := a.storeBytes(); readErrs == 0 {
		t.Error("buckets that could not be read were not counted")
	}
	rs := a.runs["run"]
	held, blocks := 0, 0
	for i := range rs.rings {
		for _, b := range rs.rings[i] {
			held += b.enc.n
			blocks += len(b.enc.blocks)
		}
	}
	if held != rs.bytes || rs.store.used != blocks || rs.store.used+len(rs.store.free)+len(sp.free) != int(sp.next) {
		t.Errorf("%d bytes held in buckets, %d counted; %d blocks in buckets, %d used, %d free, %d free in the space, %d handed out",
			held, rs.bytes, blocks, rs.store.used, len(rs.store.free), len(sp.free), sp.next)
	}
	total, _, _ := a.total("run")
	var snap metrics.Snapshot
	if err := snap.UnmarshalBinary(reports[0]); err != nil {
		t.Fatal(err)
	}
	for k := range snap.Series {
		var want uint64
		for s := range before + 20 {
			var r metrics.Snapshot
			_ = r.UnmarshalBinary(reports[s%len(reports)])
			want += r.Series[k].Total()
		}
		if got := total.Series[k].Total(); got != want {
			t.Errorf("total of %s: %d, want %d", k, got, want)
		}
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

// A bucket the history file cannot give back (here the file truncated
// under it: a read error cannot be made to order) is left as it is when a
// late report is merged into it, not overwritten by that report alone.
func TestUnreadableBucketIsNotOverwritten(t *testing.T) {
	sp, err := newFileSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newAggregatorIn(sp)
	defer a.close()
	base := time.Unix(1_800_000_000, 0) // a multiple of 10 s
	reports := smallBusyReports(t, 15, 16)
	add := func(s int) error {
		return a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]})
	}
	// Seconds 30–39 have moved into their 10 s bucket by now.
	for s := range 401 {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	rs := a.runs["run"]
	b := rs.slot(1, floorDiv(base.Unix()+30, 10))
	if b.enc.n == 0 {
		t.Fatal("the 10 s bucket of seconds 30–39 is empty")
	}
	n, blocks := b.enc.n, slices.Clone(b.enc.blocks)
	if err := sp.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	err = add(35) // late: merged into that bucket
	if !errors.Is(err, errHistoryStore) || !errors.Is(err, io.EOF) {
		t.Fatalf("a late report into an unreadable bucket: %v, want a history store error", err)
	}
	if b.enc.n != n || !slices.Equal(b.enc.blocks, blocks) {
		t.Errorf("the unreadable bucket was rewritten: %d bytes in %v, was %d in %v", b.enc.n, b.enc.blocks, n, blocks)
	}
	// The report counts in the run's total all the same.
	total, _, _ := a.total("run")
	for k := range total.Series {
		var want uint64
		for _, s := range append(seq(0, 401), 35) {
			var r metrics.Snapshot
			_ = r.UnmarshalBinary(reports[s%len(reports)])
			want += r.Series[k].Total()
		}
		if got := total.Series[k].Total(); got != want {
			t.Errorf("total of %s: %d, want %d", k, got, want)
		}
	}
}

// BenchmarkHistorySpace compares keeping the history in memory and in the
// history file, on the two paths that touch it: a second of a busy run's
// reports merged (10 schools; once six minutes have passed, every second
// also moves an older one into its 10 s bucket, read back and written
// again), and a 30-minute window read (a UI chart: 180 buckets of 10 s
// read back).
//
//	go test ./keeper -run '^$' -bench HistorySpace
func BenchmarkHistorySpace(b *testing.B) {
	snaps := reportSnapshots(b, 10, 50)
	for _, name := range []string{"memory", "file"} {
		newAgg := func() *aggregator {
			if name == "memory" {
				return newAggregator()
			}
			sp, err := newFileSpace(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return newAggregatorIn(sp)
		}
		base := time.Unix(1_800_000_000, 0)
		feed := func(a *aggregator, sec int) {
			for _, s := range snaps {
				if err := a.add("run", base.Add(time.Duration(sec)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: s}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(name+"/second", func(b *testing.B) {
			a := newAgg()
			defer a.close()
			sec := 0
			for ; sec < 400; sec++ {
				feed(a, sec)
			}
			for b.Loop() {
				feed(a, sec)
				sec++
			}
		})
		b.Run(name+"/window30m", func(b *testing.B) {
			a := newAgg()
			defer a.close()
			for sec := range 2400 {
				feed(a, sec)
			}
			for b.Loop() {
				if w, _ := a.window("run", base.Add(400*time.Second), base.Add(2200*time.Second)); len(w.Series) == 0 {
					b.Fatal("empty window")
				}
			}
		})
	}
}

// A history file leaves its disk's reserve free (the keeper's state is on
// the same disk): past it, the file does not grow, with an error saying
// why, and blocks already held are still reused.
func TestHistoryFileLeavesTheDiskItsReserve(t *testing.T) {
	sp, err := newFileSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	free, _, err := diskSpace(sp.f)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("free disk space is not known on this system: the history file is bounded by maxSpaceBlocks alone")
	}
	if err != nil {
		t.Fatal(err)
	}
	s := newBlockStore(sp)
	var a, b stored
	if err := s.put(&a, make([]byte, 3*blockBytes)); err != nil {
		t.Fatal(err)
	}
	// The disk as it is, with a reserve above what it has free: the next
	// look at it refuses to grow the file.
	sp.reserve = func(int64) int64 { return free + 1<<30 }
	sp.checkAt = sp.next
	err = s.put(&b, make([]byte, blockBytes))
	if !errors.Is(err, errStoreFull) || !strings.Contains(err.Error(), "MiB free") {
		t.Fatalf("growing the file past the disk's reserve: %v, want a full store saying what the disk has free", err)
	}
	s.drop(&a)
	if err := s.put(&b, make([]byte, 3*blockBytes)); err != nil {
		t.Fatalf("reusing the blocks held: %v", err)
	}
	sp.reserve = diskReserve
	if err := s.put(&a, make([]byte, blockBytes)); err != nil {
		t.Fatalf("with the disk's own reserve: %v", err)
	}
}

// A store that cannot take a run's seconds (full, or its disk failing)
// drops them, each with its error: they do not pile up live, every report
// encoding them all again. Before, 355 piled up in 400 reports, each
// report taking 0.6 s.
func TestHistoryErrorsDoNotPileUp(t *testing.T) {
	a := newAggregator()
	base := time.Unix(1_800_000_000, 0)
	reports := smallBusyReports(t, 17, 18)
	for s := range 400 {
		if s == 30 {
			rs := a.runs["run"]
			rs.store.maxBlocks = rs.store.used + len(rs.store.free) // full from now on
		}
		err := a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]})
		if err != nil && !errors.Is(err, errHistoryStore) {
			t.Fatalf("second %d: %v", s, err)
		}
		if n := len(a.runs["run"].live); n > liveFor+1 {
			t.Fatalf("second %d: %d seconds live, at most %d should be", s, n, liveFor+1)
		}
	}
}

// A report whose history cannot be kept (its bucket unreadable, or the
// store full) still counts in the run's total and traffic, and a tier-0
// bucket that cannot be read back is left as it is.
func TestReportsCountInTheTotalWhateverTheirHistory(t *testing.T) {
	sp, err := newFileSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newAggregatorIn(sp)
	defer a.close()
	base := time.Unix(1_800_000_000, 0)
	reports := smallBusyReports(t, 21, 22)
	add := func(s int) error {
		return a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)], FramesIn: 1})
	}
	for s := range 100 {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	rs := a.runs["run"]
	b := rs.slot(0, base.Unix()+50)
	if b.enc.n == 0 {
		t.Fatal("second 50 is not encoded")
	}
	n, blocks := b.enc.n, slices.Clone(b.enc.blocks)
	if err := sp.f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if err := add(50); !errors.Is(err, errHistoryStore) { // late, into its encoded second
		t.Fatalf("late report into an unreadable bucket: %v, want a history store error", err)
	}
	if b.enc.n != n || !slices.Equal(b.enc.blocks, blocks) || b.snap != nil {
		t.Errorf("the unreadable bucket was rewritten: %d bytes in %v (live %v), was %d in %v", b.enc.n, b.enc.blocks, b.snap != nil, n, blocks)
	}
	total, tr, _ := a.total("run")
	for k := range total.Series {
		var want uint64
		for _, s := range append(seq(0, 100), 50) {
			var r metrics.Snapshot
			_ = r.UnmarshalBinary(reports[s%len(reports)])
			want += r.Series[k].Total()
		}
		if got := total.Series[k].Total(); got != want {
			t.Errorf("total of %s: %d, want %d", k, got, want)
		}
	}
	if tr.FramesIn != 101 {
		t.Errorf("traffic: %d frames in, want 101", tr.FramesIn)
	}
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// A bucket whose bytes were changed on disk (a key id of one byte) is an
// error when read back, not a crash of the keeper.
func TestCorruptBucketIsAnErrorNotACrash(t *testing.T) {
	a := newAggregator()
	base := time.Unix(1_800_000_000, 0)
	reports := smallBusyReports(t, 23, 24)
	for s := range 20 {
		if err := a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: reports[s%len(reports)]}); err != nil {
			t.Fatal(err)
		}
	}
	rs := a.runs["run"]
	b := rs.slot(0, base.Unix()+5)
	var snap metrics.Snapshot
	if err := snap.UnmarshalBinary(reports[0]); err != nil {
		t.Fatal(err)
	}
	bad := &metrics.Snapshot{Series: map[string]*metrics.SeriesSnapshot{}}
	for _, ss := range snap.Series {
		bad.Series["x"] = ss // one byte: no key id
		break
	}
	raw, err := bad.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := bucketCodec()
	if err := rs.store.put(&b.enc, enc.EncodeAll(raw, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.read(rs, b); err == nil || !strings.Contains(err.Error(), "unknown key id") {
		t.Fatalf("reading a bucket with a one-byte key: %v, want an unknown key id", err)
	}
}
