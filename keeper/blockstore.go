package keeper

import (
	"errors"
	"fmt"
	"runtime"
)

// blockStore holds one run's encoded history buckets outside the Go heap,
// in blocks of blockBytes carved from chunks of anonymous memory mapped
// one at a time (memory from make, on systems without mmap).
//
// Encoded buckets are most of what a busy run keeps for hours, and they
// stay: an hour of 10 s buckets, then 6 hours of minutes, then a day of
// 5 minutes. On the Go heap each byte of them costs about two of the
// keeper's memory, because the collector lets the heap grow to twice what
// is live before it collects (GOGC=100). Here a byte costs a byte, plus at
// most one block per bucket; blocks freed stay mapped for reuse, so a
// store keeps the most it has held until its run is forgotten. The store
// never hands out its memory: put copies a bucket in, get copies it out,
// so no slice of a chunk outlives the call that made it. Its owner (a
// runSeries, under the aggregator's lock) calls release when the run's
// series is forgotten; a store dropped without release is unmapped when
// the collector finds it unreachable.
type blockStore struct {
	m *chunks
	// free are blocks given back, reused last-freed first so that the
	// pages touched stay few.
	free []uint32
	// next is how many blocks the chunks have handed out so far; used is
	// how many are in buckets now.
	next, used int
	// maxChunks bounds the store (maxChunks, but for tests).
	maxChunks int
}

// chunks are a store's mapped memory, apart from the store so that the
// cleanup unmapping them does not keep the store reachable.
type chunks struct{ c [][]byte }

const (
	blockBytes     = 256
	chunkBytes     = 256 << 10
	blocksPerChunk = chunkBytes / blockBytes
	// maxChunks bounds a store: 16 MiB, well above what maxRunBytes of
	// buckets need (one partly filled block per bucket on top).
	maxChunks = 64
)

// errHistoryStore is wrapped by every error of a store: full, or its
// memory not mapped. errStoreFull is put's when a store would pass
// maxChunks.
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

func newBlockStore() *blockStore {
	s := &blockStore{m: &chunks{}, maxChunks: maxChunks}
	runtime.AddCleanup(s, func(m *chunks) { m.unmap() }, s.m)
	return s
}

// put makes dst hold data, reusing dst's blocks. On error dst is
// unchanged.
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
	for i, b := range blocks {
		copy(s.block(b), data[i*blockBytes:])
	}
	dst.blocks, dst.n = blocks, len(data)
	if need == 0 {
		dst.blocks = nil
	}
	return nil
}

// get appends the bytes of src to buf and returns it.
func (s *blockStore) get(src stored, buf []byte) []byte {
	left := src.n
	for _, b := range src.blocks {
		n := min(left, blockBytes)
		buf = append(buf, s.block(b)[:n]...)
		left -= n
	}
	return buf
}

// drop gives src's blocks back and empties it.
func (s *blockStore) drop(src *stored) {
	s.giveBack(src.blocks)
	*src = stored{}
}

// mapped is the memory the store has touched: every block handed out so
// far, in use or free.
func (s *blockStore) mapped() int { return s.next * blockBytes }

// release unmaps the store's memory; it must not be used after.
func (s *blockStore) release() {
	s.m.unmap()
	s.free, s.next, s.used = nil, 0, 0
}

func (s *blockStore) block(b uint32) []byte {
	c := s.m.c[b/blocksPerChunk]
	off := int(b%blocksPerChunk) * blockBytes
	return c[off : off+blockBytes : off+blockBytes]
}

func (s *blockStore) alloc() (uint32, error) {
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		s.used++
		return b, nil
	}
	if s.next == len(s.m.c)*blocksPerChunk {
		if len(s.m.c) >= s.maxChunks {
			return 0, fmt.Errorf("%w: %d KiB", errStoreFull, s.maxChunks*chunkBytes>>10)
		}
		c, err := mapChunk(chunkBytes)
		if err != nil {
			return 0, fmt.Errorf("%w: mapping %d KiB: %w", errHistoryStore, chunkBytes>>10, err)
		}
		s.m.c = append(s.m.c, c)
	}
	b := uint32(s.next)
	s.next++
	s.used++
	return b, nil
}

func (s *blockStore) giveBack(blocks []uint32) {
	s.free = append(s.free, blocks...)
	s.used -= len(blocks)
}

func (m *chunks) unmap() {
	for _, c := range m.c {
		unmapChunk(c)
	}
	m.c = nil
}
