package behaviors

import "sync"

// DefaultWorkspaceBytes bounds a Workspace made with a zero limit: the
// demo workspace (200 channels, thousands of messages and users) takes
// under 2 MiB, so one run on a school shares all of it.
const DefaultWorkspaceBytes = 8 << 20

// Per-entry overheads a Workspace and a Store count besides the bytes of
// the strings themselves (headers, pointers, map slots), so that the
// bounds in bytes stay honest for many small entries.
const (
	stringOverhead  = 48 // a string header and its map slot
	channelOverhead = 96 // a channel record and its map slot
	messageOverhead = 96 // a message record and its map slot
)

// Workspace is what the koi of one run on a school learn identically:
// channels and their metadata, user ids, messages. Stores made with
// NewSharedStore keep these values interned here and hold only pointers to
// them (a handle each), so 5,000 koi that learned the same 200 channels
// hold one copy of them, not 5,000. What is truly one koi's own
// (memberships, the current channel, what it has read, its variables)
// stays in its Store.
//
// Interned values are immutable. The table is bounded in bytes: when it
// would pass its limit it starts afresh, so values still referenced by a
// store stay alive (counted in that store's own bound) and the others are
// left to the garbage collector; what is learned after that is shared
// again. It is safe for concurrent use.
type Workspace struct {
	mu     sync.Mutex
	limit  int64
	size   int64
	resets uint64
	strs   map[string]string
	chans  map[chanInfo]*chanInfo
	msgs   map[Message]*Message
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
	Resets            uint64
}

// Stats returns what the workspace holds now.
func (w *Workspace) Stats() WorkspaceStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WorkspaceStats{Bytes: w.size, Limit: w.limit, Strings: len(w.strs), Channels: len(w.chans), Messages: len(w.msgs), Resets: w.resets}
}

// charge makes room for n bytes, starting afresh when the table would pass
// its limit. Callers hold w.mu.
func (w *Workspace) chargeLocked(n int64) {
	if w.size+n > w.limit {
		w.strs, w.chans, w.msgs = nil, nil, nil
		w.size = 0
		w.resets++
	}
	w.size += n
}

// str returns the interned copy of s (s itself, copied once, the first
// time). A nil Workspace interns nothing.
func (w *Workspace) str(s string) string {
	if w == nil || s == "" {
		return s
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.strLocked(s)
}

func (w *Workspace) strLocked(s string) string {
	if s == "" {
		return s
	}
	if v, ok := w.strs[s]; ok {
		return v
	}
	w.chargeLocked(int64(len(s)) + stringOverhead)
	if w.strs == nil {
		w.strs = make(map[string]string, 1024)
	}
	s = string([]byte(s)) // a copy of its own: s may be a slice of a reply
	w.strs[s] = s
	return s
}

// channel returns the interned record equal to c.
func (w *Workspace) channel(c chanInfo) *chanInfo {
	if w == nil {
		return &c
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.chans[c]; ok {
		return v
	}
	c.ID, c.Name = w.strLocked(c.ID), w.strLocked(c.Name)
	w.chargeLocked(channelOverhead)
	if w.chans == nil {
		w.chans = make(map[chanInfo]*chanInfo, 256)
	}
	p := &c
	w.chans[c] = p
	return p
}

// message returns the interned record equal to m.
func (w *Workspace) message(m Message) *Message {
	if w == nil {
		return &m
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.msgs[m]; ok {
		return v
	}
	m.TS, m.User, m.Text = w.strLocked(m.TS), w.strLocked(m.User), w.strLocked(m.Text)
	w.chargeLocked(messageOverhead)
	if w.msgs == nil {
		w.msgs = make(map[Message]*Message, 1024)
	}
	p := &m
	w.msgs[m] = p
	return p
}
