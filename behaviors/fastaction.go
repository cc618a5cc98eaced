package behaviors

import (
	"errors"
	"text/template"
	"text/template/parse"
)

// A fast action is a template simple enough to evaluate without
// text/template: the common forms of on_event handlers, post_actions,
// pre_actions and arguments, such as
//
//	{{ addMessages .channel (list .) }}
//	{{ if .user }}{{ addUserIDs (list .user) }}{{ end }}
//	{{ addUserIDs (extractStrings .messages "user") }}
//	{{ set "channel" (randomChannel true) }}
//	{{ (get "channel").ID }}
//
// It calls the very functions the template would (those of an executor's
// binding, so budgets and stores are the same) with the same arguments,
// and the same result. Anything it does not know how to evaluate exactly
// as text/template does (a method, a number, an unknown field type, an
// error of any kind) makes it give up before the action's one effect, and
// the template runs instead: so errors, and their messages, are always the
// template's. A halt is the one error it returns itself: the template's
// run returns the function's *HaltError unwrapped, as it is.
//
// The forms: the whole template is one action (with no variable), or one
// `if` without else whose body is one such action. An action is one
// command: a call of a known function or, when rendering, one operand. An
// operand is `.`, a field chain of `.`, a string or boolean constant, a
// known function's call in parentheses, or a field chain of one.
type fastAction struct {
	cond *fastPipe // the if's condition, or nil
	act  *fastPipe
}

// fastPipe is one command: a function call, or one operand.
type fastPipe struct {
	fn    string // the function called, or "" for an operand
	args  []fastArg
	field []string // fields of the value, for a parenthesized pipe's chain
}

// fastArg is one operand.
type fastArg struct {
	kind  fastKind
	str   string    // a string constant
	b     bool      // a boolean constant
	field []string  // fields of dot, or of pipe
	pipe  *fastPipe // a parenthesized command
}

type fastKind uint8

const (
	fastDot fastKind = iota // . or .a.b
	fastString
	fastBool
	fastPipeArg // (cmd) or (cmd).a.b
)

// Functions a fast action may call: for each, whether it has an effect.
// Every one of these fails (when it does) before its effect, so giving up
// on its error and running the template instead does the effect once.
var fastFuncs = map[string]bool{
	"addMessages": true, "addUserIDs": true, "addChannels": true, "addChannel": true,
	"setCurrentChannel": true, "set": true, "setKoi": true, "websocketURL": true, "halt": true,
	"get": false, "channel": false, "currentChannel": false, "randomChannel": false,
	"extractStrings": false, "randomMessage": false, "latestMessage": false,
	"list": false, "not": false, "userID": false, "token": false, "pickString": false, "stringArray": false, "randomUserID": false,
}

// errNotFast is how evaluation gives up: the template runs instead.
var errNotFast = errors.New("not a fast action")

// compileFast returns the fast form of a parsed (and guarded) template, or
// nil.
func compileFast(root *parse.ListNode) *fastAction {
	if root == nil || len(root.Nodes) != 1 {
		return nil
	}
	switch n := root.Nodes[0].(type) {
	case *parse.ActionNode:
		act, ok := fastTop(n)
		if !ok {
			return nil
		}
		return &fastAction{act: act}
	case *parse.IfNode:
		if n.ElseList != nil || n.List == nil || len(n.List.Nodes) != 1 || len(n.Pipe.Decl) != 0 || len(n.Pipe.Cmds) != 1 {
			return nil
		}
		cond, ok := fastCommand(n.Pipe.Cmds[0])
		if !ok {
			return nil
		}
		a, isAction := n.List.Nodes[0].(*parse.ActionNode)
		if !isAction {
			return nil
		}
		act, ok := fastTop(a)
		if !ok {
			return nil
		}
		return &fastAction{cond: cond, act: act}
	}
	return nil
}

// fastTop compiles a printing action: one command then the print.
func fastTop(n *parse.ActionNode) (*fastPipe, bool) {
	p := n.Pipe
	if p == nil || len(p.Decl) != 0 || len(p.Cmds) != 2 || !isPrintCmd(p.Cmds[1]) {
		return nil, false
	}
	return fastCommand(p.Cmds[0])
}

func isPrintCmd(c *parse.CommandNode) bool {
	if len(c.Args) != 1 {
		return false
	}
	id, ok := c.Args[0].(*parse.IdentifierNode)
	return ok && id.Ident == printFunc
}

func fastCommand(c *parse.CommandNode) (*fastPipe, bool) {
	if len(c.Args) == 0 {
		return nil, false
	}
	if id, ok := c.Args[0].(*parse.IdentifierNode); ok {
		if _, known := fastFuncs[id.Ident]; !known {
			return nil, false
		}
		p := &fastPipe{fn: id.Ident}
		for _, a := range c.Args[1:] {
			fa, ok := fastOperand(a)
			if !ok {
				return nil, false
			}
			p.args = append(p.args, fa)
		}
		return p, true
	}
	if len(c.Args) != 1 {
		return nil, false
	}
	fa, ok := fastOperand(c.Args[0])
	if !ok {
		return nil, false
	}
	return &fastPipe{args: []fastArg{fa}}, true
}

func fastOperand(n parse.Node) (fastArg, bool) {
	switch n := n.(type) {
	case *parse.DotNode:
		return fastArg{kind: fastDot}, true
	case *parse.FieldNode:
		return fastArg{kind: fastDot, field: n.Ident}, true
	case *parse.StringNode:
		return fastArg{kind: fastString, str: n.Text}, true
	case *parse.BoolNode:
		return fastArg{kind: fastBool, b: n.True}, true
	case *parse.IdentifierNode: // a call without arguments
		if _, known := fastFuncs[n.Ident]; !known || fastFuncs[n.Ident] {
			return fastArg{}, false
		}
		return fastArg{kind: fastPipeArg, pipe: &fastPipe{fn: n.Ident}}, true
	case *parse.PipeNode:
		if len(n.Decl) != 0 || len(n.Cmds) != 1 {
			return fastArg{}, false
		}
		c, ok := fastCommand(n.Cmds[0])
		if !ok || c.fn == "" || fastFuncs[c.fn] {
			return fastArg{}, false
		}
		return fastArg{kind: fastPipeArg, pipe: c}, true
	case *parse.ChainNode:
		pn, ok := n.Node.(*parse.PipeNode)
		if !ok || len(n.Field) == 0 {
			return fastArg{}, false
		}
		a, ok := fastOperand(pn)
		if !ok {
			return fastArg{}, false
		}
		a.field = n.Field
		return a, true
	}
	return fastArg{}, false
}

// run evaluates the action, writing what it prints to x.out; a
// *HaltError is the action's halt (as the template's run returns it), any
// other error means: run the template instead. Every function that may
// fail after its effect (none of fastFuncs does) or print something other
// than a string would break that rule: the functions allowed are few.
func (f *fastAction) run(x *executor, data any) error {
	if f.cond != nil {
		v, err := f.cond.eval(x, data)
		if err != nil {
			return err
		}
		truth, ok := template.IsTrue(v)
		if !ok {
			return errNotFast
		}
		if !truth {
			return nil
		}
	}
	v, err := f.act.eval(x, data)
	if err != nil {
		return err
	}
	s, ok := v.(string)
	if !ok {
		return errNotFast // printing anything else: the template's way
	}
	if s != "" {
		_, err = x.out.Write([]byte(s))
	}
	return err
}

func (p *fastPipe) eval(x *executor, data any) (any, error) {
	if p.fn == "" {
		return p.args[0].eval(x, data)
	}
	var argv [3]any
	args := argv[:0]
	for i := range p.args {
		v, err := p.args[i].eval(x, data)
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	v, err := fastCall(x, p.fn, args)
	if err != nil {
		var he *HaltError
		if p.fn == "halt" && errors.As(err, &he) {
			return nil, he // what the template's run returns for it too
		}
		return nil, errNotFast
	}
	return v, nil
}

func (a *fastArg) eval(x *executor, data any) (any, error) {
	var v any
	switch a.kind {
	case fastString:
		return a.str, nil
	case fastBool:
		return a.b, nil
	case fastDot:
		v = data
	case fastPipeArg:
		var err error
		if v, err = a.pipe.eval(x, data); err != nil {
			return nil, err
		}
	}
	for _, name := range a.field {
		var ok bool
		if v, ok = fastField(v, name); !ok {
			return nil, errNotFast
		}
	}
	return v, nil
}

// fastField is text/template's field evaluation for the values koi
// templates meet: decoded JSON objects (a missing key is nil, as with
// missingkey=zero) and the store's channels and messages (which have no
// methods). Anything else gives up.
func fastField(v any, name string) (any, bool) {
	switch r := v.(type) {
	case map[string]any:
		return r[name], true
	case *Channel:
		if r == nil {
			return nil, false
		}
		return channelField(r, name)
	case Channel:
		return channelField(&r, name)
	case *Message:
		if r == nil {
			return nil, false
		}
		return messageField(r, name)
	case Message:
		return messageField(&r, name)
	}
	return nil, false
}

func channelField(c *Channel, name string) (any, bool) {
	switch name {
	case "ID":
		return c.ID, true
	case "Name":
		return c.Name, true
	case "IsMember":
		return c.IsMember, true
	case "IsArchived":
		return c.IsArchived, true
	case "IsPrivate":
		return c.IsPrivate, true
	case "IsGeneral":
		return c.IsGeneral, true
	case "NumMembers":
		return c.NumMembers, true
	}
	return nil, false
}

func messageField(m *Message, name string) (any, bool) {
	switch name {
	case "TS":
		return m.TS, true
	case "User":
		return m.User, true
	case "Text":
		return m.Text, true
	}
	return nil, false
}

// fastCall calls the executor's own function name with args, converting
// them as text/template would for the signatures koi functions have;
// anything else gives up.
func fastCall(x *executor, name string, args []any) (any, error) {
	switch name {
	case "list": // sprig's list, with the budget's rule for it (argsRule(16))
		if err := x.b.charge(name, satAdd(64, satMul(int64(len(args)), 16))); err != nil {
			return nil, err
		}
		return append([]any(nil), args...), nil
	case "not": // text/template's builtin
		if len(args) != 1 {
			return nil, errNotFast
		}
		truth, _ := template.IsTrue(args[0])
		return !truth, nil
	}
	switch fn := x.fns[name].(type) {
	case func(any) (string, error):
		if len(args) == 1 {
			return fn(args[0])
		}
	case func(any, any) (string, error):
		if len(args) == 2 {
			return fn(args[0], args[1])
		}
	case func(string, any) (string, error):
		if s, ok := fastStrArg(args, 0); ok && len(args) == 2 {
			return fn(s, args[1])
		}
	case func(string) (string, error):
		if s, ok := fastStrArg(args, 0); ok && len(args) == 1 {
			return fn(s)
		}
	case func(...any) (string, error):
		return fn(append([]any(nil), args...)...) // fn may keep its slice: args stays the caller's (on its stack)
	case func(string) (any, error):
		if s, ok := fastStrArg(args, 0); ok && len(args) == 1 {
			return fn(s)
		}
	case func(bool) (any, error):
		if len(args) == 1 {
			if b, ok := args[0].(bool); ok {
				return fn(b)
			}
		}
	case func() (any, error):
		if len(args) == 0 {
			return fn()
		}
	case func() (string, error):
		if len(args) == 0 {
			return fn()
		}
	case func(any) (any, error):
		if len(args) == 1 {
			return fn(args[0])
		}
	case func(...string) ([]string, error):
		strs := make([]string, len(args))
		for i := range args {
			s, ok := args[i].(string)
			if !ok {
				return nil, errNotFast
			}
			strs[i] = s
		}
		return fn(strs...)
	case func(any, string) ([]string, error):
		if s, ok := fastStrArg(args, 1); ok && len(args) == 2 {
			return fn(args[0], s)
		}
	}
	return nil, errNotFast
}

func fastStrArg(args []any, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	s, ok := args[i].(string)
	return s, ok
}
