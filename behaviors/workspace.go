package behaviors

import (
	"math"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
)

// DefaultWorkspaceBytes bounds a Workspace made with a zero limit: the
// demo workspace (200 channels, thousands of messages and users) takes
// under 2 MiB, so one run on a school shares all of it.
const DefaultWorkspaceBytes = 8 << 20

// Per-entry overheads a Workspace and a Store count besides the bytes of
// the strings themselves (headers, table slots, map slots), so that the
// bounds in bytes stay honest for many small entries.
const (
	stringOverhead  = 48 // a string header and its table and map slots
	channelOverhead = 96 // a channel record and its table and map slots
	messageOverhead = 96 // a message record and its table and map slots
)

// Workspace is what the koi of one run on a school learn identically:
// channels and their metadata, user ids, messages. Stores made with
// NewSharedStore keep these values interned here and hold only 4-byte
// handles to them, so 5,000 koi that learned the same 200 channels and
// the same user ids hold one copy of them, not 5,000. What is truly one
// koi's own (memberships, the current channel, what it has read, its
// variables) stays in its Store.
//
// Entries are counted by the stores holding them and freed when the last
// lets go (a store lets go when it forgets a value, and of everything when
// it is garbage collected), so the table holds what the run's koi know
// now, not everything they ever saw. It is bounded in bytes: a value that
// would take it past its limit is not interned, and the store that wanted
// it keeps it in a table of its own (within its own bound,
// MaxKnowledgeBytes), so templates see the same values either way and a
// target flooding distinct values cannot grow the shared table. It is safe
// for concurrent use.
type Workspace struct {
	mu      sync.Mutex // lock order: a store's knowledge lock before mu; held only to intern or let go
	limit   int64
	size    int64
	refused uint64
	t       tables
}

// NewWorkspace returns an empty workspace that holds at most limit bytes
// (0: DefaultWorkspaceBytes).
func NewWorkspace(limit int64) *Workspace {
	if limit <= 0 {
		limit = DefaultWorkspaceBytes
	}
	return &Workspace{limit: limit}
}

// WorkspaceStats is what a Workspace holds.
type WorkspaceStats struct {
	Bytes, Limit      int64
	Strings, Channels int
	Messages          int
	// Refused counts values not interned because they would have taken
	// the workspace past its limit (the stores kept them on their own).
	Refused uint64
}

// Stats returns what the workspace holds now.
func (w *Workspace) Stats() WorkspaceStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WorkspaceStats{Bytes: w.size, Limit: w.limit, Strings: w.t.strs.len(), Channels: w.t.chans.len(),
		Messages: w.t.msgs.len(), Refused: w.refused}
}

// room reports whether n more bytes fit, counting a refusal when not.
// Callers hold w.mu.
func (w *Workspace) roomLocked(n int64) bool {
	if n > w.limit-w.size {
		w.refused++
		return false
	}
	return true
}

// handle is a store's reference to an interned value: 0 is none; the top
// bit says which table holds it (set: the store's own, clear: the shared
// workspace), the other bits are the entry's index plus one.
type handle = uint32

const ownBit handle = 1 << 31

// maxEntries is the most entries one table can hold (handles have 31 bits
// of index).
const maxEntries = math.MaxInt32 - 1

// tsKey is a message's ts as tsLess compares it, parsed once when the
// message is interned.
type tsKey struct {
	f  float64
	ok bool
}

func parseTS(ts string) tsKey {
	f, err := strconv.ParseFloat(ts, 64)
	return tsKey{f: f, ok: err == nil}
}

// tables are the three interning tables of a Workspace, or of a store's
// own values.
type tables struct {
	strs  table[string, struct{}]
	chans table[chanInfo, struct{}]
	msgs  table[Message, tsKey]
}

// table interns values of one kind: each entry counts the references
// stores hold to it and is freed (its slot reused) when none is left.
//
// Entries live in segments that never move (segment c holds 16·2^c
// entries), so a store reads the entries it holds references to without
// the table's lock: an entry's value is written before any store gets its
// handle (under the lock) and rewritten only after every store let go of
// it (under the lock too). The index, the counts and the free list are
// the lock's.
type table[V comparable, X any] struct {
	idx  map[V]uint32 // value → index+1
	segs [maxSegments]atomic.Pointer[[]entry[V, X]]
	n    uint32   // entries ever made (the next new index)
	free []uint32 // indexes of freed entries
}

const (
	segmentBase = 16
	maxSegments = 28 // segment(maxEntries-1) is 27
)

type entry[V comparable, X any] struct {
	v    V
	x    X
	refs uint32
}

// segment returns the segment of index i and i's place in it.
func segment(i uint32) (seg, off int) {
	q := uint64(i)/segmentBase + 1
	seg = bits.Len64(q) - 1
	return seg, int(uint64(i) - segmentBase*(1<<seg-1))
}

func (t *table[V, X]) len() int { return len(t.idx) }

// find returns the index+1 of v, or 0.
func (t *table[V, X]) find(v V) uint32 { return t.idx[v] }

// add interns v (not yet present) with one reference and returns its
// index+1, or 0 when the table is full.
func (t *table[V, X]) add(v V, x X) uint32 {
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		if t.n >= maxEntries {
			return 0
		}
		i = t.n
		t.n++
		if seg, off := segment(i); off == 0 {
			s := make([]entry[V, X], segmentBase<<seg)
			t.segs[seg].Store(&s)
		}
	}
	*t.at(i + 1) = entry[V, X]{v: v, x: x, refs: 1}
	if t.idx == nil {
		t.idx = make(map[V]uint32, 64)
	}
	t.idx[v] = i + 1
	return i + 1
}

// at returns entry h (index+1).
func (t *table[V, X]) at(h uint32) *entry[V, X] {
	seg, off := segment(h - 1)
	return &(*t.segs[seg].Load())[off]
}

// unref drops one reference to entry h and reports whether that freed it
// (then e holds what it was). An entry already free is left alone: its
// slot must not go on the free list twice.
func (t *table[V, X]) unref(h uint32) (e entry[V, X], freed bool) {
	p := t.at(h)
	if p.refs == 0 {
		return e, false
	}
	if p.refs > 1 {
		p.refs--
		return e, false
	}
	e = *p
	delete(t.idx, p.v)
	*p = entry[V, X]{}
	t.free = append(t.free, h-1)
	return e, true
}

func strSize(s string) int64       { return int64(len(s)) + stringOverhead }
func chanSize(c *chanInfo) int64   { return int64(len(c.ID)+len(c.Name)) + channelOverhead }
func messageSize(m *Message) int64 { return int64(len(m.TS)+len(m.User)+len(m.Text)) + messageOverhead }

// ownString returns a copy of s that shares no memory with what s may be
// a slice of (a reply).
func ownString(s string) string { return string([]byte(s)) }
