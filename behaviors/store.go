package behaviors

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"sync"
)

// Caps on what one koi remembers, so that a long-running koi in a busy
// workspace keeps a small, bounded footprint.
const (
	// MaxChannels is the number of channels a store keeps (first come).
	MaxChannels = 256
	// MaxMessagesPerChannel is the number of newest messages kept per channel.
	MaxMessagesPerChannel = 32
	// MaxUserIDs is the number of distinct user ids kept (oldest evicted).
	MaxUserIDs = 512
	// MaxVars is the number of variables `set` can hold.
	MaxVars = 256
	// MaxKnowledgeBytes bounds what one store knows of the workspace:
	// its channels, messages and user ids together, counted as if it held
	// its own copy (the strings and a fixed overhead per entry), shared or
	// not. A channel, message or user id that would take the store past it
	// is not remembered (user ids evict the oldest first), so a target
	// that answers with huge or ever-new values cannot grow a koi past it.
	MaxKnowledgeBytes = 512 << 10
	// MaxVarBytes bounds what the variables of one sequence execution
	// (`set`), and those of one koi (`setKoi`), hold together, measured
	// as the values print: without it 256 variables of a budget each
	// would be a quarter gigabyte per koi.
	MaxVarBytes = 4 * DefaultBudget
)

// varBytes accounts for the bytes a set of variables holds.
type varBytes struct {
	sizes map[string]int64
	total int64
}

// put records key's new size, or refuses it when the total would pass
// MaxVarBytes (leaving the accounts as they were).
func (a *varBytes) put(key string, size int64) error {
	old := a.sizes[key]
	if size > MaxVarBytes-(a.total-old) {
		return fmt.Errorf("set %s: a value of %s would take the variables past %s: %w", quote(key), bytesText(size), bytesText(MaxVarBytes), ErrLimit)
	}
	if a.sizes == nil {
		a.sizes = make(map[string]int64, 4)
	}
	a.sizes[key] = size
	a.total += size - old
	return nil
}

func (a *varBytes) del(key string) {
	a.total -= a.sizes[key]
	delete(a.sizes, key)
}

// Identity is who a koi is: its index in the run, the user it acts as, and
// that user's token.
type Identity struct {
	Index  int
	UserID string
	Token  string
}

// Channel is a conversation a koi knows about.
type Channel struct {
	ID         string
	Name       string
	IsMember   bool
	IsArchived bool
	IsPrivate  bool
	IsGeneral  bool
	NumMembers int
}

// Message is a message a koi has seen, in a channel it knows.
type Message struct {
	TS   string
	User string
	Text string
}

// WebsocketSpec is where and how a koi opens its websocket. The boot
// sequence fills it (for example from rtm.connect's reply) unless the run
// spec already did.
type WebsocketSpec struct {
	URL          string
	Header       http.Header
	Subprotocols []string
}

// chanInfo is what every koi learns identically about a channel (all of
// Channel but the koi's own membership); interned in a Workspace.
type chanInfo struct {
	ID, Name                         string
	IsArchived, IsPrivate, IsGeneral bool
	NumMembers                       int
}

func (i *chanInfo) channel(member bool) Channel {
	return Channel{ID: i.ID, Name: i.Name, IsMember: member, IsArchived: i.IsArchived,
		IsPrivate: i.IsPrivate, IsGeneral: i.IsGeneral, NumMembers: i.NumMembers}
}

// Store is one koi's local memory: variables, the channels and messages it
// has seen, user ids, and its websocket settings. Template functions read and
// write it. It is safe for concurrent use (a koi's behaviors, formations and
// event handlers share it); every collection in it is capped, and what it
// knows of the workspace is bounded in bytes (MaxKnowledgeBytes). A store
// made with NewSharedStore keeps channels, messages and user ids interned
// in its run's Workspace and holds only 4-byte handles to them (see
// knowledge).
type Store struct {
	id Identity
	k  *knowledge // channels, messages, user ids; its own lock

	mu       sync.Mutex // guards what follows
	vars     map[string]any
	varBytes varBytes
	current  string
	wsSpec   WebsocketSpec
	ids      idCounters
}

// NewStore returns an empty store for the given identity that shares
// nothing.
func NewStore(id Identity) *Store { return NewSharedStore(id, nil) }

// NewSharedStore returns an empty store for the given identity whose
// channels, messages and user ids are interned in w (nil: shared with
// nothing). Templates see the same values either way. When the store is
// garbage collected, it lets go of what it held in w.
func NewSharedStore(id Identity, w *Workspace) *Store {
	s := &Store{id: id, k: &knowledge{shared: w}}
	if w != nil {
		runtime.AddCleanup(s, (*knowledge).release, s.k)
	}
	return s
}

// KnowledgeBytes returns what the store knows of the workspace, in bytes
// as MaxKnowledgeBytes counts them.
func (s *Store) KnowledgeBytes() int64 {
	k := s.k
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bytes
}

// Identity returns who the koi is.
func (s *Store) Identity() Identity { return s.id }

// Get returns a variable, or nil when it is not set.
func (s *Store) Get(key string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vars[key]
}

// Set stores a variable; setting nil removes it. The variables together
// hold at most MaxVarBytes (as they print).
func (s *Store) Set(key string, v any) error {
	var size int64
	if v != nil {
		size = shapeOf(v).printBound() // outside the lock: it walks v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == nil {
		delete(s.vars, key)
		s.varBytes.del(key)
		return nil
	}
	if s.vars == nil {
		s.vars = make(map[string]any, 4)
	}
	if _, ok := s.vars[key]; !ok && len(s.vars) >= MaxVars {
		return fmt.Errorf("set %s: the store already holds %d variables", quote(key), MaxVars)
	}
	if err := s.varBytes.put(key, size); err != nil {
		return err
	}
	s.vars[key] = v
	return nil
}

// AddChannel records (or updates) a channel.
func (s *Store) AddChannel(c Channel) {
	if c.ID == "" {
		return
	}
	info := chanInfo{ID: c.ID, Name: c.Name, IsArchived: c.IsArchived, IsPrivate: c.IsPrivate,
		IsGeneral: c.IsGeneral, NumMembers: c.NumMembers}
	size := chanSize(&info)
	k := s.k
	k.lock()
	defer k.unlock()
	if i := k.chanIndex(c.ID); i >= 0 {
		old := k.chanAt(k.chans[i]).v
		if old == info {
			k.setMember(i, c.IsMember)
			return
		}
		d := size - chanSize(&old)
		if d > MaxKnowledgeBytes-k.bytes {
			return
		}
		h := k.internChan(info)
		if h == 0 {
			return
		}
		k.unrefChan(k.chans[i])
		k.chans[i] = h
		k.bytes += d
		k.setMember(i, c.IsMember)
		return
	}
	if len(k.chans) >= MaxChannels || size > MaxKnowledgeBytes-k.bytes {
		return
	}
	h := k.internChan(info)
	if h == 0 {
		return
	}
	k.bytes += size
	k.chans = append(k.chans, h)
	k.setMember(len(k.chans)-1, c.IsMember)
}

// Channel returns the channel with the given id, or nil.
func (s *Store) Channel(id string) *Channel {
	k := s.k
	k.lock()
	defer k.unlock()
	if i := k.chanIndex(id); i >= 0 {
		c := k.channel(i)
		return &c
	}
	return nil
}

// Channels returns copies of every known channel.
func (s *Store) Channels() []Channel {
	k := s.k
	k.lock()
	defer k.unlock()
	out := make([]Channel, len(k.chans))
	for i := range k.chans {
		out[i] = k.channel(i)
	}
	return out
}

// RandomChannel returns a uniformly chosen known, non-archived channel; with
// onlyMember it chooses among channels the koi is a member of. It returns
// nil when there is none.
func (s *Store) RandomChannel(onlyMember bool) *Channel {
	k := s.k
	k.lock()
	defer k.unlock()
	ok := func(i int) bool { return !k.chanAt(k.chans[i]).v.IsArchived && (!onlyMember || k.isMember(i)) }
	var n int
	for i := range k.chans {
		if ok(i) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	r := rand.IntN(n)
	for i := range k.chans {
		if ok(i) {
			if r == 0 {
				c := k.channel(i)
				return &c
			}
			r--
		}
	}
	return nil
}

// SetCurrent makes the channel with the given id the current one (the
// channel the simulated user has open).
func (s *Store) SetCurrent(id string) {
	id = s.k.canonical(id)
	s.mu.Lock()
	s.current = id
	s.mu.Unlock()
}

// Current returns the current channel, or nil.
func (s *Store) Current() *Channel {
	s.mu.Lock()
	id := s.current
	s.mu.Unlock()
	if id == "" {
		return nil
	}
	if c := s.Channel(id); c != nil {
		return c
	}
	return &Channel{ID: id}
}

// AddMessages remembers messages seen in a channel, keeping the newest
// MaxMessagesPerChannel by ts. Messages without a ts are ignored.
func (s *Store) AddMessages(channel string, msgs []Message) {
	if channel == "" || len(msgs) == 0 {
		return
	}
	k := s.k
	k.lock()
	defer k.unlock()
	ci := k.msgChan(channel)
	var cur []handle
	var keySize int64 // a new channel's id, counted while it has messages
	if ci >= 0 {
		cur = k.msgs[ci].ms
	} else {
		keySize = strSize(channel)
		if len(k.msgs) >= MaxChannels || keySize > MaxKnowledgeBytes-k.bytes {
			return
		}
		k.bytes += keySize
	}
	for i := range msgs {
		if msgs[i].TS != "" {
			cur = k.insertByTS(cur, &msgs[i])
		}
	}
	switch {
	case ci >= 0:
		k.msgs[ci].ms = cur
	case len(cur) > 0:
		ch := k.internStr(channel)
		if ch == 0 { // cannot happen (a store's own table always takes it)
			for _, h := range cur {
				k.bytes -= messageSize(&k.msgAt(h).v)
				k.unrefMsg(h)
			}
			k.bytes -= keySize
			return
		}
		k.msgs = append(k.msgs, chanMsgs{ch: ch, ms: cur})
	default: // a new channel, no message kept
		k.bytes -= keySize
	}
}

// Messages returns the remembered messages of a channel, oldest first.
func (s *Store) Messages(channel string) []Message {
	k := s.k
	k.lock()
	defer k.unlock()
	ci := k.msgChan(channel)
	if ci < 0 {
		return nil
	}
	ms := k.msgs[ci].ms
	out := make([]Message, len(ms))
	for i, h := range ms {
		out[i] = k.msgAt(h).v
	}
	return out
}

// RandomMessage returns a uniformly chosen remembered message of a channel,
// or nil.
func (s *Store) RandomMessage(channel string) *Message {
	k := s.k
	k.lock()
	defer k.unlock()
	ci := k.msgChan(channel)
	if ci < 0 || len(k.msgs[ci].ms) == 0 {
		return nil
	}
	ms := k.msgs[ci].ms
	m := k.msgAt(ms[rand.IntN(len(ms))]).v
	return &m
}

// LatestMessage returns the newest remembered message of a channel, or nil.
func (s *Store) LatestMessage(channel string) *Message {
	k := s.k
	k.lock()
	defer k.unlock()
	ci := k.msgChan(channel)
	if ci < 0 || len(k.msgs[ci].ms) == 0 {
		return nil
	}
	ms := k.msgs[ci].ms
	m := k.msgAt(ms[len(ms)-1]).v
	return &m
}

// AddUserIDs remembers user ids; past MaxUserIDs, or past the store's
// bound in bytes, each new one replaces the oldest.
func (s *Store) AddUserIDs(ids []string) {
	k := s.k
	k.lock()
	defer k.unlock()
	for _, id := range ids {
		if id == "" {
			continue
		}
		if k.holdsUser(id) {
			continue
		}
		size := strSize(id)
		room := MaxKnowledgeBytes - k.bytes
		var h handle
		switch {
		case len(k.users) < MaxUserIDs && size <= room:
			if h = k.internStr(id); h == 0 {
				continue
			}
			k.users = k.growUsers()
			k.users = append(k.users, h)
		case len(k.users) > 0:
			// Replace the oldest (the ring's next slot), if the id fits
			// in its place.
			k.usersPos %= len(k.users)
			old := k.users[k.usersPos]
			oldSize := strSize(k.strAt(old).v)
			if size-oldSize > room {
				continue
			}
			if h = k.internStr(id); h == 0 {
				continue
			}
			k.bytes -= oldSize
			k.unrefStr(old)
			k.users[k.usersPos] = h
			k.usersPos = (k.usersPos + 1) % len(k.users)
		default:
			continue
		}
		k.bytes += size
	}
}

// UserIDs returns the remembered user ids.
func (s *Store) UserIDs() []string {
	k := s.k
	k.lock()
	defer k.unlock()
	out := make([]string, len(k.users))
	for i, h := range k.users {
		out[i] = k.strAt(h).v
	}
	return out
}

// RandomUserID returns a remembered user id, or "".
func (s *Store) RandomUserID() string {
	k := s.k
	k.lock()
	defer k.unlock()
	if len(k.users) == 0 {
		return ""
	}
	return k.strAt(k.users[rand.IntN(len(k.users))]).v
}

// Websocket returns a copy of the websocket settings.
func (s *Store) Websocket() WebsocketSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.wsSpec
	ws.Header = ws.Header.Clone()
	ws.Subprotocols = append([]string(nil), ws.Subprotocols...)
	return ws
}

// SetWebsocket replaces the websocket settings.
func (s *Store) SetWebsocket(ws WebsocketSpec) {
	s.mu.Lock()
	s.wsSpec = ws
	s.mu.Unlock()
}

func (s *Store) updateWebsocket(f func(*WebsocketSpec)) {
	s.mu.Lock()
	f(&s.wsSpec)
	s.mu.Unlock()
}

// channelFrom converts what a template holds (a Channel, *Channel, a channel
// object decoded from JSON, or an id string) into a Channel.
func channelFrom(v any) (Channel, error) {
	switch c := v.(type) {
	case *Channel:
		if c == nil {
			return Channel{}, fmt.Errorf("no channel (nil)")
		}
		return *c, nil
	case Channel:
		return c, nil
	case string:
		if c == "" {
			return Channel{}, fmt.Errorf("empty channel id")
		}
		return Channel{ID: c}, nil
	case map[string]any:
		ch := Channel{
			ID:         str(c["id"]),
			Name:       str(c["name"]),
			IsMember:   truthy(c["is_member"]),
			IsArchived: truthy(c["is_archived"]),
			IsPrivate:  truthy(c["is_private"]),
			IsGeneral:  truthy(c["is_general"]),
		}
		if n, ok := num(c["num_members"]); ok {
			ch.NumMembers = int(n)
		}
		if ch.ID == "" {
			return Channel{}, fmt.Errorf("channel object has no \"id\"")
		}
		return ch, nil
	case nil:
		return Channel{}, fmt.Errorf("no channel (nil)")
	}
	return Channel{}, fmt.Errorf("cannot use %T as a channel", v)
}

// messageFrom converts a decoded message object (or Message) into a Message.
func messageFrom(v any) (Message, bool) {
	switch m := v.(type) {
	case Message:
		return m, true
	case *Message:
		if m != nil {
			return *m, true
		}
	case map[string]any:
		return Message{TS: str(m["ts"]), User: str(m["user"]), Text: str(m["text"])}, true
	}
	return Message{}, false
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case json.Number:
		return s.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func truthy(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true" || b == "1"
	}
	return false
}

func num(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil
	}
	return 0, false
}
