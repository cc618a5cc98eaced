package keeper

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// Encoded history buckets are most of what a busy run keeps for hours,
// and they stay: an hour of 10 s buckets, then 6 hours of minutes, then a
// day of 5 minutes. They are kept in blocks of blockBytes off the Go heap,
// in a blockSpace:
//
//   - In the keeper, one space holds every run's blocks: a file in its
//     data directory (history/), unlinked as soon as it is made, so that
//     it goes with the keeper, crash or not. Blocks are written and read
//     with pwrite and pread, so the history is in the kernel's page
//     cache, which it may write out and reclaim, not in the keeper's
//     memory: the keeper's memory stays flat while a run's hour and day of
//     history fill (issue 14's soak), and a history of up to 10 MiB a run
//     costs disk, not RSS. One file, not one per run: runs are kept a day
//     after they end, and each would hold a descriptor.
//   - Without a data directory it can write (tests, a read-only disk),
//     each run has a space of its own in anonymous memory, mapped in
//     chunks of chunkBytes as needed (memory from make, on systems without
//     mmap) and unmapped when the run is forgotten. On the Go heap each
//     byte of history would cost about two of the keeper's memory, since
//     the collector lets the heap grow to twice what is live; here a byte
//     costs a byte, plus at most one block per bucket.
//
// Each run has a blockStore in its space: the blocks its buckets use and
// the blocks it freed, reused before it takes more, bounded by
// maxStoreBlocks. A forgotten run's blocks go back to a shared space for
// other runs. The space never hands out its memory: put copies a bucket
// in, get copies it out. Its owner (the aggregator, under its lock) guards
// both.
type blockSpace struct {
	f   *os.File // the history file, or nil
	mem *chunks  // or memory, when f is nil
	// next is how many blocks the space has handed out; free are blocks
	// of forgotten runs, reused first.
	next uint32
	free []uint32
	// maxBlocks bounds the space (maxSpaceBlocks, but for tests).
	maxBlocks uint32
	// A file grows only while its disk keeps reserve(size) bytes free
	// besides (diskReserve, but for tests), looked at again each time the
	// file has grown by diskCheckBlocks, from block checkAt on.
	reserve func(size int64) int64
	checkAt uint32
	closed  bool
}

// blockStore is one run's part of a blockSpace.
type blockStore struct {
	sp *blockSpace
	// own says sp is the store's alone, closed on release.
	own bool
	// free are the run's blocks given back, reused last-freed first, in
	// the order they were given (giveBack), so that a bucket put again
	// gets the blocks it had: one read and one write for most buckets.
	free []uint32
	// used is how many of the run's blocks are in buckets now.
	used int
	// maxBlocks bounds the run's blocks, used and free (maxStoreBlocks,
	// but for tests).
	maxBlocks int
}

// chunks are a memory space's mapped memory, apart from the space so that
// the cleanup unmapping them does not keep the space reachable.
type chunks struct{ c [][]byte }

const (
	blockBytes     = 256
	chunkBytes     = 256 << 10
	blocksPerChunk = chunkBytes / blockBytes
	// maxStoreBlocks bounds a run's store: 16 MiB, well above what
	// maxRunBytes of buckets need (one partly filled block per bucket on
	// top).
	maxStoreBlocks = 16 << 20 / blockBytes
	// maxSpaceBlocks bounds every run's stores together: 2 GiB, some 200
	// busy runs' day of history.
	maxSpaceBlocks = 2 << 30 / blockBytes
	// diskCheckBlocks is how much a history file grows between looks at
	// its disk's free space: 256 KiB.
	diskCheckBlocks = 1024
	// historyDir is the history file's directory in the keeper's data
	// directory.
	historyDir = "history"
)

// errHistoryStore is wrapped by every error of a store: full, or its
// memory or file failing. errStoreFull is put's when a store would pass
// its bound.
var (
	errHistoryStore = errors.New("history store")
	errStoreFull    = fmt.Errorf("%w full", errHistoryStore)
)

// stored is a bucket's bytes in a blockStore: its blocks in order and its
// length. The zero value is no bytes.
type stored struct {
	blocks []uint32
	n      int
}

// newMemorySpace returns a space in anonymous memory.
func newMemorySpace() *blockSpace {
	sp := &blockSpace{mem: &chunks{}, maxBlocks: maxSpaceBlocks}
	runtime.AddCleanup(sp, func(m *chunks) { m.unmap() }, sp.mem)
	return sp
}

// newFileSpace returns a space in a new unlinked file in dir, which it
// makes when missing. The file is closed when the space is closed (or by
// os.File's own finalizer, when found unreachable).
func newFileSpace(dir string) (*blockSpace, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", errHistoryStore, err)
	}
	f, err := unlinkedFile(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: a file in %s: %w", errHistoryStore, dir, err)
	}
	return &blockSpace{f: f, maxBlocks: maxSpaceBlocks, reserve: diskReserve}, nil
}

// unlinkedFile makes a file in dir and unlinks it: it lives while it is
// open.
func unlinkedFile(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "history-*.blocks")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		os.Remove(f.Name()) // where an open file cannot be removed
		return nil, err
	}
	return f, nil
}

// close closes a space's file or unmaps its memory; it must not be used
// after.
func (sp *blockSpace) close() {
	sp.closed = true
	if sp.f != nil {
		sp.f.Close()
	}
	if sp.mem != nil {
		sp.mem.unmap()
	}
}

// bytes is what the space has handed out, in use or free: the history
// file's extent (holes and a last block partly written included), or the
// memory touched.
func (sp *blockSpace) bytes() int64 { return int64(sp.next) * blockBytes }

// memory is what the space holds in the keeper's memory: its mapped
// chunks; none for a file.
func (sp *blockSpace) memory() int64 {
	if sp.mem == nil {
		return 0
	}
	return int64(len(sp.mem.c)) * chunkBytes
}

func (sp *blockSpace) alloc() (uint32, error) {
	if sp.closed {
		return 0, errSpaceClosed
	}
	if n := len(sp.free); n > 0 {
		b := sp.free[n-1]
		sp.free = sp.free[:n-1]
		return b, nil
	}
	if sp.next >= sp.maxBlocks {
		return 0, fmt.Errorf("%w: every run's history together takes %d MiB", errStoreFull, int64(sp.maxBlocks)*blockBytes>>20)
	}
	if sp.f != nil && sp.next >= sp.checkAt {
		if err := sp.checkDisk(); err != nil {
			return 0, err
		}
	}
	if sp.mem != nil && int(sp.next) == len(sp.mem.c)*blocksPerChunk {
		c, err := mapChunk(chunkBytes)
		if err != nil {
			return 0, fmt.Errorf("%w: mapping %d KiB: %w", errHistoryStore, chunkBytes>>10, err)
		}
		sp.mem.c = append(sp.mem.c, c)
	}
	b := sp.next
	sp.next++
	return b, nil
}

// diskReserve is what a history file leaves free on its disk: 5% of it,
// at least 64 MiB. The keeper's own state (the embedded server's
// JetStream files) is on the same disk, and a stop that cannot be
// persisted is not made.
func diskReserve(size int64) int64 { return max(64<<20, size/20) }

// checkDisk refuses to grow the file by diskCheckBlocks more when its
// disk would keep less than its reserve free.
func (sp *blockSpace) checkDisk() error {
	free, size, err := diskSpace(sp.f)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		sp.checkAt = sp.maxBlocks
		return nil
	case err != nil:
		return fmt.Errorf("%w: the history file's disk: %w", errHistoryStore, err)
	}
	if keep := sp.reserve(size); free-diskCheckBlocks*blockBytes < keep {
		return fmt.Errorf("%w: the disk holding the history file has %d MiB free, and %d MiB of it are left for the keeper's state",
			errStoreFull, free>>20, keep>>20)
	}
	sp.checkAt = sp.next + diskCheckBlocks
	return nil
}

// errSpaceClosed is the error of a space used after close.
var errSpaceClosed = fmt.Errorf("%w closed", errHistoryStore)

// write writes p at block b and the blocks after it.
func (sp *blockSpace) write(b uint32, p []byte) error {
	if sp.closed {
		return errSpaceClosed
	}
	if sp.f != nil {
		if _, err := sp.f.WriteAt(p, int64(b)*blockBytes); err != nil {
			return fmt.Errorf("%w: %w", errHistoryStore, err)
		}
		return nil
	}
	for len(p) > 0 {
		n := copy(sp.block(b), p)
		p = p[n:]
		b++
	}
	return nil
}

// read fills p from block b and the blocks after it.
func (sp *blockSpace) read(b uint32, p []byte) error {
	if sp.closed {
		return errSpaceClosed
	}
	if sp.f != nil {
		if _, err := sp.f.ReadAt(p, int64(b)*blockBytes); err != nil {
			return fmt.Errorf("%w: %w", errHistoryStore, err)
		}
		return nil
	}
	for len(p) > 0 {
		n := copy(p, sp.block(b))
		p = p[n:]
		b++
	}
	return nil
}

func (sp *blockSpace) block(b uint32) []byte {
	c := sp.mem.c[b/blocksPerChunk]
	off := int(b%blocksPerChunk) * blockBytes
	return c[off : off+blockBytes : off+blockBytes]
}

// newBlockStore returns a store in sp, or in a memory space of its own
// when sp is nil.
func newBlockStore(sp *blockSpace) *blockStore {
	if sp == nil {
		return &blockStore{sp: newMemorySpace(), own: true, maxBlocks: maxStoreBlocks}
	}
	return &blockStore{sp: sp, maxBlocks: maxStoreBlocks}
}

// put makes dst hold data, reusing dst's blocks. On error dst holds what
// it held, or, when writing failed, nothing.
func (s *blockStore) put(dst *stored, data []byte) error {
	need := (len(data) + blockBytes - 1) / blockBytes
	have := len(dst.blocks)
	blocks := dst.blocks
	if need > have {
		if cap(blocks) < need {
			blocks = make([]uint32, have, need)
			copy(blocks, dst.blocks)
		}
		for len(blocks) < need {
			b, err := s.alloc()
			if err != nil {
				s.giveBack(blocks[have:])
				return err
			}
			blocks = append(blocks, b)
		}
	} else {
		s.giveBack(blocks[need:])
		blocks = blocks[:need]
	}
	err := spans(blocks, len(data), func(b uint32, from, to int) error { return s.sp.write(b, data[from:to]) })
	if err != nil {
		s.giveBack(blocks)
		*dst = stored{}
		return err
	}
	dst.blocks, dst.n = blocks, len(data)
	if need == 0 {
		dst.blocks = nil
	}
	return nil
}

// get appends the bytes of src to buf and returns it.
func (s *blockStore) get(src stored, buf []byte) ([]byte, error) {
	at := len(buf)
	buf = append(buf, make([]byte, src.n)...)
	err := spans(src.blocks, src.n, func(b uint32, from, to int) error { return s.sp.read(b, buf[at+from:at+to]) })
	if err != nil {
		return buf[:at], err
	}
	return buf, nil
}

// spans calls fn for each run of consecutive blocks holding n bytes, with
// the first block and the byte range the run holds.
func spans(blocks []uint32, n int, fn func(b uint32, from, to int) error) error {
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j] == blocks[j-1]+1 {
			j++
		}
		if err := fn(blocks[i], i*blockBytes, min(j*blockBytes, n)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// drop gives src's blocks back and empties it.
func (s *blockStore) drop(src *stored) {
	s.giveBack(src.blocks)
	*src = stored{}
}

// held is what the store holds of its space: its blocks, used and free.
func (s *blockStore) held() int { return (s.used + len(s.free)) * blockBytes }

// release gives the store's free blocks back to its shared space, or
// unmaps its own. Every bucket must have been dropped first; the store
// must not be used after.
func (s *blockStore) release() {
	if s.own {
		s.sp.close()
	} else {
		s.sp.free = append(s.sp.free, s.free...)
	}
	s.free, s.used = nil, 0
}

func (s *blockStore) alloc() (uint32, error) {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		s.used++
		return b, nil
	}
	if s.used >= s.maxBlocks {
		return 0, fmt.Errorf("%w: %d KiB", errStoreFull, s.maxBlocks*blockBytes>>10)
	}
	b, err := s.sp.alloc()
	if err != nil {
		return 0, err
	}
	s.used++
	return b, nil
}

// giveBack frees blocks, last first, so that alloc takes them back in
// their order.
func (s *blockStore) giveBack(blocks []uint32) {
	for i := len(blocks) - 1; i >= 0; i-- {
		s.free = append(s.free, blocks[i])
	}
	s.used -= len(blocks)
}

func (m *chunks) unmap() {
	for _, c := range m.c {
		unmapChunk(c)
	}
	m.c = nil
}
