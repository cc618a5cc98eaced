package behaviors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// fastPieces build templates of the forms the fast way takes, and of forms
// close to them that it half knows (a number, a method-less field of the
// wrong type, a call it may give up on after evaluating part of it).
// Every random choice a function could make has one outcome here (one
// channel, one user, lists of one), so both ways must agree exactly.
var fastPieces = struct {
	operands, calls, conds []string
}{
	operands: []string{
		`.`, `.user`, `.channel`, `.a.b`, `.a`, `.n`, `.nothing`, `.nothing.deeper`, `.messages`, `.list`,
		`"C1"`, `"C9"`, `""`, `"U5"`, `true`, `false`, `3`, `nil`,
		`(get "channel")`, `(get "channel").ID`, `(get "channel").Name`, `(get "channel").IsMember`,
		`(get "msg").TS`, `(get "msg").Text`, `(get "u")`, `(get "m").x`, `(get "m").x.y`, `(get "none")`, `(get "none").ID`,
		`(randomChannel true)`, `(randomChannel false).ID`, `(randomChannel "yes")`, `(currentChannel)`, `(currentChannel).ID`,
		`(latestMessage "C1")`, `(latestMessage "C1").Text`, `(randomMessage .channel)`, `(latestMessage "C9").TS`,
		`(list .user)`, `(list . "x")`, `(list)`, `(extractStrings .messages "user")`, `(extractStrings .user "user")`,
		`(not .user)`, `(not (get "channel"))`, `(userID)`, `(token)`, `(randomUserID)`, `(stringArray .user)`,
		`(channel "C1").IsMember`, `(channel "C1").NumMembers`, `(channel .channel)`, `(pickString (list .user))`,
		`(set "x" "y")`, `(upper .user)`, `(get "channel").ID.More`, `(get "big")`, `(list (get "big"))`,
	},
	calls: []string{
		"addMessages", "addUserIDs", "addChannels", "addChannel", "setCurrentChannel", "set", "setKoi",
		"websocketURL", "halt", "get", "channel", "list", "not", "extractStrings", "pickString", "stringArray",
		"latestMessage", "randomChannel", "userID",
	},
	conds: []string{`(get "big")`, `.user`, `.nothing`, `(get "channel")`, `(not .user)`, `(get "channel").ID`, `.n`, `true`, `""`, `(latestMessage "C1")`, `(list)`},
}

var pointer = regexp.MustCompile(`0x[0-9a-f]+`)

func randomFastTemplate(r *rand.Rand) string {
	op := func() string { return fastPieces.operands[r.IntN(len(fastPieces.operands))] }
	action := func() string {
		if r.IntN(5) == 0 {
			return op()
		}
		s := fastPieces.calls[r.IntN(len(fastPieces.calls))]
		for range r.IntN(4) {
			s += " " + op()
		}
		return s
	}
	switch r.IntN(6) {
	case 0, 1:
		return fmt.Sprintf(`{{ if %s }}{{ %s }}{{ end }}`, fastPieces.conds[r.IntN(len(fastPieces.conds))], action())
	case 2:
		return fmt.Sprintf(`{{- if %s -}} {{ %s }} {{- end }}`, op(), action())
	default:
		return "{{ " + action() + " }}"
	}
}

// Random templates of the fast forms and their near misses give the same
// output, error, halt, store and variables both ways, on frames that have
// and lack what they read.
func TestFastActionsMatchTemplatesOnRandomForms(t *testing.T) {
	frames := []string{
		`{"type": "message", "channel": "C1", "ts": "4.000001", "user": "U4", "text": "hi", "n": 3, "a": {"b": "deep"}}`,
		`{"channel": {"id": "C2", "name": "new", "is_member": true}, "user": null, "a": {"b": 7}, "list": [1, "x", null]}`,
		`{"messages": [{"ts": "2.5", "user": "U2", "text": "b"}, {"user": 9}], "user": "", "a": "not an object"}`,
		`{"url": "ws://127.0.0.1:1/ws", "user": ["U1"], "channel": "C1"}`,
		`[1, 2, 3]`,
		`"just a string"`,
		``,
	}
	one := &Channel{ID: "C1", Name: "general", IsMember: true, NumMembers: 3}
	vars := map[string]any{"channel": one, "msg": &Message{TS: "1.5", User: "U1", Text: "x"}, "u": "U7",
		"big": strings.Repeat("b", MaxOutput+1), // past the output's bound
		"m":   map[string]any{"x": map[string]any{"y": "z"}}}
	type result struct {
		out, err string
		halted   bool
		store    map[string]any
		vars     map[string]any
	}
	run := func(t *testing.T, src string, data any, render, noFast bool) (result, int64, bool) {
		p := NewProgram()
		p.noFast = noFast
		tx, err := p.compile(src, "random:1")
		if err != nil {
			return result{}, 0, false // not a template text/template parses
		}
		st := NewSharedStore(Identity{Index: 3, UserID: "U3", Token: "xoxp-3"}, NewWorkspace(0))
		st.AddChannel(*one)
		st.AddMessages("C1", []Message{{TS: "0.5", User: "U0", Text: "old"}})
		st.AddUserIDs([]string{"U0"})
		env := &Env{Store: st, Vars: map[string]any{}}
		for k, v := range vars {
			env.Vars[k] = v
		}
		var r result
		if render {
			r.out, err = p.Render(context.Background(), env, tx, data)
		} else {
			err = p.Run(context.Background(), env, tx, data)
		}
		if err != nil {
			r.err = err.Error()
			var he *HaltError
			r.halted = errors.As(err, &he)
		}
		r.out = pointer.ReplaceAllString(r.out, "0xPTR") // a fresh record's address
		r.store, r.vars = knownView(st), env.Vars
		return r, p.fastRuns.Load(), true
	}
	r := rand.New(rand.NewPCG(14, 18))
	var compared, fast int
	for range 1500 {
		src := randomFastTemplate(r)
		frame := frames[r.IntN(len(frames))]
		var data any
		if frame != "" {
			data = decoded(t, frame)
		}
		render := r.IntN(2) == 0
		tmpl, _, ok := run(t, src, data, render, true)
		if !ok {
			continue
		}
		got, runs, _ := run(t, src, data, render, false)
		compared++
		fast += int(runs)
		if !reflect.DeepEqual(tmpl, got) {
			t.Errorf("%s on %s (render %v):\ntemplate %+v\nfast     %+v", src, strings.TrimSpace(frame), render, tmpl, got)
		}
	}
	t.Logf("%d templates compared, %d run the fast way", compared, fast)
	if fast < compared/10 {
		t.Errorf("only %d of %d random templates ran the fast way: the forms do not reach it", fast, compared)
	}
}
