package behaviors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// decoded is a reply or frame as a koi decodes it (numbers as json.Number).
func decoded(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

// knownView is everything a template can read of a store after the cases
// below (channels C1–C3).
func knownView(s *Store) map[string]any {
	v := map[string]any{"channels": s.Channels(), "users": s.UserIDs(), "current": s.Current(), "koi": s.Get("k")}
	for _, id := range []string{"C1", "C2", "C3"} {
		v["msgs:"+id] = s.Messages(id)
	}
	v["ws"] = s.Websocket().URL
	return v
}

// The fast way and text/template give the same result on the same input:
// the same output, the same error (the template's own, as the fast way
// gives up on any), the same store and variables afterwards.
func TestFastActionsMatchTemplates(t *testing.T) {
	const history = `{"ok": true, "messages": [{"ts": "2.000001", "user": "U2", "text": "b"},
		{"ts": "1.000001", "user": "U1", "text": "a"}, {"ts": "3.5", "text": "no user"}, {"user": "U9", "text": "no ts"}]}`
	const frame = `{"type": "message", "channel": "C1", "ts": "4.000001", "user": "U4", "text": "hi", "n": 3}`
	one := &Channel{ID: "C1", Name: "general", IsMember: true, NumMembers: 3}
	cases := []struct {
		name, src string
		data      string         // JSON, or "" for nil
		vars      map[string]any // the execution's variables before
		render    bool           // Render (else Run)
		fast      bool           // the fast way must take it
	}{
		// The demo's on_event handlers, on a message frame.
		{"frame messages", `{{ addMessages .channel (list .) }}`, frame, nil, false, true},
		{"frame user", `{{ if .user }}{{ addUserIDs (list .user) }}{{ end }}`, frame, nil, false, true},
		{"frame without user", `{{ if .user }}{{ addUserIDs (list .user) }}{{ end }}`, `{"type": "message", "channel": "C1"}`, nil, false, true},
		{"frame null user", `{{ if .user }}{{ addUserIDs (list .user) }}{{ end }}`, `{"user": null}`, nil, false, true},
		{"frame number user", `{{ if .user }}{{ addUserIDs (list .user) }}{{ end }}`, `{"user": 12}`, nil, false, false},
		{"frame without channel", `{{ addMessages .channel (list .) }}`, `{"type": "message", "ts": "1.1"}`, nil, false, false},
		{"frame not an object", `{{ addMessages .channel (list .) }}`, `[1, 2]`, nil, false, false},
		{"no data", `{{ addMessages .channel (list .) }}`, "", nil, false, false},
		// The demo's post_actions.
		{"history messages", `{{ addMessages (get "channel").ID .messages }}`, history, map[string]any{"channel": one}, false, true},
		{"history channel value", `{{ addMessages (get "channel").ID .messages }}`, history, map[string]any{"channel": *one}, false, true},
		{"history users", `{{ addUserIDs (extractStrings .messages "user") }}`, history, nil, false, true},
		{"history without channel", `{{ addMessages (get "channel").ID .messages }}`, history, nil, false, false},
		{"messages not a list", `{{ addMessages "C1" .messages }}`, `{"messages": "nope"}`, nil, false, false},
		{"list", `{{ addChannels .channels }}`, `{"channels": [{"id": "C2", "name": "random", "is_member": true, "num_members": 7}, {"name": "no id"}, {"id": "C3", "is_archived": true}]}`, nil, false, true},
		{"list not a list", `{{ addChannels .channels }}`, `{"channels": {"id": "C2"}}`, nil, false, false},
		{"websocket url", `{{ websocketURL .url }}`, `{"url": "ws://127.0.0.1:1/ws"}`, nil, false, true},
		{"websocket bad url", `{{ websocketURL .url }}`, `{"url": "http://x"}`, nil, false, false},
		{"websocket url not a string", `{{ websocketURL .url }}`, `{"url": 5}`, nil, false, false},
		// Pre-actions.
		{"set random channel", `{{ set "channel" (randomChannel true) }}`, "", nil, false, true},
		{"halt without channel", `{{ if (not (get "channel")) }}{{ halt "no random channel found" }}{{ end }}`, "", nil, false, true},
		{"halt with values", `{{ halt "no" .n .user }}`, frame, nil, false, true},
		{"halt rendering", `{{ halt "stop" }}`, "", nil, true, true},
		{"no halt with channel", `{{ if (not (get "channel")) }}{{ halt "no random channel found" }}{{ end }}`, "", map[string]any{"channel": one}, false, true},
		{"set current", `{{ setCurrentChannel (get "channel") }}`, "", map[string]any{"channel": one}, false, true},
		{"set current nil", `{{ setCurrentChannel (get "channel") }}`, "", nil, false, false},
		{"set current from reply", `{{ setCurrentChannel .channel }}`, `{"channel": {"id": "C3", "name": "new"}}`, nil, false, true},
		{"set koi", `{{ setKoi "k" .n }}`, frame, nil, false, true},
		{"set current channel var", `{{ set "ch" (currentChannel) }}`, "", nil, false, true},
		{"set latest", `{{ set "msg" (latestMessage "C1") }}`, "", nil, false, true},
		{"set random user of none", `{{ set "u" (randomUserID) }}`, "", nil, false, true},
		// Arguments.
		{"channel id", `{{ (get "channel").ID }}`, "", map[string]any{"channel": one}, true, true},
		{"message ts", `{{ (get "msg").TS }}`, "", map[string]any{"msg": &Message{TS: "1.5", User: "U1"}}, true, true},
		{"nil channel id", `{{ (get "channel").ID }}`, "", nil, true, false},
		{"bool field", `{{ (get "channel").IsMember }}`, "", map[string]any{"channel": one}, true, false},
		{"unknown field", `{{ (get "channel").Nope }}`, "", map[string]any{"channel": one}, true, false},
		{"string var", `{{ get "u" }}`, "", map[string]any{"u": "U7"}, true, true},
		{"missing var", `{{ get "u" }}`, "", nil, true, false},
		{"nested field", `{{ .a.b }}`, `{"a": {"b": "deep"}}`, nil, true, true},
		{"missing nested field", `{{ .a.b }}`, `{"a": {}}`, nil, true, false},
		{"field of nothing", `{{ .a.b }}`, `{}`, nil, true, false},
		{"number field", `{{ .n }}`, frame, nil, true, false},
		{"user id", `{{ userID }}`, "", nil, true, true},
		{"pick one string", `{{ pickString (stringArray "only") }}`, "", nil, true, true},
		{"pick from none", `{{ pickString (stringArray) }}`, "", nil, true, true},
		{"pick a field", `{{ pickString (stringArray .user) }}`, frame, nil, true, true},
		{"pick a number field", `{{ pickString (stringArray .n) }}`, frame, nil, true, false},
		// Not fast forms: text around, numbers, other functions.
		{"text around", `x{{ addUserIDs (list .user) }}`, frame, nil, false, false},
		{"number arg", `{{ addUserIDs (list .user 3) }}`, frame, nil, false, false},
		{"other function", `{{ addUserIDs (list (upper .user)) }}`, frame, nil, false, false},
		{"else", `{{ if .user }}{{ addUserIDs (list .user) }}{{ else }}{{ halt "x" }}{{ end }}`, frame, nil, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var data any
			if tc.data != "" {
				data = decoded(t, tc.data)
			}
			type result struct {
				out, err string
				halted   bool
				store    map[string]any
				vars     map[string]any
			}
			do := func(noFast bool) (result, int64) {
				p := NewProgram()
				p.noFast = noFast
				tx, err := p.compile(tc.src, "test:1")
				if err != nil {
					t.Fatalf("compile %s: %v", tc.src, err)
				}
				st := NewStore(Identity{Index: 3, UserID: "U3", Token: "xoxp-3"})
				st.AddChannel(*one)
				st.AddMessages("C1", []Message{{TS: "0.5", User: "U0", Text: "old"}})
				env := &Env{Store: st}
				for k, v := range tc.vars {
					if env.Vars == nil {
						env.Vars = map[string]any{}
					}
					env.Vars[k] = v
				}
				var r result
				if tc.render {
					r.out, err = p.Render(context.Background(), env, tx, data)
				} else {
					err = p.Run(context.Background(), env, tx, data)
				}
				if err != nil {
					r.err = err.Error()
					var he *HaltError
					r.halted = errors.As(err, &he) && errors.Is(err, ErrHalt)
				}
				r.store, r.vars = knownView(st), env.Vars
				return r, p.fastRuns.Load()
			}
			tmpl, _ := do(true)
			fast, fastRuns := do(false)
			if !reflect.DeepEqual(tmpl, fast) {
				t.Errorf("%s on %s:\ntemplate %+v\nfast     %+v", tc.src, tc.data, tmpl, fast)
			}
			if tc.fast != (fastRuns == 1) {
				t.Errorf("%s on %s: %d fast runs, want fast %v (result %+v)", tc.src, tc.data, fastRuns, tc.fast, fast)
			}
		})
	}
}

// Every action of the demo's on_event handlers, pre_actions and
// post_actions, and every argument, has a fast form, but for the few that
// need what it does not do (and, numbers, text around an action).
func TestDemoActionsAreFast(t *testing.T) {
	set, diags := Load("../examples/slack/frequencies.json", "../examples/slack/sequences.json")
	if set == nil {
		t.Fatal(diags)
	}
	templated := map[string]bool{ // the demo's templates that stay text/template's
		`{{ if not (and (get "ch") (get "ch").IsMember) }}{{ halt "no current channel to type in" }}{{ end }}`:         true,
		`{{ pickString (stringArray "on it" "lgtm" "shipping today" "can you take a look?") }} ({{ randAlphaNum 6 }})`: true,
		`{{ randInt 1 1000000 }}`: true,
	}
	check := func(where string, ts ...Text) {
		for _, tx := range ts {
			if !tx.IsConst() && (set.Prog.fast[tx.id] == nil) != templated[tx.Src] {
				t.Errorf("%s: %s: fast form %v, want %v", where, tx.Src, set.Prog.fast[tx.id] != nil, !templated[tx.Src])
			}
		}
	}
	for typ, h := range set.OnEvent {
		check(fmt.Sprintf("on_event %s", typ), h.Actions...)
	}
	seqs := map[string]*Sequence{"boot": set.Boot, "on_disconnect": set.OnDisconnect}
	for _, b := range set.Behaviors {
		seqs[b.Key] = b.Sequence
	}
	for name, seq := range seqs {
		for i, st := range seq.Steps {
			where := fmt.Sprintf("%s step %d", name, i+1)
			check(where, st.Pre...)
			check(where, st.Post...)
			if r := st.Request; r != nil {
				for _, a := range r.Args {
					check(where+" arg "+a.Name, a.Value)
				}
			}
		}
	}
}

// BenchmarkEventHandler runs the demo's on_event "message" handlers on a
// message frame, the fast way and through text/template.
func BenchmarkEventHandler(b *testing.B) {
	frame := map[string]any{"type": "message", "channel": "C1", "ts": "4.000001", "user": "U4", "text": "hi"}
	for _, mode := range []string{"fast", "template"} {
		b.Run(mode, func(b *testing.B) {
			p := NewProgram()
			p.noFast = mode == "template"
			var ts []Text
			for _, src := range []string{`{{ addMessages .channel (list .) }}`, `{{ if .user }}{{ addUserIDs (list .user) }}{{ end }}`} {
				tx, err := p.compile(src, "bench")
				if err != nil {
					b.Fatal(err)
				}
				ts = append(ts, tx)
			}
			env := &Env{Store: NewSharedStore(Identity{}, NewWorkspace(0))}
			b.ReportAllocs()
			for b.Loop() {
				for _, tx := range ts {
					if err := p.Run(context.Background(), env, tx, frame); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
