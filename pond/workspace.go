package pond

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
)

// TeamID is the id of pond's one workspace.
const TeamID = "T000POND"

// tokenPrefix starts every default token.
const tokenPrefix = "xoxp-pond-"

// UserID returns the id of user i (0-based): "U" and i in at least six
// digits, e.g. UserID(42) == "U000042".
func UserID(i int) string { return fmt.Sprintf("U%06d", i) }

// ChannelID returns the id of channel j (0-based): "C" and j in at least six
// digits. ChannelID(0) is #general, ChannelID(1) #announcements.
func ChannelID(j int) string { return fmt.Sprintf("C%06d", j) }

// Token returns user i's token in the default scheme, "xoxp-pond-<i>".
func Token(i int) string { return tokenPrefix + strconv.Itoa(i) }

// HMACToken returns user i's token when a token secret is configured:
// "xoxp-" and the first 32 hex digits of HMAC-SHA256(secret, "pond-user:<i>").
func HMACToken(secret string, i int) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "pond-user:%d", i)
	return "xoxp-" + hex.EncodeToString(m.Sum(nil))[:32]
}

// ParseUserID returns the index of a user id made by UserID, or -1.
func ParseUserID(id string) int { return parseIndex(id, 'U') }

// ParseChannelID returns the index of a channel id made by ChannelID, or -1.
func ParseChannelID(id string) int { return parseIndex(id, 'C') }

func parseIndex(id string, prefix byte) int {
	if len(id) < 7 || len(id) > 12 || id[0] != prefix {
		return -1
	}
	n := 0
	for i := 1; i < len(id); i++ {
		c := id[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	if len(id) > 7 && id[1] == '0' {
		return -1 // only the canonical spelling
	}
	return n
}

var firstNames = []string{"ada", "alan", "grace", "linus", "ken", "dennis", "barbara", "edsger",
	"margaret", "donald", "frances", "john", "radia", "tim", "sophie", "guido",
	"rob", "anita", "leslie", "hedy", "niklaus", "shafi", "yukihiro", "katherine"}

var lastNames = []string{"lovelace", "turing", "hopper", "torvalds", "thompson", "ritchie",
	"liskov", "dijkstra", "hamilton", "knuth", "allen", "mccarthy", "perlman",
	"berners-lee", "wilson", "van-rossum", "pike", "borg", "lamport", "lamarr", "wirth",
	"goldwasser", "matsumoto", "johnson", "koi", "carp", "ripple", "lily"}

var topics = []string{"eng", "design", "sales", "support", "ops", "infra", "mobile", "web",
	"data", "ml", "security", "growth", "hiring", "random", "social", "books", "music",
	"pets", "running", "coffee", "oncall", "incidents", "release", "qa", "docs", "legal",
	"finance", "marketing", "events", "travel"}

var words = []string{"the", "deploy", "is", "green", "again", "can", "someone", "review", "my",
	"pr", "lunch", "at", "noon", "?", "shipping", "today", "looks", "good", "to", "me",
	"thanks", "for", "fix", "standup", "in", "five", "minutes", "who", "owns", "this",
	"alert", "retro", "notes", "are", "up", "koi", "pond", "ripple", "latency", "spike",
	"on", "history", "endpoint", "rolled", "back", "new", "dashboard", "link", "here"}

// userName returns user i's handle and real name.
func userName(i int) (handle, real string) {
	f := firstNames[i%len(firstNames)]
	l := lastNames[(i/len(firstNames))%len(lastNames)]
	return fmt.Sprintf("%s.%s%d", f, l, i), fmt.Sprintf("%s %s", titleCase(f), titleCase(l))
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// channelName returns channel j's name.
func channelName(j int) string {
	switch j {
	case 0:
		return "general"
	case 1:
		return "announcements"
	}
	t := topics[j%len(topics)]
	return fmt.Sprintf("%s-%d", t, j)
}

// sampleText returns deterministic chat text.
func sampleText(r *rand.Rand) string {
	n := 4 + r.IntN(14)
	var b strings.Builder
	for k := 0; k < n; k++ {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// bitset is a fixed-size membership set over user indexes.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func (b bitset) set(i int)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) count() (n int) {
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// next returns the smallest member ≥ i, or -1.
func (b bitset) next(i int) int {
	if i < 0 {
		i = 0
	}
	w := i >> 6
	if w >= len(b) {
		return -1
	}
	cur := b[w] >> (uint(i) & 63)
	if cur != 0 {
		return i + bits.TrailingZeros64(cur)
	}
	for w++; w < len(b); w++ {
		if b[w] != 0 {
			return w<<6 + bits.TrailingZeros64(b[w])
		}
	}
	return -1
}

// message is one stored chat message. Its fields other than reactions are
// immutable; reactions change under the channel lock.
type message struct {
	ts        int64  // microseconds since the epoch; unique and increasing per channel
	tsStr     string // ts formatted by formatTS
	user      int32
	text      string
	reactions []reaction
}

type reaction struct {
	name  string
	users []int32
}

// channel is one conversation. Immutable fields are set at generation;
// the rest are guarded by mu.
type channel struct {
	idx      int
	id       string
	name     string
	private  bool
	archived bool
	everyone bool // #general and #announcements: every user is a member
	general  bool
	created  int64

	mu      sync.RWMutex
	fanMu   sync.Mutex // taken before mu is released; keeps fan-out in ts order
	members bitset     // nil when everyone
	n       int        // member count (when !everyone)
	ring    []message  // a ring once full; see at
	head    int        // index of the oldest message in ring
	lastTS  int64
}

// isMember reports whether user u is in c. Callers hold c.mu (read).
func (c *channel) isMemberLocked(u int) bool {
	return c.everyone || c.members.has(u)
}

// at returns the k-th oldest stored message. Callers hold c.mu.
func (c *channel) at(k int) *message { return &c.ring[(c.head+k)%len(c.ring)] }

// appendLocked stores m, forgetting the oldest message when the ring holds
// capacity messages. The ring grows lazily up to capacity.
func (c *channel) appendLocked(m message, capacity int) {
	if len(c.ring) < capacity {
		c.ring = append(c.ring, m) // still growing: head stays 0
	} else {
		c.ring[c.head] = m
		c.head = (c.head + 1) % len(c.ring)
	}
	c.lastTS = m.ts
}

// findLocked returns the stored message with timestamp ts, or nil.
func (c *channel) findLocked(ts int64) *message {
	lo, hi := 0, len(c.ring)
	for lo < hi {
		mid := (lo + hi) / 2
		if c.at(mid).ts < ts {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(c.ring) && c.at(lo).ts == ts {
		return c.at(lo)
	}
	return nil
}

// nextTSLocked returns a timestamp later than every stored one, near now.
func (c *channel) nextTSLocked(nowMicro int64) int64 {
	if nowMicro <= c.lastTS {
		return c.lastTS + 1
	}
	return nowMicro
}

// formatTS renders microseconds as Slack's "1764000000.000123".
func formatTS(us int64) string {
	var b [24]byte
	s := strconv.AppendInt(b[:0], us/1_000_000, 10)
	s = append(s, '.')
	frac := us % 1_000_000
	for d := int64(100000); d > 0; d /= 10 {
		s = append(s, byte('0'+frac/d%10))
	}
	return string(s)
}

// parseTS reads Slack's "1764000000.000123" (the fraction may be shorter).
func parseTS(s string) (int64, bool) {
	sec, frac, _ := strings.Cut(s, ".")
	if sec == "" || len(sec) > 12 || len(frac) > 6 {
		return 0, false
	}
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var f int64
	for i := 0; i < 6; i++ {
		f *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			f += int64(c - '0')
		}
	}
	return n*1_000_000 + f, true
}

// historyEpoch is the timestamp of the first pre-populated message.
const historyEpoch = 1764000000 * 1_000_000

// workspace is the generated team: users and channels.
type workspace struct {
	users    int
	channels []*channel
	cap      int

	tokens  map[string]int32 // nil in the default token scheme
	userIDs []string         // UserID(i), precomputed
	byName  map[string]int   // channel name → index
}

// newWorkspace generates the workspace of cfg (with defaults applied).
func newWorkspace(cfg Config) *workspace {
	ws := &workspace{users: cfg.Users, cap: cfg.HistoryCap}
	switch {
	case len(cfg.Tokens) > 0:
		ws.tokens = make(map[string]int32, len(cfg.Tokens))
		for i, t := range cfg.Tokens {
			ws.tokens[t] = int32(i)
		}
	case cfg.TokenSecret != "":
		ws.tokens = make(map[string]int32, cfg.Users)
		for i := 0; i < cfg.Users; i++ {
			ws.tokens[HMACToken(cfg.TokenSecret, i)] = int32(i)
		}
	}
	ws.userIDs = make([]string, cfg.Users)
	for i := range ws.userIDs {
		ws.userIDs[i] = UserID(i)
	}
	ws.byName = make(map[string]int, cfg.Channels)
	for j := 0; j < cfg.Channels; j++ {
		ws.byName[channelName(j)] = j
	}
	perm := make([]int32, cfg.Users)
	for i := range perm {
		perm[i] = int32(i)
	}
	ws.channels = make([]*channel, cfg.Channels)
	for j := range ws.channels {
		c := &channel{
			idx:     j,
			id:      ChannelID(j),
			name:    channelName(j),
			general: j == 0,
			created: 1700000000 + int64(j)*3600,
		}
		if j < 2 {
			c.everyone = true
		} else {
			c.private = j%10 == 9
			c.archived = j%100 == 99
			// Power law: the k-th ordinary channel has about Users/2/(k+1)
			// members, at least 2 (or every user, in a tiny workspace).
			k := j - 2
			size := max(cfg.Users/2/(k+1), min(2, cfg.Users))
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(j)))
			c.members = newBitset(cfg.Users)
			for m := 0; m < size; m++ {
				s := m + r.IntN(cfg.Users-m)
				perm[m], perm[s] = perm[s], perm[m]
				c.members.set(int(perm[m]))
			}
			c.n = size
		}
		// Pre-populated history, deterministic from the seed.
		r := rand.New(rand.NewPCG(cfg.Seed^0x9e3779b97f4a7c15, uint64(j)))
		for h := 0; h < cfg.HistoryPerChannel; h++ {
			u := r.IntN(cfg.Users)
			if !c.everyone {
				if nu := c.members.next(u); nu >= 0 {
					u = nu
				} else {
					u = c.members.next(0)
				}
			}
			ts := int64(historyEpoch) + int64(h)*60_000_000 + int64(j)*1000 + int64(r.IntN(1000))
			m := message{ts: ts, tsStr: formatTS(ts), user: int32(u), text: sampleText(r)}
			if r.IntN(5) == 0 {
				m.reactions = []reaction{{name: []string{"thumbsup", "tada", "eyes", "fish"}[r.IntN(4)], users: []int32{int32(r.IntN(cfg.Users))}}}
			}
			c.appendLocked(m, cfg.HistoryCap)
		}
		ws.channels[j] = c
	}
	return ws
}

// userFor returns the user a token belongs to, or -1.
func (ws *workspace) userFor(token string) int {
	if ws.tokens != nil {
		if u, ok := ws.tokens[token]; ok {
			return int(u)
		}
		return -1
	}
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || rest == "" || len(rest) > 9 || (len(rest) > 1 && rest[0] == '0') {
		return -1
	}
	n := 0
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	if n >= ws.users {
		return -1
	}
	return n
}

// channelByID returns the channel with the given id (or "#name"), or nil.
func (ws *workspace) channelByID(id string) *channel {
	if name, ok := strings.CutPrefix(id, "#"); ok {
		if j, ok := ws.byName[name]; ok {
			return ws.channels[j]
		}
		return nil
	}
	j := ParseChannelID(id)
	if j < 0 || j >= len(ws.channels) {
		return nil
	}
	return ws.channels[j]
}
