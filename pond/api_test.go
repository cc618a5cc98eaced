package pond

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestIdentities(t *testing.T) {
	if got := UserID(42); got != "U000042" {
		t.Errorf("UserID(42) = %q", got)
	}
	if got := UserID(1234567); got != "U1234567" || ParseUserID(got) != 1234567 {
		t.Errorf("UserID(1234567) = %q, parses to %d", got, ParseUserID(got))
	}
	for _, bad := range []string{"", "U", "U00004x", "C000001", "U0000042", "x000001"} {
		if ParseUserID(bad) != -1 {
			t.Errorf("ParseUserID(%q) accepted", bad)
		}
	}
	if Token(7) != "xoxp-pond-7" || ChannelID(0) != "C000000" {
		t.Errorf("Token/ChannelID scheme changed")
	}
	ws := newWorkspace(Config{Users: 10, Channels: 2}.withDefaults())
	for tok, want := range map[string]int{"xoxp-pond-0": 0, "xoxp-pond-9": 9, "xoxp-pond-10": -1, "xoxp-pond-01": -1, "xoxp-pond-": -1, "xoxp-pond--1": -1, "nope": -1} {
		if got := ws.userFor(tok); got != want {
			t.Errorf("userFor(%q) = %d, want %d", tok, got, want)
		}
	}
}

func TestWorkspaceDeterministic(t *testing.T) {
	cfg := Config{Users: 2000, Channels: 50}.withDefaults()
	a, b := newWorkspace(cfg), newWorkspace(cfg)
	for j := range a.channels {
		ca, cb := a.channels[j], b.channels[j]
		if ca.n != cb.n || !slicesEqual(ca.members, cb.members) || len(ca.ring) != len(cb.ring) {
			t.Fatalf("channel %d differs between two generations", j)
		}
		for k := range ca.ring {
			if ca.ring[k].ts != cb.ring[k].ts || ca.ring[k].text != cb.ring[k].text {
				t.Fatalf("channel %d message %d differs", j, k)
			}
		}
		if !ca.everyone && ca.members.count() != ca.n {
			t.Errorf("channel %d: count %d != n %d", j, ca.members.count(), ca.n)
		}
	}
	// Power law: the first ordinary channel is large, the last small.
	if first, last := a.channels[2].n, a.channels[49].n; first != 1000 || last > 30 {
		t.Errorf("sizes: first %d (want 1000), last %d (want ≤ 30)", first, last)
	}
}

func slicesEqual(a, b bitset) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAuth(t *testing.T) {
	s := openTest(t, Config{})
	r := mustOK(t, s, 5, "auth.test", nil)
	if r.str("user_id") != "U000005" || r.str("team_id") != TeamID {
		t.Errorf("auth.test = %v", r.Body)
	}
	tests := []struct {
		name, token, want string
	}{
		{"no token", "", "not_authed"},                 // nothing at all
		{"unknown token", "xoxp-nope", "invalid_auth"}, // wrong shape
		{"user out of range", Token(200), "invalid_auth"},
	}
	for _, tc := range tests {
		r := call(t, s, tc.token, "auth.test", nil)
		if r.ok() || r.err() != tc.want || r.Status != 200 {
			t.Errorf("%s: status %d %v, want %s", tc.name, r.Status, r.Body, tc.want)
		}
	}
	// The token may also come as an argument.
	if r := call(t, s, "", "auth.test", map[string]string{"token": Token(3)}); !r.ok() || r.str("user_id") != "U000003" {
		t.Errorf("token argument: %v", r.Body)
	}
}

func TestHMACAndListTokens(t *testing.T) {
	s := openTest(t, Config{Users: 20, TokenSecret: "s3cret"})
	if r := call(t, s, HMACToken("s3cret", 7), "auth.test", nil); !r.ok() || r.str("user_id") != "U000007" {
		t.Errorf("hmac token: %v", r.Body)
	}
	if r := call(t, s, Token(7), "auth.test", nil); r.err() != "invalid_auth" {
		t.Errorf("default token accepted under a secret: %v", r.Body)
	}
	toks := make([]string, 3)
	for i := range toks {
		toks[i] = fmt.Sprintf("tok-%d-x", i)
	}
	s2 := openTest(t, Config{Users: 3, Channels: 2, Tokens: toks})
	if r := call(t, s2, "tok-2-x", "auth.test", nil); !r.ok() || r.str("user_id") != "U000002" {
		t.Errorf("token list: %v", r.Body)
	}
}

func TestBadRequests(t *testing.T) {
	s := openTest(t, Config{MaxBodyBytes: 1024})
	post := func(method, ctype, body string) reply {
		req, _ := http.NewRequest("POST", s.URL()+"/api/"+method, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer "+Token(1))
		return do(t, req)
	}
	tests := []struct {
		name   string
		r      reply
		status int
		code   string
	}{
		{"unknown method", call(t, s, Token(1), "chat.nope", nil), 404, "unknown_method"},
		{"malformed json", post("auth.test", "application/json", `{"a":`), 200, "invalid_arguments"},
		{"json not an object", post("auth.test", "application/json", `[1,2]`), 200, "invalid_arguments"},
		{"bad form", post("auth.test", "application/x-www-form-urlencoded", "a=%zz"), 200, "invalid_arguments"},
		{"unsupported content type", post("auth.test", "image/png", "xx"), 200, "invalid_arguments"},
		{"oversized body", post("chat.postMessage", "application/x-www-form-urlencoded", "text="+strings.Repeat("a", 4096)), 413, "request_too_large"},
		{"missing channel", call(t, s, Token(1), "conversations.history", nil), 200, "invalid_arguments"},
		{"unknown channel", call(t, s, Token(1), "conversations.history", map[string]string{"channel": "C999999"}), 200, "channel_not_found"},
		{"garbage channel", call(t, s, Token(1), "conversations.info", map[string]string{"channel": "💥"}), 200, "channel_not_found"},
		{"bad limit", call(t, s, Token(1), "conversations.history", map[string]string{"channel": "C000000", "limit": "many"}), 200, "invalid_arguments"},
		{"bad cursor", call(t, s, Token(1), "conversations.history", map[string]string{"channel": "C000000", "cursor": "!!"}), 200, "invalid_cursor"},
		{"bad latest", call(t, s, Token(1), "conversations.history", map[string]string{"channel": "C000000", "latest": "yesterday"}), 200, "invalid_ts_latest"},
		{"no text", call(t, s, Token(1), "chat.postMessage", map[string]string{"channel": "C000000"}), 200, "no_text"},
		{"bad reaction", call(t, s, Token(1), "reactions.add", map[string]string{"channel": "C000000", "timestamp": "1.0", "name": "Bad Name"}), 200, "invalid_name"},
		{"unknown user", call(t, s, Token(1), "users.info", map[string]string{"user": "U999999"}), 200, "user_not_found"},
		{"bad presence", call(t, s, Token(1), "users.setPresence", map[string]string{"presence": "asleep"}), 200, "invalid_presence"},
	}
	for _, tc := range tests {
		if tc.r.ok() || tc.r.Status != tc.status || tc.r.err() != tc.code {
			t.Errorf("%s: status %d %v, want %d %s", tc.name, tc.r.Status, tc.r.Body, tc.status, tc.code)
		}
	}
	// GET works like POST; other verbs do not.
	if r := do(t, mustReq(t, "GET", s.URL()+"/api/auth.test?token="+Token(2))); !r.ok() {
		t.Errorf("GET: %v", r.Body)
	}
	if r := do(t, mustReq(t, "DELETE", s.URL()+"/api/auth.test")); r.Status != 405 {
		t.Errorf("DELETE: %d", r.Status)
	}
	st := s.Stats()
	if st.Requests["unknown"]["404"] != 1 || st.Requests["chat.postMessage"]["413"] != 1 || st.Errors["conversations.history"]["channel_not_found"] != 1 {
		t.Errorf("stats did not count the bad requests: %+v", st.Requests)
	}
}

func mustReq(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestJSONArgs(t *testing.T) {
	s := openTest(t, Config{})
	body, _ := json.Marshal(map[string]any{"channel": "C000000", "limit": 3})
	req, _ := http.NewRequest("POST", s.URL()+"/api/conversations.history", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer "+Token(0))
	r := do(t, req)
	if msgs, _ := r.Body["messages"].([]any); !r.ok() || len(msgs) != 3 {
		t.Fatalf("json args: %v", r.Body)
	}
}

func TestUsersAndChannels(t *testing.T) {
	s := openTest(t, Config{})
	// users.list pages through every user exactly once.
	seen, cursor := 0, ""
	for page := 0; page < 10; page++ {
		r := mustOK(t, s, 1, "users.list", map[string]string{"limit": "70", "cursor": cursor})
		for _, m := range r.Body["members"].([]any) {
			u := m.(map[string]any)
			if u["id"] != UserID(seen) || u["name"] == "" {
				t.Fatalf("user %d = %v", seen, u)
			}
			seen++
		}
		cursor = r.Body["response_metadata"].(map[string]any)["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	if seen != 200 {
		t.Errorf("users.list saw %d users, want 200", seen)
	}
	r := mustOK(t, s, 1, "users.info", map[string]string{"user": "U000009"})
	if u := r.Body["user"].(map[string]any); u["id"] != "U000009" || u["presence"] != "active" {
		t.Errorf("users.info = %v", u)
	}

	// conversations.list: public channels by default, private ones with types.
	r = mustOK(t, s, 3, "conversations.list", map[string]string{"limit": "1000"})
	chans := r.Body["channels"].([]any)
	gen := chans[0].(map[string]any)
	for _, k := range []string{"id", "name", "is_member", "is_archived", "is_private", "is_general", "num_members"} {
		if _, ok := gen[k]; !ok {
			t.Errorf("channel object lacks %q: %v", k, gen)
		}
	}
	if gen["id"] != "C000000" || gen["name"] != "general" || gen["is_general"] != true || gen["is_member"] != true || gen["num_members"] != 200.0 {
		t.Errorf("#general = %v", gen)
	}
	for _, c := range chans {
		if c.(map[string]any)["is_private"] == true {
			t.Errorf("private channel listed without types: %v", c)
		}
	}
	r = mustOK(t, s, 3, "conversations.list", map[string]string{"types": "public_channel,private_channel", "exclude_archived": "true"})
	for _, c := range r.Body["channels"].([]any) {
		ch := c.(map[string]any)
		if ch["is_private"] == true && ch["is_member"] != true {
			t.Errorf("private channel of others listed: %v", ch)
		}
		if ch["is_archived"] == true {
			t.Errorf("archived channel listed: %v", ch)
		}
	}

	in, out := memberChannel(t, s, 3)
	// users.conversations lists exactly the caller's channels.
	r = mustOK(t, s, 3, "users.conversations", map[string]string{"types": "public_channel,private_channel", "limit": "1000"})
	mine := 0
	for _, ch := range s.ws.channels {
		if ch.everyone || ch.members.has(3) {
			mine++
		}
	}
	if got := r.Body["channels"].([]any); len(got) != mine || got[0].(map[string]any)["is_member"] != true {
		t.Errorf("users.conversations: %d channels, want %d", len(got), mine)
	}
	r = mustOK(t, s, 3, "conversations.info", map[string]string{"channel": in.id})
	if c := r.Body["channel"].(map[string]any); c["is_member"] != true || c["num_members"] != float64(in.n) {
		t.Errorf("conversations.info = %v", c)
	}
	r = mustOK(t, s, 3, "conversations.members", map[string]string{"channel": in.id, "limit": "1000"})
	if got := len(r.Body["members"].([]any)); got != in.n {
		t.Errorf("conversations.members: %d members, want %d", got, in.n)
	}

	// Joining makes a member; joining again warns.
	if r := call(t, s, Token(3), "chat.postMessage", map[string]string{"channel": out.id, "text": "hi"}); r.err() != "not_in_channel" {
		t.Errorf("post to a channel not joined: %v", r.Body)
	}
	r = mustOK(t, s, 3, "conversations.join", map[string]string{"channel": out.id})
	if c := r.Body["channel"].(map[string]any); c["is_member"] != true || c["num_members"] != float64(out.n) {
		t.Errorf("join = %v", r.Body)
	}
	r = mustOK(t, s, 3, "conversations.join", map[string]string{"channel": out.id})
	if r.str("warning") != "already_in_channel" {
		t.Errorf("second join = %v", r.Body)
	}
	mustOK(t, s, 3, "chat.postMessage", map[string]string{"channel": out.id, "text": "hi"})
	// Private and archived channels.
	priv := s.ws.channels[9]
	nonMember := priv.members.next(0) + 1
	for priv.members.has(nonMember) {
		nonMember++
	}
	if r := call(t, s, Token(nonMember), "conversations.history", map[string]string{"channel": priv.id}); r.err() != "channel_not_found" {
		t.Errorf("private history for a non-member: %v", r.Body)
	}
	if r := call(t, s, Token(nonMember), "conversations.join", map[string]string{"channel": priv.id}); r.err() != "channel_not_found" {
		t.Errorf("join private: %v", r.Body)
	}
}

func TestHistoryPaging(t *testing.T) {
	s := openTest(t, Config{HistoryPerChannel: 30, HistoryCap: 40})
	// Post 15 more: the ring keeps the newest 40.
	for i := 0; i < 15; i++ {
		mustOK(t, s, 4, "chat.postMessage", map[string]string{"channel": "C000000", "text": "m" + strconv.Itoa(i)})
	}
	var all []map[string]any
	cursor := ""
	for page := 0; page < 20; page++ {
		r := mustOK(t, s, 1, "conversations.history", map[string]string{"channel": "C000000", "limit": "7", "cursor": cursor})
		for _, m := range r.Body["messages"].([]any) {
			all = append(all, m.(map[string]any))
		}
		cursor = r.Body["response_metadata"].(map[string]any)["next_cursor"].(string)
		if (cursor != "") != (r.Body["has_more"] == true) {
			t.Fatalf("has_more and next_cursor disagree: %v", r.Body)
		}
		if cursor == "" {
			break
		}
	}
	if len(all) != 40 {
		t.Fatalf("paged %d messages, want 40 (the ring)", len(all))
	}
	if all[0]["text"] != "m14" || all[0]["user"] != "U000004" || all[0]["type"] != "message" {
		t.Errorf("newest first: %v", all[0])
	}
	prev := int64(1) << 62
	for _, m := range all {
		ts, ok := parseTS(m["ts"].(string))
		if !ok || ts >= prev {
			t.Fatalf("ts %v not strictly decreasing", m["ts"])
		}
		prev = ts
	}
	// latest/oldest bound the window.
	mid := all[10]["ts"].(string)
	r := mustOK(t, s, 1, "conversations.history", map[string]string{"channel": "C000000", "latest": mid, "inclusive": "true", "limit": "2"})
	if msgs := r.Body["messages"].([]any); msgs[0].(map[string]any)["ts"] != mid || r.Body["has_more"] != true {
		t.Errorf("latest inclusive: %v", r.Body)
	}
	r = mustOK(t, s, 1, "conversations.history", map[string]string{"channel": "C000000", "oldest": mid})
	if got := len(r.Body["messages"].([]any)); got != 10 {
		t.Errorf("oldest: %d messages, want 10", got)
	}
}

func TestPostAndReactions(t *testing.T) {
	s := openTest(t, Config{})
	r := mustOK(t, s, 2, "chat.postMessage", map[string]string{"channel": "C000001", "text": "hello pond"})
	ts := r.str("ts")
	if msg := r.Body["message"].(map[string]any); msg["text"] != "hello pond" || msg["user"] != "U000002" || msg["ts"] != ts {
		t.Errorf("postMessage = %v", r.Body)
	}
	// Timestamps are unique and increasing per channel, even in a burst.
	last := ts
	for i := 0; i < 20; i++ {
		r := mustOK(t, s, 2, "chat.postMessage", map[string]string{"channel": "C000001", "text": "x"})
		a, _ := parseTS(last)
		b, _ := parseTS(r.str("ts"))
		if b <= a {
			t.Fatalf("ts %s after %s", r.str("ts"), last)
		}
		last = r.str("ts")
	}
	args := map[string]string{"channel": "C000001", "timestamp": ts, "name": "tada"}
	mustOK(t, s, 3, "reactions.add", args)
	mustOK(t, s, 4, "reactions.add", args)
	if r := call(t, s, Token(3), "reactions.add", args); r.err() != "already_reacted" {
		t.Errorf("double reaction: %v", r.Body)
	}
	r = mustOK(t, s, 1, "conversations.history", map[string]string{"channel": "C000001", "latest": ts, "inclusive": "true", "limit": "1"})
	m := r.Body["messages"].([]any)[0].(map[string]any)
	rc := m["reactions"].([]any)[0].(map[string]any)
	if rc["name"] != "tada" || rc["count"] != 2.0 || len(rc["users"].([]any)) != 2 {
		t.Errorf("reactions = %v", m["reactions"])
	}
	mustOK(t, s, 3, "reactions.remove", args)
	if r := call(t, s, Token(3), "reactions.remove", args); r.err() != "no_reaction" {
		t.Errorf("remove twice: %v", r.Body)
	}
	if r := call(t, s, Token(3), "reactions.add", map[string]string{"channel": "C000001", "timestamp": "1.000001", "name": "tada"}); r.err() != "message_not_found" {
		t.Errorf("react to nothing: %v", r.Body)
	}
	mustOK(t, s, 3, "conversations.mark", map[string]string{"channel": "C000001", "ts": ts})
	r = mustOK(t, s, 3, "conversations.info", map[string]string{"channel": "C000001"})
	if c := r.Body["channel"].(map[string]any); c["last_read"] != ts {
		t.Errorf("last_read = %v, want %s", c["last_read"], ts)
	}
	mustOK(t, s, 3, "users.setPresence", map[string]string{"presence": "away"})
	if u := mustOK(t, s, 1, "users.info", map[string]string{"user": "U000003"}).Body["user"].(map[string]any); u["presence"] != "away" {
		t.Errorf("presence = %v", u["presence"])
	}
}

func TestRateLimit(t *testing.T) {
	s := openTest(t, Config{RateLimits: map[string]Rate{"conversations.history": {Limit: 3, Per: time.Minute}}})
	args := map[string]string{"channel": "C000000", "limit": "1"}
	for i := 0; i < 3; i++ {
		mustOK(t, s, 1, "conversations.history", args)
	}
	r := call(t, s, Token(1), "conversations.history", args)
	if r.Status != 429 || r.err() != "ratelimited" {
		t.Fatalf("4th call: %d %v", r.Status, r.Body)
	}
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 20 {
		t.Errorf("Retry-After = %q, want about 20 s", r.Header.Get("Retry-After"))
	}
	// Limits are per token: another user is unaffected.
	mustOK(t, s, 2, "conversations.history", args)
	if got := s.Stats().Requests["conversations.history"]["429"]; got != 1 {
		t.Errorf("stats 429 count = %d", got)
	}
	// A tier limit applies to each of its methods; DisableRateLimits wins.
	s2 := openTest(t, Config{RateLimits: map[string]Rate{Tier2: {Limit: 1, Per: time.Hour}}})
	mustOK(t, s2, 1, "users.list", nil)
	if r := call(t, s2, Token(1), "users.list", nil); r.Status != 429 {
		t.Errorf("tier limit: %d", r.Status)
	}
	s3 := openTest(t, Config{DisableRateLimits: true, RateLimits: map[string]Rate{Tier2: {Limit: 1, Per: time.Hour}}})
	for i := 0; i < 3; i++ {
		mustOK(t, s3, 1, "users.list", nil)
	}
}

func TestDefaultLimitsAreGenerous(t *testing.T) {
	// A koi behaving like a busy real user for a minute: boot, then reads,
	// posts, reactions and marks at human rates.
	s := openTest(t, Config{})
	mustOK(t, s, 5, "rtm.connect", nil)
	mustOK(t, s, 5, "conversations.list", nil)
	for i := 0; i < 30; i++ {
		mustOK(t, s, 5, "conversations.history", map[string]string{"channel": "C000000", "limit": "42"})
		r := mustOK(t, s, 5, "chat.postMessage", map[string]string{"channel": "C000000", "text": "hi"})
		mustOK(t, s, 5, "reactions.add", map[string]string{"channel": "C000000", "timestamp": r.str("ts"), "name": "eyes"})
		mustOK(t, s, 5, "conversations.mark", map[string]string{"channel": "C000000", "ts": r.str("ts")})
	}
}

func TestInject(t *testing.T) {
	s := openTest(t, Config{Inject: map[string]Fault{
		"conversations.history": {Latency: 50 * time.Millisecond},
		"users.info":            {Error: 1},
	}})
	start := time.Now()
	mustOK(t, s, 1, "conversations.history", map[string]string{"channel": "C000000"})
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Errorf("latency not injected: %s", el)
	}
	if r := call(t, s, Token(1), "users.info", map[string]string{"user": "U000001"}); r.Status != 500 || r.err() != "internal_error" {
		t.Errorf("error not injected: %d %v", r.Status, r.Body)
	}
	if s.Stats().Requests["users.info"]["500"] != 1 {
		t.Errorf("injected error not counted")
	}
}

func TestConfigValidate(t *testing.T) {
	if errs := (Config{}).Validate(); len(errs) != 0 {
		t.Errorf("zero Config invalid: %v", errs)
	}
	bad := Config{Users: -1, Channels: 1, Tokens: []string{"a", "a"}, SendQueue: -3,
		RateLimits: map[string]Rate{"nope": {1, time.Second}},
		Inject:     map[string]Fault{"auth.test": {Error: 2}}}
	errs := bad.Validate()
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	joined := strings.Join(all, "\n")
	for _, field := range []string{"Users", "Channels", "Tokens", "SendQueue", "RateLimits", "Inject"} {
		if !strings.Contains(joined, field+":") {
			t.Errorf("Validate did not name %s:\n%s", field, joined)
		}
	}
	if _, err := Open(context.Background(), bad); err == nil {
		t.Errorf("Open accepted a bad config")
	}
}

func TestParseSpecs(t *testing.T) {
	m, f, err := ParseInject("conversations.history=latency:200ms,error:0.05")
	if err != nil || m != "conversations.history" || f.Latency != 200*time.Millisecond || f.Error != 0.05 {
		t.Errorf("ParseInject = %q %+v %v", m, f, err)
	}
	for _, bad := range []string{"x", "m=", "m=latency", "m=error:2", "m=jitter:1s", "m=latency:-1s"} {
		if _, _, err := ParseInject(bad); err == nil {
			t.Errorf("ParseInject(%q) accepted", bad)
		}
	}
	k, r, err := ParseRateLimit("tier3=50/1m")
	if err != nil || k != "tier3" || r != (Rate{50, time.Minute}) {
		t.Errorf("ParseRateLimit = %q %v %v", k, r, err)
	}
	if _, r, _ := ParseRateLimit("chat.postMessage=off"); !r.IsZero() {
		t.Errorf("off is not zero")
	}
	for _, bad := range []string{"50", "x/1m", "5/xyz", "=5/s"} {
		if _, _, err := ParseRateLimit("m=" + bad); err == nil && bad != "=5/s" {
			t.Errorf("ParseRateLimit(%q) accepted", bad)
		}
	}
}

func TestOpenClose(t *testing.T) {
	s := openTest(t, Config{})
	// Port in use is an error from Open.
	if _, err := Open(context.Background(), Config{Addr: s.Addr(), Users: 5, Channels: 2}); err == nil {
		t.Errorf("second Open on %s succeeded", s.Addr())
	}
	for _, p := range []string{"/healthz", "/metrics", "/stats"} {
		resp, err := http.Get(s.URL() + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}
	var st map[string]any
	resp, _ := http.Get(s.URL() + "/stats")
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	for _, k := range []string{"websockets_open", "requests_total", "events_sent", "slow_consumer_drops", "disconnects", "requests"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/stats lacks %q", k)
		}
	}
	// Close is idempotent and concurrent-safe; a context cancel closes too.
	ctx, cancel := context.WithCancel(context.Background())
	s2, err := Open(ctx, Config{Users: 5, Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s2, 1)
	cancel()
	if err := c.closed(t); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("websocket closed with %v, want going away", err)
	}
	s2.Close()
	s2.Close()
}
