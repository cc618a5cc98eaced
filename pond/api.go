package pond

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// apiError is a Slack-style error code; its HTTP status comes from
// errorStatus.
type apiError string

// errorStatus is the one table mapping error codes to HTTP statuses; codes
// absent here are HTTP 200 with ok:false, as in Slack.
var errorStatus = map[apiError]int{
	"unknown_method":     http.StatusNotFound,
	"method_not_allowed": http.StatusMethodNotAllowed,
	"request_too_large":  http.StatusRequestEntityTooLarge,
	"ratelimited":        http.StatusTooManyRequests,
	"internal_error":     http.StatusInternalServerError,
}

// handler runs one API method for user with decoded args. It returns a
// JSON-object-encodable result (merged after "ok":true) or an error code.
type handler func(s *Server, r *http.Request, user int, args map[string]string) (any, apiError)

// methods is the dispatch table; MethodTiers lists the same names.
var methods map[string]handler

func init() {
	methods = map[string]handler{
		"auth.test":             (*Server).authTest,
		"rtm.connect":           (*Server).rtmConnect,
		"users.list":            (*Server).usersList,
		"users.info":            (*Server).usersInfo,
		"users.setPresence":     (*Server).usersSetPresence,
		"conversations.list":    (*Server).conversationsList,
		"users.conversations":   (*Server).usersConversations,
		"conversations.info":    (*Server).conversationsInfo,
		"conversations.members": (*Server).conversationsMembers,
		"conversations.history": (*Server).conversationsHistory,
		"conversations.mark":    (*Server).conversationsMark,
		"conversations.join":    (*Server).conversationsJoin,
		"chat.postMessage":      (*Server).chatPostMessage,
		"reactions.add":         (*Server).reactionsAdd,
		"reactions.remove":      (*Server).reactionsRemove,
	}
}

// serveAPI is POST|GET /api/{method}.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("method")
	h, ok := methods[name]
	if !ok {
		s.fail(w, "unknown", "unknown_method")
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		s.fail(w, name, "method_not_allowed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			s.fail(w, name, "request_too_large")
		} else {
			s.fail(w, name, "invalid_arguments")
		}
		return
	}
	args, err := parseArgs(r.Header.Get("Content-Type"), r.URL.RawQuery, body)
	if err != nil {
		s.fail(w, name, "invalid_arguments")
		return
	}
	tok := bearer(r)
	if tok == "" {
		tok = args["token"]
	}
	if tok == "" {
		s.fail(w, name, "not_authed")
		return
	}
	user := s.ws.userFor(tok)
	if user < 0 {
		s.fail(w, name, "invalid_auth")
		return
	}
	now := time.Now()
	s.order.record(user, orderMethod(name), now) // every authenticated call, whatever its reply
	if ok, wait := s.lim.allow(user, name, now); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSecs(wait)))
		s.fail(w, name, "ratelimited")
		return
	}
	if f, ok := s.fault(name); ok {
		if f.Latency > 0 && !sleep(r.Context(), f.Latency) {
			s.fail(w, name, "internal_error")
			return
		}
		if f.Error > 0 && rand.Float64() < f.Error {
			s.fail(w, name, "internal_error")
			return
		}
	}
	res, code := h(s, r, user, args)
	if code != "" {
		s.fail(w, name, code)
		return
	}
	b, err := json.Marshal(res)
	if err != nil || len(b) < 2 || b[0] != '{' {
		s.fail(w, name, "internal_error")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	buf := make([]byte, 0, len(b)+12)
	buf = append(buf, `{"ok":true`...)
	if len(b) > 2 {
		buf = append(buf, ',')
	}
	buf = append(buf, b[1:]...)
	buf = append(buf, '\n')
	w.Write(buf)
	s.stats.request(name, http.StatusOK, "")
}

// fail writes {"ok":false,"error":code} with code's status, and counts it.
func (s *Server) fail(w http.ResponseWriter, method string, code apiError) {
	status, ok := errorStatus[code]
	if !ok {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, `{"ok":false,"error":"`+string(code)+`"}`+"\n")
	s.stats.request(method, status, string(code))
}

// fault returns the injected fault for method, if any.
func (s *Server) fault(method string) (Fault, bool) {
	p := s.faults.Load()
	if p == nil || len(*p) == 0 {
		return Fault{}, false
	}
	if f, ok := (*p)[method]; ok {
		return f, true
	}
	f, ok := (*p)["*"]
	return f, ok
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// --- reply shapes -----------------------------------------------------------

// User is a user object in API replies.
type User struct {
	ID       string  `json:"id"`
	TeamID   string  `json:"team_id"`
	Name     string  `json:"name"`
	RealName string  `json:"real_name"`
	Deleted  bool    `json:"deleted"`
	IsBot    bool    `json:"is_bot"`
	IsAdmin  bool    `json:"is_admin"`
	TZ       string  `json:"tz"`
	Profile  Profile `json:"profile"`
	Presence string  `json:"presence,omitempty"`
}

// Profile is a user's profile.
type Profile struct {
	RealName    string `json:"real_name"`
	DisplayName string `json:"display_name"`
	Email       string `json:"email"`
}

// Channel is a channel object in API replies.
type Channel struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	IsChannel  bool   `json:"is_channel"`
	IsMember   bool   `json:"is_member"`
	IsArchived bool   `json:"is_archived"`
	IsPrivate  bool   `json:"is_private"`
	IsGeneral  bool   `json:"is_general"`
	NumMembers int    `json:"num_members"`
	Created    int64  `json:"created"`
	Topic      Topic  `json:"topic"`
	Purpose    Topic  `json:"purpose"`
	LastRead   string `json:"last_read,omitempty"`
}

// Topic is a channel's topic or purpose.
type Topic struct {
	Value string `json:"value"`
}

// Message is a message object in API replies.
type Message struct {
	Type      string     `json:"type"` // "message"
	TS        string     `json:"ts"`
	User      string     `json:"user"`
	Text      string     `json:"text"`
	Team      string     `json:"team"`
	Reactions []Reaction `json:"reactions,omitempty"`
}

// Reaction is one emoji on a message.
type Reaction struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Users []string `json:"users"`
}

// ResponseMetadata carries the pagination cursor; "" means the last page.
type ResponseMetadata struct {
	NextCursor string `json:"next_cursor"`
}

func (s *Server) user(i int) User {
	handle, real := userName(i)
	u := User{
		ID: s.ws.userIDs[i], TeamID: TeamID, Name: handle, RealName: real,
		TZ:      []string{"America/Los_Angeles", "America/New_York", "Europe/London", "Asia/Tokyo"}[i%4],
		Profile: Profile{RealName: real, DisplayName: handle, Email: handle + "@pond.example"},
		IsAdmin: i == 0,
	}
	return u
}

func (s *Server) presenceOf(i int) string {
	if s.presence[i].Load() {
		return "away"
	}
	return "active"
}

// channelObj renders ch for user. Callers hold ch.mu (read).
func (s *Server) channelObjLocked(ch *channel, user int) Channel {
	n := ch.n
	if ch.everyone {
		n = s.ws.users
	}
	return Channel{
		ID: ch.id, Name: ch.name, IsChannel: true,
		IsMember:   ch.isMemberLocked(user),
		IsArchived: ch.archived, IsPrivate: ch.private, IsGeneral: ch.general,
		NumMembers: n, Created: ch.created,
		Topic:   Topic{Value: "All about #" + ch.name},
		Purpose: Topic{Value: "A pond channel for koi to swim in"},
	}
}

// visibleChannel finds a channel user may see (public, or private and a
// member), by the "channel" argument.
func (s *Server) visibleChannel(args map[string]string, user int) (*channel, apiError) {
	id := args["channel"]
	if id == "" {
		return nil, "invalid_arguments"
	}
	ch := s.ws.channelByID(id)
	if ch == nil {
		return nil, "channel_not_found"
	}
	if ch.private {
		ch.mu.RLock()
		member := ch.isMemberLocked(user)
		ch.mu.RUnlock()
		if !member {
			return nil, "channel_not_found"
		}
	}
	return ch, ""
}

func (s *Server) messageObjLocked(m *message) Message {
	out := Message{Type: "message", TS: m.tsStr, User: s.ws.userIDs[m.user], Text: m.text, Team: TeamID}
	if len(m.reactions) > 0 {
		out.Reactions = make([]Reaction, len(m.reactions))
		for i, rc := range m.reactions {
			users := make([]string, len(rc.users))
			for k, u := range rc.users {
				users[k] = s.ws.userIDs[u]
			}
			out.Reactions[i] = Reaction{Name: rc.name, Count: len(rc.users), Users: users}
		}
	}
	return out
}

// Cursors are opaque to clients: base64 of "next:<n>".
func encodeCursor(n int64) string {
	return base64.StdEncoding.EncodeToString([]byte("next:" + strconv.FormatInt(n, 10)))
}

func decodeCursor(c string) (int64, bool) {
	if c == "" {
		return 0, true
	}
	b, err := base64.StdEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	v, ok := strings.CutPrefix(string(b), "next:")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// --- methods ------------------------------------------------------------------

func (s *Server) authTest(r *http.Request, user int, _ map[string]string) (any, apiError) {
	handle, _ := userName(user)
	return struct {
		URL    string `json:"url"`
		Team   string `json:"team"`
		User   string `json:"user"`
		TeamID string `json:"team_id"`
		UserID string `json:"user_id"`
	}{"http://" + r.Host + "/", "pond", handle, TeamID, s.ws.userIDs[user]}, ""
}

type ref struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain,omitempty"`
}

func (s *Server) rtmConnect(r *http.Request, user int, _ map[string]string) (any, apiError) {
	handle, _ := userName(user)
	return struct {
		URL  string `json:"url"`
		Self ref    `json:"self"`
		Team ref    `json:"team"`
	}{
		URL:  "ws://" + r.Host + "/ws?ticket=" + s.makeTicket(user, time.Now()),
		Self: ref{ID: s.ws.userIDs[user], Name: handle},
		Team: ref{ID: TeamID, Name: "pond", Domain: "pond"},
	}, ""
}

func (s *Server) usersList(_ *http.Request, _ int, args map[string]string) (any, apiError) {
	limit, ok := intArg(args, "limit", 200, 1, 1000)
	from, ok2 := decodeCursor(args["cursor"])
	if !ok || !ok2 {
		return nil, "invalid_cursor"
	}
	var out struct {
		Members []User           `json:"members"`
		Meta    ResponseMetadata `json:"response_metadata"`
		CacheTS int64            `json:"cache_ts"`
	}
	out.Members = []User{}
	i := int(min(from, int64(s.ws.users)))
	for ; i < s.ws.users && len(out.Members) < limit; i++ {
		out.Members = append(out.Members, s.user(i))
	}
	if i < s.ws.users {
		out.Meta.NextCursor = encodeCursor(int64(i))
	}
	out.CacheTS = time.Now().Unix()
	return out, ""
}

func (s *Server) usersInfo(_ *http.Request, _ int, args map[string]string) (any, apiError) {
	u := ParseUserID(args["user"])
	if args["user"] == "" {
		return nil, "invalid_arguments"
	}
	if u < 0 || u >= s.ws.users {
		return nil, "user_not_found"
	}
	obj := s.user(u)
	obj.Presence = s.presenceOf(u)
	return struct {
		User User `json:"user"`
	}{obj}, ""
}

func (s *Server) usersSetPresence(_ *http.Request, user int, args map[string]string) (any, apiError) {
	var away bool
	switch args["presence"] {
	case "away":
		away = true
	case "auto", "active":
	case "":
		return nil, "invalid_arguments"
	default:
		return nil, "invalid_presence"
	}
	s.presence[user].Store(away)
	p := "active"
	if away {
		p = "away"
	}
	s.hub.toUser(user, s.prepare(PresenceEvent{Type: "presence_change", User: s.ws.userIDs[user], Presence: p, SentAt: nowMillis()}))
	return struct{}{}, ""
}

// usersConversations lists the channels the caller is a member of (the
// cheap way for a client to learn its channels at boot).
func (s *Server) usersConversations(r *http.Request, user int, args map[string]string) (any, apiError) {
	return s.listChannels(user, args, true)
}

func (s *Server) conversationsList(r *http.Request, user int, args map[string]string) (any, apiError) {
	return s.listChannels(user, args, false)
}

// listChannels serves conversations.list and, with mine, users.conversations.
func (s *Server) listChannels(user int, args map[string]string, mine bool) (any, apiError) {
	limit, ok := intArg(args, "limit", 100, 1, 1000)
	from, ok2 := decodeCursor(args["cursor"])
	exclArchived, ok3 := boolArg(args, "exclude_archived")
	if !ok || !ok3 {
		return nil, "invalid_arguments"
	}
	if !ok2 {
		return nil, "invalid_cursor"
	}
	public, private := true, false
	if t := args["types"]; t != "" {
		public, private = false, false
		for _, typ := range strings.Split(t, ",") {
			switch strings.TrimSpace(typ) {
			case "public_channel":
				public = true
			case "private_channel":
				private = true
			case "im", "mpim":
			default:
				return nil, "invalid_types"
			}
		}
	}
	var out struct {
		Channels []Channel        `json:"channels"`
		Meta     ResponseMetadata `json:"response_metadata"`
	}
	out.Channels = []Channel{}
	j := int(min(from, int64(len(s.ws.channels))))
	for ; j < len(s.ws.channels) && len(out.Channels) < limit; j++ {
		ch := s.ws.channels[j]
		if (ch.private && !private) || (!ch.private && !public) || (exclArchived && ch.archived) {
			continue
		}
		ch.mu.RLock()
		if member := ch.isMemberLocked(user); member || (!ch.private && !mine) {
			out.Channels = append(out.Channels, s.channelObjLocked(ch, user))
		}
		ch.mu.RUnlock()
	}
	if j < len(s.ws.channels) {
		out.Meta.NextCursor = encodeCursor(int64(j))
	}
	return out, ""
}

func (s *Server) conversationsInfo(_ *http.Request, user int, args map[string]string) (any, apiError) {
	ch, code := s.visibleChannel(args, user)
	if code != "" {
		return nil, code
	}
	ch.mu.RLock()
	obj := s.channelObjLocked(ch, user)
	ch.mu.RUnlock()
	if obj.IsMember {
		s.marksMu.Lock()
		lr := s.marks[markKey{int32(user), int32(ch.idx)}]
		s.marksMu.Unlock()
		obj.LastRead = formatTS(lr)
	}
	return struct {
		Channel Channel `json:"channel"`
	}{obj}, ""
}

func (s *Server) conversationsMembers(_ *http.Request, user int, args map[string]string) (any, apiError) {
	ch, code := s.visibleChannel(args, user)
	if code != "" {
		return nil, code
	}
	limit, ok := intArg(args, "limit", 100, 1, 1000)
	from, ok2 := decodeCursor(args["cursor"])
	if !ok {
		return nil, "invalid_arguments"
	}
	if !ok2 {
		return nil, "invalid_cursor"
	}
	var out struct {
		Members []string         `json:"members"`
		Meta    ResponseMetadata `json:"response_metadata"`
	}
	out.Members = make([]string, 0, min(limit, 100))
	i := int(min(from, int64(s.ws.users)))
	ch.mu.RLock()
	for len(out.Members) < limit && i < s.ws.users {
		if !ch.everyone {
			if i = ch.members.next(i); i < 0 {
				i = s.ws.users
				break
			}
		}
		out.Members = append(out.Members, s.ws.userIDs[i])
		i++
	}
	if i < s.ws.users && (ch.everyone || ch.members.next(i) >= 0) {
		out.Meta.NextCursor = encodeCursor(int64(i))
	}
	ch.mu.RUnlock()
	return out, ""
}

func (s *Server) conversationsHistory(_ *http.Request, user int, args map[string]string) (any, apiError) {
	ch, code := s.visibleChannel(args, user)
	if code != "" {
		return nil, code
	}
	limit, ok := intArg(args, "limit", 100, 1, 1000)
	inclusive, ok2 := boolArg(args, "inclusive")
	if !ok || !ok2 {
		return nil, "invalid_arguments"
	}
	upper := int64(1) << 62 // exclusive
	lower := int64(-1)      // exclusive
	if v := args["latest"]; v != "" {
		ts, ok := parseTS(v)
		if !ok {
			return nil, "invalid_ts_latest"
		}
		upper = ts
		if inclusive {
			upper++
		}
	}
	if v := args["oldest"]; v != "" {
		ts, ok := parseTS(v)
		if !ok {
			return nil, "invalid_ts_oldest"
		}
		lower = ts
		if inclusive {
			lower--
		}
	}
	if c := args["cursor"]; c != "" {
		n, ok := decodeCursor(c)
		if !ok {
			return nil, "invalid_cursor"
		}
		upper = n
	}
	var out struct {
		Messages []Message        `json:"messages"`
		HasMore  bool             `json:"has_more"`
		Meta     ResponseMetadata `json:"response_metadata"`
	}
	ch.mu.RLock()
	// Index of the first stored message at or after upper.
	lo, hi := 0, len(ch.ring)
	for lo < hi {
		mid := (lo + hi) / 2
		if ch.at(mid).ts < upper {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	out.Messages = make([]Message, 0, min(limit, lo))
	k := lo - 1
	for ; k >= 0 && len(out.Messages) < limit; k-- {
		m := ch.at(k)
		if m.ts <= lower {
			break
		}
		out.Messages = append(out.Messages, s.messageObjLocked(m))
	}
	if k >= 0 && ch.at(k).ts > lower {
		out.HasMore = true
		out.Meta.NextCursor = encodeCursor(ch.at(k + 1).ts)
	}
	ch.mu.RUnlock()
	return out, ""
}

func (s *Server) conversationsMark(_ *http.Request, user int, args map[string]string) (any, apiError) {
	ch, code := s.visibleChannel(args, user)
	if code != "" {
		return nil, code
	}
	ts, ok := parseTS(args["ts"])
	if !ok {
		return nil, "invalid_timestamp"
	}
	ch.mu.RLock()
	member := ch.isMemberLocked(user)
	ch.mu.RUnlock()
	if !member {
		return nil, "not_in_channel"
	}
	s.marksMu.Lock()
	s.marks[markKey{int32(user), int32(ch.idx)}] = ts
	s.marksMu.Unlock()
	s.hub.toUser(user, s.prepare(MarkedEvent{Type: "channel_marked", Channel: ch.id, TS: formatTS(ts), SentAt: nowMillis()}))
	return struct{}{}, ""
}

func (s *Server) conversationsJoin(_ *http.Request, user int, args map[string]string) (any, apiError) {
	id := args["channel"]
	if id == "" {
		return nil, "invalid_arguments"
	}
	ch := s.ws.channelByID(id)
	if ch == nil {
		return nil, "channel_not_found"
	}
	ch.mu.Lock()
	if ch.private && !ch.isMemberLocked(user) {
		ch.mu.Unlock()
		return nil, "channel_not_found"
	}
	if ch.archived {
		ch.mu.Unlock()
		return nil, "is_archived"
	}
	already := ch.isMemberLocked(user)
	if !already {
		ch.members.set(user)
		ch.n++
	}
	obj := s.channelObjLocked(ch, user)
	ch.mu.Unlock()
	if !already {
		s.hub.joined(ch.idx, user)
	}
	out := struct {
		Channel Channel `json:"channel"`
		Warning string  `json:"warning,omitempty"`
	}{Channel: obj}
	if already {
		out.Warning = "already_in_channel"
	}
	return out, ""
}

// maxTextLen bounds a posted message, as Slack does.
const maxTextLen = 40000

func (s *Server) chatPostMessage(_ *http.Request, user int, args map[string]string) (any, apiError) {
	id := args["channel"]
	if id == "" {
		return nil, "channel_not_found"
	}
	ch := s.ws.channelByID(id)
	if ch == nil {
		return nil, "channel_not_found"
	}
	text := args["text"]
	if text == "" {
		if args["blocks"] == "" && args["attachments"] == "" {
			return nil, "no_text"
		}
		text = "(blocks)"
	}
	if len(text) > maxTextLen {
		return nil, "msg_too_long"
	}
	now := time.Now()
	ch.mu.Lock()
	if !ch.isMemberLocked(user) {
		ch.mu.Unlock()
		if ch.private {
			return nil, "channel_not_found"
		}
		return nil, "not_in_channel"
	}
	if ch.archived {
		ch.mu.Unlock()
		return nil, "is_archived"
	}
	ts := ch.nextTSLocked(now.UnixMicro())
	m := message{ts: ts, tsStr: formatTS(ts), user: int32(user), text: text}
	ch.appendLocked(m, s.cfg.HistoryCap)
	// Prepare under the lock so events leave in ts order per channel.
	pm := s.prepare(MessageEvent{Type: "message", Channel: ch.id, User: s.ws.userIDs[user], Text: text,
		TS: m.tsStr, EventTS: m.tsStr, Team: TeamID, SentAt: nowMillis()})
	ch.fanMu.Lock()
	ch.mu.Unlock()
	s.hub.toChannel(ch, pm, -1)
	ch.fanMu.Unlock()
	s.stats.messagesPosted.Add(1)
	return struct {
		Channel string  `json:"channel"`
		TS      string  `json:"ts"`
		Message Message `json:"message"`
	}{ch.id, m.tsStr, Message{Type: "message", TS: m.tsStr, User: s.ws.userIDs[user], Text: text, Team: TeamID}}, ""
}

// validReaction accepts emoji names like "thumbsup", "+1", "smile_cat".
func validReaction(name string) bool {
	if name == "" || len(name) > 100 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '+' || c == '\'') {
			return false
		}
	}
	return true
}

// maxReactionNames bounds distinct reactions per message.
const maxReactionNames = 50

func (s *Server) reactionsAdd(r *http.Request, user int, args map[string]string) (any, apiError) {
	return s.react(user, args, true)
}

func (s *Server) reactionsRemove(r *http.Request, user int, args map[string]string) (any, apiError) {
	return s.react(user, args, false)
}

func (s *Server) react(user int, args map[string]string, add bool) (any, apiError) {
	ch, code := s.visibleChannel(args, user)
	if code != "" {
		return nil, code
	}
	name := strings.Trim(args["name"], ":")
	if !validReaction(name) {
		return nil, "invalid_name"
	}
	ts, ok := parseTS(args["timestamp"])
	if !ok {
		return nil, "invalid_arguments"
	}
	ch.mu.Lock()
	if ch.archived {
		ch.mu.Unlock()
		return nil, "is_archived"
	}
	m := ch.findLocked(ts)
	if m == nil {
		ch.mu.Unlock()
		return nil, "message_not_found"
	}
	idx := -1
	for i, rc := range m.reactions {
		if rc.name == name {
			idx = i
			break
		}
	}
	has := false
	if idx >= 0 {
		for _, u := range m.reactions[idx].users {
			if int(u) == user {
				has = true
				break
			}
		}
	}
	switch {
	case add && has:
		ch.mu.Unlock()
		return nil, "already_reacted"
	case !add && !has:
		ch.mu.Unlock()
		return nil, "no_reaction"
	case add && idx < 0:
		if len(m.reactions) >= maxReactionNames {
			ch.mu.Unlock()
			return nil, "too_many_reactions"
		}
		m.reactions = append(m.reactions, reaction{name: name, users: []int32{int32(user)}})
	case add:
		m.reactions[idx].users = append(m.reactions[idx].users, int32(user))
	default:
		us := m.reactions[idx].users
		for i, u := range us {
			if int(u) == user {
				us = append(us[:i:i], us[i+1:]...)
				break
			}
		}
		if len(us) == 0 {
			m.reactions = append(m.reactions[:idx:idx], m.reactions[idx+1:]...)
		} else {
			m.reactions[idx].users = us
		}
	}
	typ := "reaction_removed"
	if add {
		typ = "reaction_added"
	}
	now := formatTS(ch.nextTSLocked(time.Now().UnixMicro()))
	pm := s.prepare(ReactionEvent{Type: typ, User: s.ws.userIDs[user], Reaction: name,
		ItemUser: s.ws.userIDs[m.user], Item: ReactionItem{Type: "message", Channel: ch.id, TS: m.tsStr},
		EventTS: now, SentAt: nowMillis()})
	ch.fanMu.Lock()
	ch.mu.Unlock()
	s.hub.toChannel(ch, pm, -1)
	ch.fanMu.Unlock()
	return struct{}{}, ""
}
