package behaviors

import (
	"slices"
	"sync"
)

// knowledge is what a store knows of the workspace: channels, messages and
// user ids, each held as a 4-byte handle into its run's shared Workspace,
// or into a table of the store's own for what the workspace could not
// take. Each handle held is one reference to its entry. Membership is a
// bit per channel; messages are kept per channel, oldest first.
//
// It is apart from its Store so that a cleanup can let go of the shared
// entries once the store is garbage collected (runtime.AddCleanup must not
// reach the store itself).
type knowledge struct {
	mu     sync.Mutex // lock order: mu before shared.mu
	shared *Workspace // nil: the store shares nothing
	own    *tables    // the store's own values; made when first needed

	chans    []handle   // channels, first come, looked up by a scan
	member   []uint64   // bit i: the koi is a member of chans[i]
	msgs     []chanMsgs // channels with messages, looked up by a scan
	users    []handle   // ring of user ids (found by their handle: see holdsUser)
	usersPos int
	bytes    int64 // channels, messages and users, see MaxKnowledgeBytes
}

// chanMsgs are the remembered messages of one channel (its id a string
// handle), oldest first.
type chanMsgs struct {
	ch handle
	ms []handle
}

// lock and unlock guard the knowledge. Reading entries the store holds
// needs no more; interning and letting go take the workspace's lock too,
// for that moment only.
func (k *knowledge) lock()   { k.mu.Lock() }
func (k *knowledge) unlock() { k.mu.Unlock() }

func (k *knowledge) ownTables() *tables {
	if k.own == nil {
		k.own = &tables{}
	}
	return k.own
}

func strsOf(t *tables) *table[string, struct{}]    { return &t.strs }
func chansOf(t *tables) *table[chanInfo, struct{}] { return &t.chans }
func msgsOf(t *tables) *table[Message, tsKey]      { return &t.msgs }

// intern returns a handle to v holding one more reference: to the shared
// workspace's entry when it has v or room for it, else to the store's own
// (0 only when a table is full). fresh makes the entry from v (copies of
// its strings) the first time. Callers hold k.mu.
func intern[V comparable, X any](k *knowledge, pick func(*tables) *table[V, X], v V, size int64, fresh func(V) (V, X)) handle {
	if w := k.shared; w != nil {
		w.mu.Lock()
		t := pick(&w.t)
		if h := t.find(v); h != 0 {
			t.at(h).refs++
			w.mu.Unlock()
			return h
		}
		if w.roomLocked(size) {
			nv, x := fresh(v)
			if h := t.add(nv, x); h != 0 {
				w.size += size
				w.mu.Unlock()
				return h
			}
		}
		w.mu.Unlock()
	}
	t := pick(k.ownTables())
	if h := t.find(v); h != 0 {
		t.at(h).refs++
		return h | ownBit
	}
	nv, x := fresh(v)
	if h := t.add(nv, x); h != 0 {
		return h | ownBit
	}
	return 0
}

// unref lets go of one reference (see intern).
func unref[V comparable, X any](k *knowledge, pick func(*tables) *table[V, X], size func(*V) int64, h handle) {
	if h&ownBit != 0 {
		pick(k.own).unref(h &^ ownBit)
		return
	}
	w := k.shared
	w.mu.Lock()
	if e, freed := pick(&w.t).unref(h); freed {
		w.size -= size(&e.v)
	}
	w.mu.Unlock()
}

// at returns the entry of h. The pointer is valid until the next intern.
func at[V comparable, X any](k *knowledge, pick func(*tables) *table[V, X], h handle) *entry[V, X] {
	if h&ownBit != 0 {
		return pick(k.own).at(h &^ ownBit)
	}
	return pick(&k.shared.t).at(h)
}

func (k *knowledge) internStr(s string) handle {
	return intern(k, strsOf, s, strSize(s), func(s string) (string, struct{}) { return ownString(s), struct{}{} })
}

func (k *knowledge) internChan(c chanInfo) handle {
	return intern(k, chansOf, c, chanSize(&c), func(c chanInfo) (chanInfo, struct{}) {
		c.ID, c.Name = ownString(c.ID), ownString(c.Name)
		return c, struct{}{}
	})
}

func (k *knowledge) internMsg(m *Message) handle {
	return intern(k, msgsOf, *m, messageSize(m), func(m Message) (Message, tsKey) {
		m.TS, m.User, m.Text = ownString(m.TS), ownString(m.User), ownString(m.Text)
		return m, parseTS(m.TS)
	})
}

func (k *knowledge) unrefStr(h handle) {
	unref(k, strsOf, func(s *string) int64 { return strSize(*s) }, h)
}
func (k *knowledge) unrefChan(h handle) { unref(k, chansOf, chanSize, h) }
func (k *knowledge) unrefMsg(h handle)  { unref(k, msgsOf, messageSize, h) }

func (k *knowledge) strAt(h handle) *entry[string, struct{}]    { return at(k, strsOf, h) }
func (k *knowledge) chanAt(h handle) *entry[chanInfo, struct{}] { return at(k, chansOf, h) }
func (k *knowledge) msgAt(h handle) *entry[Message, tsKey]      { return at(k, msgsOf, h) }

// canonical returns the store's copy of a channel id when it knows the
// channel, else a copy of its own (id may be a slice of a reply).
func (k *knowledge) canonical(id string) string {
	if id == "" {
		return id
	}
	k.lock()
	defer k.unlock()
	if i := k.chanIndex(id); i >= 0 {
		return k.chanAt(k.chans[i]).v.ID
	}
	return ownString(id)
}

// chanIndex returns the index of the channel with the given id, or -1.
func (k *knowledge) chanIndex(id string) int {
	for i, h := range k.chans {
		if k.chanAt(h).v.ID == id {
			return i
		}
	}
	return -1
}

func (k *knowledge) channel(i int) Channel { return k.chanAt(k.chans[i]).v.channel(k.isMember(i)) }

func (k *knowledge) isMember(i int) bool {
	return i/64 < len(k.member) && k.member[i/64]&(1<<(i%64)) != 0
}

func (k *knowledge) setMember(i int, m bool) {
	for i/64 >= len(k.member) {
		k.member = append(k.member, 0)
	}
	if m {
		k.member[i/64] |= 1 << (i % 64)
	} else {
		k.member[i/64] &^= 1 << (i % 64)
	}
}

// msgChan returns the index in k.msgs of the channel with the given id,
// or -1.
func (k *knowledge) msgChan(id string) int {
	for i := range k.msgs {
		if k.strAt(k.msgs[i].ch).v == id {
			return i
		}
	}
	return -1
}

// holdsUser reports whether the store remembers the user id: whether the
// id's handle (in the workspace, or in the store's own table) is in the
// ring. A handle found in the workspace names the id for as long as the
// store holds it, and under k.mu what the store holds does not change.
// A scan of at most MaxUserIDs handles costs less than an index of them
// would (4 bytes per id, per koi).
func (k *knowledge) holdsUser(id string) bool {
	var sh, own handle
	if w := k.shared; w != nil {
		w.mu.Lock()
		sh = w.t.strs.find(id)
		w.mu.Unlock()
	}
	if k.own != nil {
		if h := k.own.strs.find(id); h != 0 {
			own = h | ownBit
		}
	}
	return sh != 0 && slices.Contains(k.users, sh) || own != 0 && slices.Contains(k.users, own)
}

// usersWholeAt is how many user ids a store knows before its ring of them
// is given its whole size (MaxUserIDs handles, 2 KiB) at once. A koi that
// has met this many users is in a busy workspace and goes on to fill the
// ring; doubling from here would reach the same 2 KiB after three more
// copies, and keep the koi's memory climbing for minutes while it learns.
// A koi that knows fewer users keeps a small ring.
const usersWholeAt = 64

// growUsers returns the ring with room for one more id. Callers hold k.mu.
func (k *knowledge) growUsers() []handle {
	if n := len(k.users); n == cap(k.users) && n >= usersWholeAt {
		return slices.Grow(k.users, MaxUserIDs-n)
	}
	return k.users
}

// insertByTS keeps msgs ordered by ts (oldest first) without duplicates,
// at most MaxMessagesPerChannel of them (a new one past that takes the
// place of the oldest, and one older than all is not kept), within the
// store's bound in bytes. Keeping to the cap as it goes, a list far longer
// than the cap costs the cap's work per message, and the store's bytes are
// never spent on messages about to go.
func (k *knowledge) insertByTS(msgs []handle, m *Message) []handle {
	key := parseTS(m.TS)
	i := len(msgs)
	for i > 0 {
		e := k.msgAt(msgs[i-1])
		if !tsLessKey(m.TS, key, e.v.TS, e.x) {
			break
		}
		i--
	}
	size := messageSize(m)
	if i > 0 {
		if prev := k.msgAt(msgs[i-1]).v; prev.TS == m.TS {
			if prev == *m {
				return msgs
			}
			if d := size - messageSize(&prev); d <= MaxKnowledgeBytes-k.bytes {
				if h := k.internMsg(m); h != 0 {
					k.unrefMsg(msgs[i-1])
					k.bytes += d
					msgs[i-1] = h
				}
			}
			return msgs
		}
	}
	full := len(msgs) >= MaxMessagesPerChannel
	if full && i == 0 {
		return msgs // older than every message kept: it would go at once
	}
	var freed int64 // the oldest's bytes, when m takes its place
	if full {
		freed = messageSize(&k.msgAt(msgs[0]).v)
	}
	if size-freed > MaxKnowledgeBytes-k.bytes {
		return msgs
	}
	h := k.internMsg(m)
	if h == 0 {
		return msgs
	}
	k.bytes += size - freed
	if full {
		k.unrefMsg(msgs[0])
		copy(msgs, msgs[1:i])
		msgs[i-1] = h
		return msgs
	}
	msgs = append(msgs, 0)
	copy(msgs[i+1:], msgs[i:])
	msgs[i] = h
	return msgs
}

// tsLessKey orders Slack-style "seconds.micros" timestamps numerically
// when both parse, and as strings otherwise.
func tsLessKey(a string, ak tsKey, b string, bk tsKey) bool {
	if ak.ok && bk.ok && ak.f != bk.f {
		return ak.f < bk.f
	}
	return a < b
}

// release lets go of every shared entry the store held: the cleanup of a
// garbage-collected store.
func (k *knowledge) release() {
	k.lock()
	defer k.unlock()
	for _, h := range k.chans {
		k.unrefChan(h)
	}
	for _, c := range k.msgs {
		for _, h := range c.ms {
			k.unrefMsg(h)
		}
		k.unrefStr(c.ch)
	}
	for _, h := range k.users {
		k.unrefStr(h)
	}
	k.chans, k.member, k.msgs, k.users, k.own = nil, nil, nil, nil, nil
	k.bytes = 0
}
