package behaviors

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
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

// chanRef is a store's channel: the shared record and the koi's own
// membership.
type chanRef struct {
	info   *chanInfo
	member bool
}

func (r chanRef) channel() Channel {
	i := r.info
	return Channel{ID: i.ID, Name: i.Name, IsMember: r.member, IsArchived: i.IsArchived,
		IsPrivate: i.IsPrivate, IsGeneral: i.IsGeneral, NumMembers: i.NumMembers}
}

func (r chanRef) size() int64 { return int64(len(r.info.ID)+len(r.info.Name)) + channelOverhead }

func messageSize(m *Message) int64 {
	return int64(len(m.TS)+len(m.User)+len(m.Text)) + messageOverhead
}

// Store is one koi's local memory: variables, the channels and messages it
// has seen, user ids, and its websocket settings. Template functions read and
// write it. It is safe for concurrent use (a koi's behaviors, formations and
// event handlers share it); every collection in it is capped, and what it
// knows of the workspace is bounded in bytes (MaxKnowledgeBytes). A store
// made with NewSharedStore keeps channels, messages and user ids interned
// in its run's Workspace and holds only handles to them.
type Store struct {
	id Identity
	ws *Workspace // nil: nothing shared; lock order: mu before ws.mu

	mu        sync.Mutex
	vars      map[string]any
	varBytes  varBytes
	channels  []chanRef // first come, looked up by a scan (no per-koi index)
	current   string
	messages  map[string][]*Message // per channel, oldest first, capped; records shared
	users     []string              // ring of user ids (interned)
	usersIdx  []string              // the same ids, sorted: a binary search finds one (half a map's bytes)
	usersPos  int
	knowBytes int64 // channels, messages and users, see MaxKnowledgeBytes
	wsSpec    WebsocketSpec
	ids       idCounters
}

// NewStore returns an empty store for the given identity that shares
// nothing.
func NewStore(id Identity) *Store { return &Store{id: id} }

// NewSharedStore returns an empty store for the given identity whose
// channels, messages and user ids are interned in w (nil: shared with
// nothing). Templates see the same values either way.
func NewSharedStore(id Identity, w *Workspace) *Store { return &Store{id: id, ws: w} }

// KnowledgeBytes returns what the store knows of the workspace, in bytes
// as MaxKnowledgeBytes counts them.
func (s *Store) KnowledgeBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.knowBytes
}

// chanLocked returns the index of the channel with the given id, or -1.
func (s *Store) chanLocked(id string) int {
	for i := range s.channels {
		if s.channels[i].info.ID == id {
			return i
		}
	}
	return -1
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
	ref := chanRef{info: s.ws.channel(chanInfo{ID: c.ID, Name: c.Name, IsArchived: c.IsArchived,
		IsPrivate: c.IsPrivate, IsGeneral: c.IsGeneral, NumMembers: c.NumMembers}), member: c.IsMember}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.chanLocked(c.ID); i >= 0 {
		d := ref.size() - s.channels[i].size()
		if d > MaxKnowledgeBytes-s.knowBytes {
			return
		}
		s.knowBytes += d
		s.channels[i] = ref
		return
	}
	if len(s.channels) >= MaxChannels || ref.size() > MaxKnowledgeBytes-s.knowBytes {
		return
	}
	s.knowBytes += ref.size()
	s.channels = append(s.channels, ref)
}

// Channel returns the channel with the given id, or nil.
func (s *Store) Channel(id string) *Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.chanLocked(id); i >= 0 {
		c := s.channels[i].channel()
		return &c
	}
	return nil
}

// Channels returns copies of every known channel.
func (s *Store) Channels() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Channel, len(s.channels))
	for i, c := range s.channels {
		out[i] = c.channel()
	}
	return out
}

// RandomChannel returns a uniformly chosen known, non-archived channel; with
// onlyMember it chooses among channels the koi is a member of. It returns
// nil when there is none.
func (s *Store) RandomChannel(onlyMember bool) *Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int
	for _, c := range s.channels {
		if !c.info.IsArchived && (!onlyMember || c.member) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	k := rand.IntN(n)
	for _, c := range s.channels {
		if !c.info.IsArchived && (!onlyMember || c.member) {
			if k == 0 {
				cc := c.channel()
				return &cc
			}
			k--
		}
	}
	return nil
}

// SetCurrent makes the channel with the given id the current one (the
// channel the simulated user has open).
func (s *Store) SetCurrent(id string) {
	id = s.ws.str(id)
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
	recs := make([]*Message, 0, len(msgs))
	for _, m := range msgs {
		if m.TS != "" {
			recs = append(recs, s.ws.message(m)) // outside the store's lock
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.messages == nil {
		s.messages = make(map[string][]*Message)
	}
	cur, ok := s.messages[channel]
	if !ok {
		if len(s.messages) >= MaxChannels {
			return
		}
		channel = s.ws.str(channel)
	}
	for _, m := range recs {
		cur = s.insertByTSLocked(cur, m)
	}
	if len(cur) > MaxMessagesPerChannel {
		for _, m := range cur[:len(cur)-MaxMessagesPerChannel] {
			s.knowBytes -= messageSize(m)
		}
		cur = append(cur[:0:0], cur[len(cur)-MaxMessagesPerChannel:]...)
	}
	if len(cur) > 0 {
		s.messages[channel] = cur
	}
}

// insertByTSLocked keeps msgs ordered by ts (oldest first) without
// duplicates, within the store's bound in bytes.
func (s *Store) insertByTSLocked(msgs []*Message, m *Message) []*Message {
	i := len(msgs)
	for i > 0 && tsLess(m.TS, msgs[i-1].TS) {
		i--
	}
	if i > 0 && msgs[i-1].TS == m.TS {
		if d := messageSize(m) - messageSize(msgs[i-1]); d <= MaxKnowledgeBytes-s.knowBytes {
			s.knowBytes += d
			msgs[i-1] = m
		}
		return msgs
	}
	if messageSize(m) > MaxKnowledgeBytes-s.knowBytes {
		return msgs
	}
	s.knowBytes += messageSize(m)
	msgs = append(msgs, nil)
	copy(msgs[i+1:], msgs[i:])
	msgs[i] = m
	return msgs
}

// tsLess orders Slack-style "seconds.micros" timestamps numerically when they
// parse, and as strings otherwise.
func tsLess(a, b string) bool {
	fa, ea := strconv.ParseFloat(a, 64)
	fb, eb := strconv.ParseFloat(b, 64)
	if ea == nil && eb == nil && fa != fb {
		return fa < fb
	}
	return a < b
}

// Messages returns the remembered messages of a channel, oldest first.
func (s *Store) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.messages[channel]
	if ms == nil {
		return nil
	}
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = *m
	}
	return out
}

// RandomMessage returns a uniformly chosen remembered message of a channel,
// or nil.
func (s *Store) RandomMessage(channel string) *Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.messages[channel]
	if len(ms) == 0 {
		return nil
	}
	m := *ms[rand.IntN(len(ms))]
	return &m
}

// LatestMessage returns the newest remembered message of a channel, or nil.
func (s *Store) LatestMessage(channel string) *Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.messages[channel]
	if len(ms) == 0 {
		return nil
	}
	m := *ms[len(ms)-1]
	return &m
}

// AddUserIDs remembers user ids; past MaxUserIDs, or past the store's
// bound in bytes, each new one replaces the oldest.
func (s *Store) AddUserIDs(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if id == "" {
			continue
		}
		at, found := slices.BinarySearch(s.usersIdx, id)
		if found {
			continue
		}
		size := int64(len(id)) + stringOverhead
		room := MaxKnowledgeBytes - s.knowBytes
		switch {
		case len(s.users) < MaxUserIDs && size <= room:
			id = s.ws.str(id)
			s.users = append(s.users, id)
		case len(s.users) > 0:
			// Replace the oldest (the ring's next slot), if the id fits
			// in its place.
			s.usersPos %= len(s.users)
			old := s.users[s.usersPos]
			if size-(int64(len(old))+stringOverhead) > room {
				continue
			}
			if i, ok := slices.BinarySearch(s.usersIdx, old); ok {
				s.usersIdx = slices.Delete(s.usersIdx, i, i+1)
				if i < at {
					at--
				}
			}
			s.knowBytes -= int64(len(old)) + stringOverhead
			id = s.ws.str(id)
			s.users[s.usersPos] = id
			s.usersPos = (s.usersPos + 1) % len(s.users)
		default:
			continue
		}
		s.knowBytes += size
		s.usersIdx = slices.Insert(s.usersIdx, at, id)
	}
}

// UserIDs returns the remembered user ids.
func (s *Store) UserIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.users...)
}

// RandomUserID returns a remembered user id, or "".
func (s *Store) RandomUserID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.users) == 0 {
		return ""
	}
	return s.users[rand.IntN(len(s.users))]
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
