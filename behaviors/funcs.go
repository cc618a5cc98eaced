package behaviors

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
)

// RemovedSprig lists the sprig functions that behavior templates cannot
// call, each with the reason. A load tester's templates run thousands of
// times a second on machines that hold credentials: nothing may read the
// environment, the file system or the network, and nothing may take
// unbounded CPU.
var RemovedSprig = map[string]string{
	"env":                      "reads the process environment (credentials live there)",
	"expandenv":                "reads the process environment (credentials live there)",
	"getHostByName":            "does a DNS lookup: network access from a template",
	"genPrivateKey":            "generates RSA/ECDSA keys: seconds of CPU per call",
	"genCA":                    "generates a certificate authority: seconds of CPU per call",
	"genCAWithKey":             "generates a certificate authority: seconds of CPU per call",
	"genSelfSignedCert":        "generates keys and certificates: seconds of CPU per call",
	"genSelfSignedCertWithKey": "generates certificates: unbounded CPU per call",
	"genSignedCert":            "generates keys and certificates: seconds of CPU per call",
	"genSignedCertWithKey":     "generates certificates: unbounded CPU per call",
	"buildCustomCert":          "certificate handling has no place in a load behavior",
	"derivePassword":           "scrypt-based derivation: deliberately slow",
	"bcrypt":                   "deliberately slow hash",
	"htpasswd":                 "bcrypt underneath: deliberately slow",
}

// ShadowedSprig lists sprig functions whose names the koi functions take,
// and the names under which sprig's versions remain available.
var ShadowedSprig = map[string]string{
	"set": "dictSet",
	"get": "dictGet",
}

var sprigFuncs = sync.OnceValue(func() template.FuncMap {
	m := sprig.TxtFuncMap()
	for name := range RemovedSprig {
		delete(m, name)
	}
	for name, alias := range ShadowedSprig {
		m[alias] = m[name]
		delete(m, name)
	}
	for name := range m {
		if _, ok := budgetedSprig[name]; !ok && !slices.Contains(smallSprig, name) {
			delete(m, name) // not reviewed for the byte budget
		}
	}
	return m
})

// checkSize refuses sizes that would allocate more than MaxListLen items.
// For seq/until/untilStep the size is the length of the range, not an
// argument: seq 1 1000000 has small arguments but a large result.
func checkSize(name string, ints []int64) error {
	tooBig := func(n int64) error {
		return fmt.Errorf("%s: size %d is over the %d limit: %w", name, n, MaxListLen, ErrLimit)
	}
	switch name {
	case "untilStep":
		if len(ints) == 3 && ints[2] != 0 {
			if n := (ints[1] - ints[0]) / ints[2]; n > MaxListLen {
				return tooBig(n)
			}
		}
		return nil
	case "seq":
		var lo, hi int64
		switch len(ints) {
		case 1:
			lo, hi = 1, ints[0]
		case 2, 3:
			lo, hi = ints[0], ints[len(ints)-1]
		}
		n := hi - lo
		if n < 0 {
			n = -n
		}
		if n > MaxListLen {
			return tooBig(n)
		}
		return nil
	}
	for _, n := range ints {
		if n > MaxListLen || n < -MaxListLen {
			return tooBig(n)
		}
	}
	return nil
}

func inTypes(ft reflect.Type) []reflect.Type {
	out := make([]reflect.Type, ft.NumIn())
	for i := range out {
		out[i] = ft.In(i)
	}
	return out
}

func sliceValues(v reflect.Value) []reflect.Value {
	out := make([]reflect.Value, v.Len())
	for i := range out {
		out[i] = v.Index(i)
	}
	return out
}

func asInt(v reflect.Value) (int64, bool) {
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return int64(v.Float()), true
	case reflect.String:
		if n, err := strconv.ParseInt(v.String(), 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}

// FuncDoc documents one koi template function for FUNCTIONS.md and --help.
type FuncDoc struct {
	Name, Signature, Doc string
}

// KoiFuncs documents the koi functions, in reference order. A test checks
// that it lists exactly the functions the templates get.
var KoiFuncs = append([]FuncDoc{
	{"set", "set KEY VALUE", "Stores VALUE under KEY for the rest of this sequence (each run of a sequence has its own variables, so concurrent sequences of one koi never mix them); prints nothing. Setting nil removes KEY."},
	{"get", "get KEY", "Returns, in this order, the sequence variable KEY, the launch parameter KEY (formations), the koi variable KEY (setKoi), or nil."},
	{"setKoi", "setKoi KEY VALUE", "Stores VALUE under KEY for the koi's whole life (e.g. in boot: what every later sequence needs); prints nothing."},
	{"param", "param NAME", "Returns the launch parameter NAME, or an error naming it when the launch did not give it. A formation declares its parameters in `\"params\": [{\"name\": \"channel_id\", \"required\": true, \"doc\": \"…\"}, {\"name\": \"emoji\", \"default\": \"fish\"}]`: the keeper refuses a launch without a required one or with an undeclared one, and fills in defaults, so `param` never fails for a declared parameter."},
	{"halt", "halt REASON…", "Stops the sequence on purpose. Counted as halted, not as an error."},
	{"chance", "chance P", "True with probability P (0–1): branch a step for a share of executions."},
	{"koiIndex", "koiIndex", "The koi's index in its run (0-based)."},
	{"userID", "userID", "The user id this koi acts as (may be empty until boot fills it)."},
	{"token", "token", "The koi's API token."},
	{"randomChannel", "randomChannel ONLY_MEMBER", "A random known, non-archived channel (a Channel with .ID .Name .IsMember .IsArchived .IsPrivate .IsGeneral .NumMembers); with true only channels the koi is a member of. nil when there is none."},
	{"setCurrentChannel", "setCurrentChannel CHANNEL", "Makes CHANNEL (a Channel, a channel object from an API reply, or an id) the channel the user has open; prints nothing."},
	{"currentChannel", "currentChannel", "The current channel, or nil."},
	{"channel", "channel ID", "The known channel with that id, or nil."},
	{"addChannels", "addChannels LIST", "Remembers channels from a list of channel objects (e.g. conversations.list's .channels)."},
	{"addChannel", "addChannel CHANNEL", "Remembers one channel (object, Channel or id)."},
	{"addMessages", "addMessages CHANNEL LIST", "Remembers messages (objects with ts, user, text) seen in CHANNEL (id or Channel); the newest are kept."},
	{"messages", "messages CHANNEL", "The remembered messages of CHANNEL, oldest first (each with .TS .User .Text)."},
	{"randomMessage", "randomMessage CHANNEL", "A random remembered message of CHANNEL, or nil."},
	{"latestMessage", "latestMessage CHANNEL", "The newest remembered message of CHANNEL, or nil."},
	{"extractStrings", "extractStrings LIST KEY", "The string values of KEY in each object of LIST (objects without KEY are skipped)."},
	{"addUserIDs", "addUserIDs IDS", "Remembers user ids (a list of strings)."},
	{"userIDs", "userIDs", "The remembered user ids."},
	{"randomUserID", "randomUserID", "A random remembered user id, or \"\"."},
	{"pickString", "pickString LIST", "A uniformly random element of a list of strings, or \"\" when it is empty."},
	{"pickOne", "pickOne LIST", "A uniformly random element of any list, or nil when it is empty."},
	{"stringArray", "stringArray S…", "A list of the given strings."},
	{"slackTS", "slackTS", "The current time as a Slack-style timestamp (\"seconds.micros\")."},
	{"websocketURL", "websocketURL URL", "Sets the URL the koi's websocket connects to (typically in boot, from rtm.connect's .url)."},
	{"websocketHeader", "websocketHeader NAME VALUE", "Adds a header to the websocket handshake."},
	{"websocketSubprotocols", "websocketSubprotocols P…", "Sets the subprotocols offered in the websocket handshake."},
}, protocolFuncDocs...)

var errNoStore = errors.New("no koi store in this context")

// funcMap returns the template functions bound to b. With b == nil the
// functions exist (for parsing) but fail when called.
func funcMap(b *binding) template.FuncMap {
	if b == nil {
		if m := parseFuncMap.Load(); m != nil {
			return *m
		}
	}
	m := make(template.FuncMap, len(sprigFuncs())+len(KoiFuncs)+1)
	for k, v := range sprigFuncs() {
		if rule, ok := budgetedSprig[k]; ok && b != nil {
			v = budgetFunc(b, k, v, rule)
		}
		m[k] = v
	}
	for k, v := range budgetedBuiltins(b) {
		m[k] = v
	}
	st := func() (*Store, error) {
		if b == nil {
			return nil, errNoStore
		}
		return b.store()
	}
	m[tickFunc] = func() (string, error) {
		if b == nil {
			return "", nil
		}
		return "", b.tick()
	}
	m["set"] = func(key string, v any) (string, error) {
		if b == nil || b.env == nil {
			return "", errNoStore
		}
		e := b.env
		if v == nil {
			delete(e.Vars, key)
			e.varBytes.del(key)
			return "", nil
		}
		if e.Vars == nil {
			e.Vars = make(map[string]any, 4)
		}
		if _, ok := e.Vars[key]; !ok && len(e.Vars) >= MaxVars {
			return "", fmt.Errorf("set %s: the sequence already holds %d variables", quote(key), MaxVars)
		}
		if err := e.varBytes.put(key, shapeOf(v).printBound()); err != nil {
			return "", err
		}
		e.Vars[key] = v
		return "", nil
	}
	m["setKoi"] = func(key string, v any) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		return "", s.Set(key, v)
	}
	m["get"] = func(key string) (any, error) {
		if b != nil && b.env != nil {
			if v, ok := b.env.Vars[key]; ok {
				return v, nil
			}
			if v, ok := b.env.Params[key]; ok {
				return v, nil
			}
		}
		s, err := st()
		if err != nil {
			return nil, err
		}
		return s.Get(key), nil
	}
	m["param"] = func(name string) (string, error) {
		if b != nil && b.env != nil {
			if v, ok := b.env.Params[name]; ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("no launch parameter %q", name)
	}
	m["halt"] = func(reason ...any) (string, error) {
		var n int64
		for _, r := range reason {
			n = satAdd(n, printArg(reflect.ValueOf(r)))
		}
		if err := b.charge("halt", n); err != nil {
			return "", err
		}
		return "", &HaltError{Reason: clipTo(strings.TrimSpace(fmt.Sprintln(reason...)), MaxQuote)}
	}
	m["chance"] = func(p any) (bool, error) {
		f, ok := num(p)
		if !ok {
			return false, fmt.Errorf("chance: %v is not a number", p)
		}
		return rand.Float64() < f, nil
	}
	m["koiIndex"] = func() (int, error) {
		s, err := st()
		if err != nil {
			return 0, err
		}
		return s.Identity().Index, nil
	}
	m["userID"] = func() (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		return s.Identity().UserID, nil
	}
	m["token"] = func() (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		return s.Identity().Token, nil
	}
	m["randomChannel"] = func(onlyMember bool) (any, error) {
		s, err := st()
		if err != nil {
			return nil, err
		}
		if c := s.RandomChannel(onlyMember); c != nil {
			return c, nil
		}
		return nil, nil
	}
	m["setCurrentChannel"] = func(v any) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		c, err := channelFrom(v)
		if err != nil {
			return "", fmt.Errorf("setCurrentChannel: %w", err)
		}
		if s.Channel(c.ID) == nil && c.Name != "" {
			s.AddChannel(c)
		}
		s.SetCurrent(c.ID)
		return "", nil
	}
	m["currentChannel"] = func() (any, error) {
		s, err := st()
		if err != nil {
			return nil, err
		}
		if c := s.Current(); c != nil {
			return c, nil
		}
		return nil, nil
	}
	m["channel"] = func(id string) (any, error) {
		s, err := st()
		if err != nil {
			return nil, err
		}
		if c := s.Channel(id); c != nil {
			return c, nil
		}
		return nil, nil
	}
	m["addChannels"] = func(list any) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		items, err := listOf(list)
		if err != nil {
			return "", fmt.Errorf("addChannels: %w", err)
		}
		for _, it := range items {
			if c, err := channelFrom(it); err == nil {
				s.AddChannel(c)
			}
		}
		return "", nil
	}
	m["addChannel"] = func(v any) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		c, err := channelFrom(v)
		if err != nil {
			return "", fmt.Errorf("addChannel: %w", err)
		}
		s.AddChannel(c)
		return "", nil
	}
	m["addMessages"] = func(ch any, list any) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		c, err := channelFrom(ch)
		if err != nil {
			return "", fmt.Errorf("addMessages: %w", err)
		}
		items, err := listOf(list)
		if err != nil {
			return "", fmt.Errorf("addMessages: %w", err)
		}
		msgs := make([]Message, 0, len(items))
		for _, it := range items {
			if m, ok := messageFrom(it); ok {
				msgs = append(msgs, m)
			}
		}
		s.AddMessages(c.ID, msgs)
		return "", nil
	}
	msgFn := func(name string, f func(*Store, string) *Message) func(any) (any, error) {
		return func(ch any) (any, error) {
			s, err := st()
			if err != nil {
				return nil, err
			}
			c, err := channelFrom(ch)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if m := f(s, c.ID); m != nil {
				return m, nil
			}
			return nil, nil
		}
	}
	m["randomMessage"] = msgFn("randomMessage", (*Store).RandomMessage)
	m["latestMessage"] = msgFn("latestMessage", (*Store).LatestMessage)
	m["messages"] = func(ch any) ([]Message, error) {
		s, err := st()
		if err != nil {
			return nil, err
		}
		c, err := channelFrom(ch)
		if err != nil {
			return nil, fmt.Errorf("messages: %w", err)
		}
		return s.Messages(c.ID), nil
	}
	m["extractStrings"] = func(list any, key string) ([]string, error) {
		if err := b.charge("extractStrings", satMul(lenArg(reflect.ValueOf(list)), 16)); err != nil {
			return nil, err
		}
		items, err := listOf(list)
		if err != nil {
			return nil, fmt.Errorf("extractStrings: %w", err)
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			if obj, ok := it.(map[string]any); ok {
				if v, ok := obj[key].(string); ok {
					out = append(out, v)
				}
			}
		}
		return out, nil
	}
	m["addUserIDs"] = func(ids any) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		strs, err := stringsOf(ids)
		if err != nil {
			return "", fmt.Errorf("addUserIDs: %w", err)
		}
		s.AddUserIDs(strs)
		return "", nil
	}
	m["userIDs"] = func() ([]string, error) {
		s, err := st()
		if err != nil {
			return nil, err
		}
		return s.UserIDs(), nil
	}
	m["randomUserID"] = func() (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		return s.RandomUserID(), nil
	}
	m["pickString"] = func(list any) (string, error) {
		strs, err := stringsOf(list)
		if err != nil {
			return "", fmt.Errorf("pickString: %w", err)
		}
		if len(strs) == 0 {
			return "", nil
		}
		return strs[rand.IntN(len(strs))], nil
	}
	m["pickOne"] = func(list any) (any, error) {
		items, err := listOf(list)
		if err != nil {
			return nil, fmt.Errorf("pickOne: %w", err)
		}
		if len(items) == 0 {
			return nil, nil
		}
		return items[rand.IntN(len(items))], nil
	}
	m["stringArray"] = func(s ...string) ([]string, error) {
		return s, b.charge("stringArray", int64(16*len(s)))
	}
	m["slackTS"] = func() string {
		now := time.Now()
		return fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
	}
	m["websocketURL"] = func(u string) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "ws" && p.Scheme != "wss") || p.Host == "" {
			return "", fmt.Errorf("websocketURL: %q is not a ws:// or wss:// URL with a host", clip(u))
		}
		s.updateWebsocket(func(ws *WebsocketSpec) { ws.URL = u })
		return "", nil
	}
	m["websocketHeader"] = func(name, value string) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		s.updateWebsocket(func(ws *WebsocketSpec) {
			if ws.Header == nil {
				ws.Header = http.Header{}
			}
			ws.Header.Add(name, value)
		})
		return "", nil
	}
	m["websocketSubprotocols"] = func(p ...string) (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		s.updateWebsocket(func(ws *WebsocketSpec) { ws.Subprotocols = append([]string(nil), p...) })
		return "", nil
	}
	addProtocolFuncs(m, b)
	if b == nil {
		parseFuncMap.CompareAndSwap(nil, &m)
	}
	return m
}

// parseFuncMap caches the unbound function map used for parsing.
var parseFuncMap atomic.Pointer[template.FuncMap]

// FuncNames returns every function a template can call, sorted.
func FuncNames() []string {
	var out []string
	for k := range funcMap(nil) {
		if k != tickFunc {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// listOf accepts any slice (or nil) as a list.
func listOf(v any) ([]any, error) {
	switch l := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return l, nil
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = rv.Index(i).Interface()
		}
		return out, nil
	}
	return nil, fmt.Errorf("%T is not a list", v)
}

// stringsOf accepts a list whose elements are strings.
func stringsOf(v any) ([]string, error) {
	if s, ok := v.([]string); ok {
		return s, nil
	}
	items, err := listOf(v)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, fmt.Errorf("element %d is %T, not a string", i, it)
		}
		out = append(out, s)
	}
	return out, nil
}
