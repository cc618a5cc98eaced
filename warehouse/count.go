package warehouse

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Key layout inside a chunk (see the package doc).
const (
	userBits   = 21 // a chunk's distinct users (its own numbering)
	minuteBits = 27 // Unix minutes: 1970 to 2225, beyond maxSec
	methodBits = 16
	maxMethods = 1<<methodBits - 1
	perUserMem = 64 // bytes of map and slice overhead per distinct user
	// minChunk keys at least are sorted at once, even when the chunk's
	// users alone fill the budget (a few KiB over it, not a spill per key).
	minChunk = 4096
	// maxMethodBytes bounds the method names held for the whole export
	// (they are never spilled).
	maxMethodBytes = 16 << 20
)

// counts is what the counting pass finds.
type counts struct {
	userMinutes  []int64 // per method id
	active       int64
	users        int64
	hourly       [][24]int64 // per method id (nil unless hourly)
	activeHourly [24]int64
	keys         int64 // distinct (user, minute, method)
	runs         int   // sorted runs written to disk (0: all in memory)
}

// counter collects (user, minute, method) keys and counts distinct ones
// exactly with an external sort. Not safe for concurrent use.
type counter struct {
	budget   int64
	tmpDir   string
	maxFanIn int

	methodIdx   map[string]uint16
	methods     []string
	methodBytes int64
	calls       []int64 // rows per method: the call volume

	// The current chunk.
	keys      []uint64
	userIdx   map[string]uint32
	users     []string
	userBytes int64

	runs []string // sorted run files
}

func newCounter(budget int64, tmpDir string, maxFanIn int) *counter {
	return &counter{budget: budget, tmpDir: tmpDir, maxFanIn: maxFanIn,
		methodIdx: map[string]uint16{}, userIdx: map[string]uint32{}}
}

// method interns a method name; the string may alias a reused buffer.
func (c *counter) method(name string) (uint16, error) {
	if id, ok := c.methodIdx[name]; ok {
		return id, nil
	}
	if len(c.methods) >= maxMethods {
		return 0, fmt.Errorf("more than %d distinct methods: is the method column the right one?", maxMethods)
	}
	if c.methodBytes += int64(len(name)); c.methodBytes > maxMethodBytes {
		return 0, fmt.Errorf("%w: the distinct method names take more than %s: is the method column the right one?", ErrLimit, byteSize(maxMethodBytes))
	}
	name = strings.Clone(name)
	id := uint16(len(c.methods))
	c.methodIdx[name] = id
	c.methods = append(c.methods, name)
	c.calls = append(c.calls, 0)
	return id, nil
}

// add records one call. user may alias a reused buffer.
func (c *counter) add(user string, minute int64, method uint16) error {
	c.calls[method]++
	if minute < 0 || minute >= 1<<minuteBits {
		return fmt.Errorf("minute %d is outside 1970..2225", minute)
	}
	u, ok := c.userIdx[user]
	if !ok {
		if len(c.users) >= 1<<userBits-1 {
			if err := c.spill(); err != nil {
				return err
			}
			return c.addAgain(user, minute, method)
		}
		user = strings.Clone(user)
		u = uint32(len(c.users))
		c.userIdx[user] = u
		c.users = append(c.users, user)
		c.userBytes += int64(len(user)) + perUserMem
	}
	if len(c.keys) == cap(c.keys) {
		if c.mem() >= c.budget && len(c.keys) >= minChunk {
			if err := c.spill(); err != nil {
				return err
			}
			return c.addAgain(user, minute, method)
		}
		limit := int((c.budget - c.userBytes) / 8)
		n := min(max(2*cap(c.keys), minChunk), max(limit, len(c.keys)+minChunk))
		c.keys = slices.Grow(c.keys, n-len(c.keys))
	}
	c.keys = append(c.keys, uint64(u)<<(minuteBits+methodBits)|uint64(minute)<<methodBits|uint64(method))
	return nil
}

// addAgain adds a key after a spill emptied the chunk (the call was counted).
func (c *counter) addAgain(user string, minute int64, method uint16) error {
	c.calls[method]--
	return c.add(user, minute, method)
}

func (c *counter) mem() int64 { return int64(cap(c.keys))*8 + c.userBytes }

// sortChunk ranks the chunk's users by name, rewrites keys with ranks, sorts
// and de-duplicates them. It returns the users in rank order.
func (c *counter) sortChunk() []string {
	rank, ranked := rankUsers(c.users)
	const low = 1<<(minuteBits+methodBits) - 1
	for i, k := range c.keys {
		c.keys[i] = uint64(rank[k>>(minuteBits+methodBits)])<<(minuteBits+methodBits) | k&low
	}
	slices.Sort(c.keys)
	c.keys = slices.Compact(c.keys)
	return ranked
}

// rankUsers ranks a chunk's users by name: rank[i] is users[i]'s rank,
// ranked the users in rank order.
func rankUsers(users []string) (rank []uint32, ranked []string) {
	order := make([]uint32, len(users))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int { return strings.Compare(users[a], users[b]) })
	rank = make([]uint32, len(users))
	ranked = make([]string, len(users))
	for r, i := range order {
		rank[i] = uint32(r)
		ranked[r] = users[i]
	}
	return rank, ranked
}

func (c *counter) resetChunk() {
	c.keys = c.keys[:0]
	clear(c.userIdx)
	c.users = c.users[:0]
	c.userBytes = 0
}

// spill writes the chunk as a sorted run file and empties it.
func (c *counter) spill() error {
	users := c.sortChunk()
	f, err := os.CreateTemp(c.tmpDir, "koipond-warehouse-run-*")
	if err != nil {
		return fmt.Errorf("spilling sorted keys: %w", err)
	}
	c.runs = append(c.runs, f.Name())
	w := newRunWriter(f)
	for _, k := range c.keys {
		u, minute, m := c.unpack(k)
		w.write(users[u], minute, m)
	}
	if err := w.close(); err != nil {
		return fmt.Errorf("spilling sorted keys to %s: %w", f.Name(), err)
	}
	c.resetChunk()
	return nil
}

func (c *counter) unpack(k uint64) (user uint32, minute int64, method uint16) {
	return uint32(k >> (minuteBits + methodBits)),
		int64(k >> methodBits & (1<<minuteBits - 1)),
		uint16(k & (1<<methodBits - 1))
}

// cleanup removes the run files.
func (c *counter) cleanup() {
	for _, r := range c.runs {
		os.Remove(r)
	}
	c.runs = nil
}

// tally counts a stream of distinct (user, minute, method) in order.
type tally struct {
	c       *counts
	hourOf  func(minute int64) int
	first   bool
	lastMin int64
	newUser bool
	hour    int
}

func (t *tally) key(newUser bool, minute int64, m uint16) {
	if newUser || t.first || minute != t.lastMin {
		t.c.active++
		if newUser || t.first {
			t.c.users++
		}
		t.first = false
		t.lastMin = minute
		if t.hourOf != nil {
			t.hour = t.hourOf(minute)
			t.c.activeHourly[t.hour]++
		}
	}
	t.c.keys++
	t.c.userMinutes[m]++
	if t.hourOf != nil {
		t.c.hourly[m][t.hour]++
	}
}

// finish counts every key added so far. hourOf, when not nil, gives the
// local hour of day of a minute. progress is called between merge levels.
func (c *counter) finish(ctx context.Context, hourOf func(int64) int) (*counts, error) {
	defer c.cleanup()
	res := &counts{userMinutes: make([]int64, len(c.methods))}
	if hourOf != nil {
		res.hourly = make([][24]int64, len(c.methods))
	}
	t := &tally{c: res, hourOf: hourOf, first: true}
	if len(c.runs) == 0 {
		c.sortChunk()
		prev := ^uint32(0)
		for _, k := range c.keys {
			u, minute, m := c.unpack(k)
			t.key(u != prev, minute, m)
			prev = u
		}
		c.resetChunk()
		return res, nil
	}
	if len(c.keys) > 0 {
		if err := c.spill(); err != nil {
			return nil, err
		}
	}
	c.keys, c.users = nil, nil // release the chunk before merging
	res.runs = len(c.runs)
	err := reduceRuns(ctx, &c.runs, c.maxFanIn, c.tmpDir, "koipond-warehouse-run-*", "sorted runs",
		func(ctx context.Context, group []string, w *runWriter) error {
			return mergeRuns(ctx, group, func(user []byte, newUser bool, minute int64, m uint16) {
				w.writeBytes(user, newUser, minute, m)
			})
		})
	if err != nil {
		return nil, err
	}
	err = mergeRuns(ctx, c.runs, func(_ []byte, newUser bool, minute int64, m uint16) {
		t.key(newUser, minute, m)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// runWriter writes a sorted run: per key, uvarint(len(user)+1) and the user
// (or 0 for the same user as the previous key), varint minute, uvarint method.
type runWriter struct {
	f    *os.File
	w    *bufio.Writer
	last string
	buf  []byte
	n    int
}

func newRunWriter(f *os.File) *runWriter {
	return &runWriter{f: f, w: bufio.NewWriterSize(f, 256<<10)}
}

func (w *runWriter) write(user string, minute int64, m uint16) {
	same := w.n > 0 && user == w.last
	if !same {
		w.last = user
	}
	w.emit(same, user, minute, m)
}

func (w *runWriter) writeBytes(user []byte, newUser bool, minute int64, m uint16) {
	if !newUser && w.n > 0 {
		w.emit(true, "", minute, m)
		return
	}
	w.emit(false, string(user), minute, m)
}

func (w *runWriter) emit(same bool, user string, minute int64, m uint16) {
	b := w.buf[:0]
	if same {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(user))+1)
		b = append(b, user...)
	}
	b = binary.AppendVarint(b, minute)
	b = binary.AppendUvarint(b, uint64(m))
	w.w.Write(b)
	w.buf = b
	w.n++
}

func (w *runWriter) close() error {
	err := w.w.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// runReader reads a run written by runWriter.
type runReader struct {
	r      *bufio.Reader
	f      *os.File
	user   []byte
	minute int64
	method uint16
	idx    int // the run's place among those merged (mergeSorted)
}

func (r *runReader) next() (bool, error) {
	n, err := binary.ReadUvarint(r.r)
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if n != 0 {
		r.user = slices.Grow(r.user[:0], int(n-1))[:n-1]
		if _, err := io.ReadFull(r.r, r.user); err != nil {
			return false, err
		}
	}
	if r.minute, err = binary.ReadVarint(r.r); err != nil {
		return false, err
	}
	m, err := binary.ReadUvarint(r.r)
	if err != nil {
		return false, err
	}
	r.method = uint16(m)
	return true, nil
}

// runHeap orders run readers by user, minute, then method when byMethod,
// then run order (a reader's idx: input order).
type runHeap struct {
	rs       []*runReader
	byMethod bool
}

func (h *runHeap) Len() int { return len(h.rs) }
func (h *runHeap) Less(i, j int) bool {
	a, b := h.rs[i], h.rs[j]
	if c := bytes.Compare(a.user, b.user); c != 0 {
		return c < 0
	}
	if a.minute != b.minute {
		return a.minute < b.minute
	}
	if h.byMethod && a.method != b.method {
		return a.method < b.method
	}
	return a.idx < b.idx
}
func (h *runHeap) Swap(i, j int) { h.rs[i], h.rs[j] = h.rs[j], h.rs[i] }
func (h *runHeap) Push(x any)    { h.rs = append(h.rs, x.(*runReader)) }
func (h *runHeap) Pop() any {
	x := h.rs[len(h.rs)-1]
	h.rs = h.rs[:len(h.rs)-1]
	return x
}

// mergeSorted merges sorted runs into one stream in (user, minute) order,
// keeping every key; ties go by method when byMethod, then by the runs'
// order in paths. what names the runs in errors. emit's user is valid only
// during the call.
func mergeSorted(ctx context.Context, paths []string, byMethod bool, what string, emit func(user []byte, newUser bool, minute int64, m uint16) error) error {
	h := &runHeap{rs: make([]*runReader, 0, len(paths)), byMethod: byMethod}
	defer func() {
		for _, r := range h.rs {
			r.f.Close()
		}
	}()
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("merging %s: %w", what, err)
		}
		r := &runReader{f: f, r: bufio.NewReaderSize(f, 64<<10), idx: i}
		ok, err := r.next()
		if err != nil {
			f.Close()
			return fmt.Errorf("merging %s: %s: %w", what, p, err)
		}
		if !ok {
			f.Close()
			continue
		}
		h.rs = append(h.rs, r)
	}
	heap.Init(h)
	var last []byte
	for n := 0; h.Len() > 0; n++ {
		if n&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r := h.rs[0]
		newUser := n == 0 || !bytes.Equal(r.user, last)
		if err := emit(r.user, newUser, r.minute, r.method); err != nil {
			return err
		}
		if newUser {
			last = append(last[:0], r.user...)
		}
		ok, err := r.next()
		if err != nil {
			return fmt.Errorf("merging %s: %s: %w", what, r.f.Name(), err)
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			r.f.Close()
			heap.Pop(h)
		}
	}
	return nil
}

// mergeRuns merges sorted runs into one sorted stream without duplicates.
// emit's user is valid only during the call.
func mergeRuns(ctx context.Context, paths []string, emit func(user []byte, newUser bool, minute int64, m uint16)) error {
	var lastMin int64
	var lastM uint16
	return mergeSorted(ctx, paths, true, "sorted runs", func(user []byte, newUser bool, minute int64, m uint16) error {
		if newUser || minute != lastMin || m != lastM {
			emit(user, newUser, minute, m)
			lastMin, lastM = minute, m
		}
		return nil
	})
}

// reduceRuns merges *runs level by level, maxFanIn consecutive runs at a
// time, until at most maxFanIn remain. A merged run takes its group's
// place, so run order stays input order (for mergeSorted's ties). merge
// writes one group's stream to w. *runs always lists the files that
// exist, for the caller's cleanup, whatever fails.
func reduceRuns(ctx context.Context, runs *[]string, maxFanIn int, tmpDir, pattern, what string,
	merge func(ctx context.Context, group []string, w *runWriter) error) error {
	for len(*runs) > maxFanIn {
		level, next := *runs, []string(nil)
		for len(level) > 0 {
			group := level[:min(maxFanIn, len(level))]
			level = level[len(group):]
			if len(group) == 1 {
				next = append(next, group[0])
				continue
			}
			f, err := os.CreateTemp(tmpDir, pattern)
			if err != nil {
				*runs = append(append(next, group...), level...)
				return fmt.Errorf("merging %s: %w", what, err)
			}
			w := newRunWriter(f)
			err = merge(ctx, group, w)
			if cerr := w.close(); err == nil && cerr != nil {
				err = fmt.Errorf("merging %s into %s: %w", what, f.Name(), cerr)
			}
			for _, r := range group {
				os.Remove(r)
			}
			next = append(next, f.Name())
			if err != nil {
				*runs = append(next, level...)
				return err
			}
		}
		*runs = next
	}
	return nil
}

// hourCache gives the local hour of day of a Unix minute, cached per
// quarter hour (every zone's offset is a multiple of 15 minutes).
type hourCache struct {
	loc   *time.Location
	block int64
	hour  int
	valid bool
}

func (h *hourCache) hourOf(minute int64) int {
	b := floorDiv(minute, 15)
	if !h.valid || b != h.block {
		h.block, h.valid = b, true
		h.hour = time.Unix(minute*60, 0).In(h.loc).Hour()
	}
	return h.hour
}

// hourOccurrences counts, for each local hour of day, how many clock hours
// of that hour the range [first, last] (Unix minutes) touches.
func hourOccurrences(first, last int64, loc *time.Location) [24]int64 {
	var occ [24]int64
	lastStart := int64(-1 << 62)
	for m := floorDiv(first, 15) * 15; m <= last; m += 15 {
		t := time.Unix(m*60, 0).In(loc)
		// A local clock hour is known by its start in Unix minutes.
		if start := m - int64(t.Minute()); start != lastStart {
			lastStart = start
			occ[t.Hour()]++
		}
	}
	return occ
}
