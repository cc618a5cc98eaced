package behaviors

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"text/template/parse"
	"time"
)

// Execution limits for one template (one action, argument, URL, header or
// body). A template that breaks one fails with ErrLimit; the step counts as
// an error and the koi carries on.
const (
	// MaxOutput is the most text one template may produce.
	MaxOutput = 64 << 10
	// MaxDuration is the longest a template's loops may run, in wall time,
	// checked every 64 range iterations. It is a backstop: the iteration,
	// output and size limits stop runaway templates deterministically, and
	// it is generous because wall time includes time a koi spends
	// descheduled on a saturated machine (a template without loops is
	// never failed for time). A stop (the context the template runs
	// with ending) ends it sooner: see Program.Run.
	MaxDuration = 5 * time.Second
	// MaxIterations is the most `range` iterations one template may run.
	MaxIterations = 100_000
	// MaxListLen bounds the size argument of list- and string-generating
	// functions (until, untilStep, seq, repeat, randAlpha, …).
	MaxListLen = 10_000
)

// ErrLimit is returned when a template exceeds an execution limit.
var ErrLimit = errors.New("template limit exceeded")

// ErrHalt is returned (wrapped in a *HaltError) when a template calls halt.
var ErrHalt = errors.New("halted")

// HaltError is a sequence stopping itself on purpose: `{{ halt "reason" }}`.
// It is counted as halted, not as an error.
type HaltError struct{ Reason string }

func (e *HaltError) Error() string { return "halt: " + e.Reason }

// Unwrap makes errors.Is(err, ErrHalt) true.
func (e *HaltError) Unwrap() error { return ErrHalt }

// ExecError is a template that failed while running. It wraps the cause,
// so errors.Is(err, ErrLimit) tells a limit from a template bug.
type ExecError struct {
	Where string // file:line:col: path of the template
	Msg   string // what went wrong, from the template engine
	Err   error
}

func (e *ExecError) Error() string { return e.Where + ": " + e.Msg }

// Unwrap returns the cause.
func (e *ExecError) Unwrap() error { return e.Err }

// tickFunc is the hidden function injected at the top of every range body
// to enforce MaxIterations and MaxDuration.
const tickFunc = "_koipondTick"

// Env is what one execution of a sequence (or of one event's handlers)
// sees: the koi's store, for formations the launch parameters, and the
// execution's own variables. Create one per execution: variables set with
// `set` live as long as the Env, so two sequences a koi runs at the same
// time never see each other's scratch values (use setKoi for state that
// outlives a sequence).
type Env struct {
	Store  *Store
	Params map[string]string
	// Vars holds the execution's variables (allocated on first set).
	Vars map[string]any
	// varBytes accounts for what Vars hold (set with `set`).
	varBytes varBytes
}

// Text is a string field that may be a template ("{{ get \"channel\" }}") or
// a constant ("42"). Constants render without running a template.
type Text struct {
	id    int    // template id in its Program, or -1 for a constant
	Const string // the constant, when id < 0
	Src   string // the source as written
	Where string // where it was written, for errors at run time
}

// IsConst reports whether the text is a constant.
func (t Text) IsConst() bool { return t.id < 0 }

// Program is a namespace of compiled templates: parsed once (per behavior
// set or formation), executed by any number of koi concurrently. Executing
// takes a bound executor from a small free list, so no per-koi copy of any
// template is ever made.
//
// At most MaxExecutors executions run at once per program; more wait for
// one to end. An executor is a clone of the whole namespace (tens of KB):
// when an event reaches thousands of koi at once, their readers would
// otherwise each clone one (a sync.Pool, emptied at every collection,
// gave hundreds of MB and whole seconds of CPU per fan-out). Executions
// are short and never nest (no template function executes a template), so
// waiting for a slot cannot deadlock; the wait ends when the caller's
// context does.
type Program struct {
	root  *template.Template
	names []string
	fast  []*fastAction // per template: its fast form, or nil
	execs executors
	once  sync.Once
	reads dataReads
	// Budget is the byte budget of each template execution (0:
	// DefaultBudget; see DefaultBudget for what it counts).
	Budget int64
	// noFast makes every template run through text/template (tests
	// compare the two ways).
	noFast bool
	// fastRuns counts executions done the fast way.
	fastRuns atomic.Int64
}

func (p *Program) budget() int64 {
	if p.Budget > 0 {
		return p.Budget
	}
	return DefaultBudget
}

// NewProgram returns an empty program.
func NewProgram() *Program {
	return &Program{root: template.New("koipond").Funcs(funcMap(nil)).Option("missingkey=zero")}
}

// builtinNames are text/template's own functions, for parse-time checks.
var builtinNames = func() map[string]any {
	m := map[string]any{}
	for _, n := range []string{"and", "or", "not", "len", "index", "slice", "print", "printf", "println",
		"html", "js", "urlquery", "call", "eq", "ne", "lt", "le", "gt", "ge"} {
		m[n] = fmt.Sprint // any non-nil value: parse only checks that the name exists
	}
	return m
}()

// compile parses src as a template. It returns a constant Text when src has
// no action.
//
// It parses with text/template/parse directly and adds the tree to the
// program's one namespace: creating a template per source would copy the
// whole function map each time, which made a 10,000-behavior file take
// seconds.
func (p *Program) compile(src, where string) (Text, error) {
	if !strings.Contains(src, "{{") {
		return Text{id: -1, Const: src, Src: src, Where: where}, nil
	}
	name := fmt.Sprintf("t%d", len(p.names))
	trees := map[string]*parse.Tree{}
	tr := parse.New(name)
	if _, err := tr.Parse(src, "", "", trees, map[string]any(funcMap(nil)), builtinNames); err != nil {
		return Text{}, cleanParseError(err, name)
	}
	if len(trees) != 1 || trees[name] == nil {
		return Text{}, errors.New("define and block are not allowed in behavior templates")
	}
	if err := guardTree(tr.Root); err != nil {
		return Text{}, err
	}
	if err := checkConstants(tr.Root, src, p.budget()); err != nil {
		return Text{}, err
	}
	if _, err := p.root.AddParseTree(name, tr); err != nil {
		return Text{}, err
	}
	p.names = append(p.names, name)
	p.fast = append(p.fast, compileFast(tr.Root))
	return Text{id: len(p.names) - 1, Src: src, Where: where}, nil
}

// cleanParseError turns "template: t3:1:12: function "x" not defined" into
// "1:12: function "x" not defined".
func cleanParseError(err error, name string) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "template: ")
	msg = strings.TrimPrefix(msg, name+":")
	return errors.New("line " + msg)
}

// tickNode is the call of tickFunc injected into range bodies, parsed once.
var tickNode = sync.OnceValue(func() parse.Node {
	t, err := template.New("tick").Funcs(template.FuncMap{tickFunc: func() string { return "" }}).Parse("{{" + tickFunc + "}}")
	if err != nil {
		panic(err)
	}
	return t.Tree.Root.Nodes[0]
})

// printCmd is the call of printFunc appended to printing actions.
var printCmd = sync.OnceValue(func() *parse.CommandNode {
	t, err := template.New("print").Funcs(template.FuncMap{printFunc: fmt.Sprint}).Parse("{{" + printFunc + "}}")
	if err != nil {
		panic(err)
	}
	return t.Tree.Root.Nodes[0].(*parse.ActionNode).Pipe.Cmds[0]
})

// guardTree rejects template calls and injects the tick into every range
// body, so a loop cannot run unbounded.
func guardTree(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := guardTree(c); err != nil {
				return err
			}
		}
	case *parse.TemplateNode:
		return fmt.Errorf("%d: {{template}} is not allowed in behavior templates", n.Line)
	case *parse.ActionNode:
		if len(n.Pipe.Decl) == 0 { // it prints: through printFunc, which charges the budget
			n.Pipe.Cmds = append(n.Pipe.Cmds, printCmd().Copy().(*parse.CommandNode))
		}
	case *parse.IfNode:
		if err := guardTree(n.List); err != nil {
			return err
		}
		return guardTree(n.ElseList)
	case *parse.WithNode:
		if err := guardTree(n.List); err != nil {
			return err
		}
		return guardTree(n.ElseList)
	case *parse.RangeNode:
		if err := guardTree(n.List); err != nil {
			return err
		}
		if err := guardTree(n.ElseList); err != nil {
			return err
		}
		n.List.Nodes = append([]parse.Node{tickNode().Copy()}, n.List.Nodes...)
	}
	return nil
}

// executor is a clone of the program's namespace whose functions are bound
// to one mutable binding; it is used by one goroutine at a time.
type executor struct {
	b     binding
	fns   template.FuncMap // the functions bound to b (fast actions call them)
	tmpls []*template.Template
	out   limitedWriter
	// One execution on its own goroutine (execute): what it runs, and
	// its result once done is signalled.
	tm   *template.Template
	data any
	err  error
	done chan struct{}
}

// executors bounds and keeps a program's executors.
type executors struct {
	once  sync.Once
	slots chan struct{}  // one token per execution running
	free  chan *executor // idle executors (never more than slots)
	made  atomic.Int64   // executors cloned, for tests and stats
}

// MaxExecutors returns how many template executions of one program run at
// once: enough to keep every CPU busy while some wait on a store's lock.
func MaxExecutors() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

func (e *executors) init() {
	e.once.Do(func() {
		n := MaxExecutors()
		e.slots = make(chan struct{}, n)
		e.free = make(chan *executor, n)
	})
}

// getExecutor waits for an execution slot, or for ctx to end, then
// returns an idle executor or a new one. Every executor it returns goes
// back with putExecutor.
func (p *Program) getExecutor(ctx context.Context) (*executor, error) {
	p.execs.init()
	select {
	case p.execs.slots <- struct{}{}: // a slot is free: no context to watch
	default:
		select {
		case p.execs.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a template executor: %w", ctx.Err())
		}
	}
	select {
	case x := <-p.execs.free:
		if len(x.tmpls) == len(p.names) {
			return x, nil
		}
	default:
	}
	x := &executor{done: make(chan struct{}, 1)}
	p.execs.made.Add(1)
	clone, err := p.root.Clone()
	if err != nil {
		<-p.execs.slots
		return nil, err
	}
	x.fns = funcMap(&x.b)
	clone.Funcs(x.fns)
	x.tmpls = make([]*template.Template, len(p.names))
	for i, n := range p.names {
		x.tmpls[i] = clone.Lookup(n)
	}
	return x, nil
}

// putExecutor keeps x for the next execution and frees its slot.
func (p *Program) putExecutor(x *executor) {
	select {
	case p.execs.free <- x:
	default: // cannot happen (no more executors than slots); dropped if it did
	}
	<-p.execs.slots
}

// Render produces the text of t for the given environment and data.
//
// When ctx ends (a koi's pause or stop), a Render waiting for an executor
// returns at once, and a running one within 64 range iterations, with an
// error wrapping ctx.Err() (never ErrLimit): the caller tells a stop from
// a failure by its context, as it does for a request.
func (p *Program) Render(ctx context.Context, env *Env, t Text, data any) (string, error) {
	if t.IsConst() {
		return t.Const, nil
	}
	x, err := p.getExecutor(ctx)
	if err != nil {
		return "", err
	}
	defer p.putExecutor(x)
	x.out.reset()
	if ok, err := p.runFast(ctx, x, env, t, data); ok {
		if err != nil {
			return "", err
		}
		return x.out.String(), nil
	}
	if err := x.run(ctx, p, env, t, data); err != nil {
		return "", err
	}
	return x.out.String(), nil
}

// Run executes an action for its effect; its output is discarded (but still
// bounded). It ends with ctx as Render does.
func (p *Program) Run(ctx context.Context, env *Env, t Text, data any) error {
	if t.IsConst() {
		return nil
	}
	x, err := p.getExecutor(ctx)
	if err != nil {
		return err
	}
	defer p.putExecutor(x)
	x.out.reset()
	if ok, err := p.runFast(ctx, x, env, t, data); ok {
		return err
	}
	return x.run(ctx, p, env, t, data)
}

// runFast runs t's fast form, if it has one, with the binding a template
// run would have. It reports false (having done nothing but evaluate) when
// the template must run instead; else it ran, and err is its halt or nil.
func (p *Program) runFast(ctx context.Context, x *executor, env *Env, t Text, data any) (ran bool, err error) {
	if p.noFast || t.id >= len(p.fast) || t.id >= len(x.tmpls) || p.fast[t.id] == nil {
		return false, nil
	}
	x.bind(ctx, p, env)
	err = p.fast[t.id].run(x, data)
	x.b = binding{}
	if _, halt := err.(*HaltError); err != nil && !halt { // a halt comes unwrapped (fastAction.run)
		x.out.reset()
		return false, nil
	}
	p.fastRuns.Add(1)
	return true, err
}

// bind gives x a fresh binding for one execution of p's templates in env,
// ended by ctx: the fast way and text/template's see the same one.
func (x *executor) bind(ctx context.Context, p *Program, env *Env) {
	x.b = binding{ctx: ctx, env: env, deadline: time.Now().Add(MaxDuration), budget: budget{limit: p.budget()}}
	x.out.b = &x.b
}

func (x *executor) run(ctx context.Context, p *Program, env *Env, t Text, data any) error {
	if t.id >= len(x.tmpls) {
		return fmt.Errorf("%s: template %d is not in this program", t.Where, t.id)
	}
	x.bind(ctx, p, env)
	err := x.execute(x.tmpls[t.id], data)
	x.b = binding{}
	if err != nil {
		var he *HaltError
		if errors.As(err, &he) {
			return he
		}
		msg := err.Error()
		// "template: t3:1:12: executing "t3" at <…>: error calling …"
		if i := strings.Index(msg, ": executing "); i >= 0 {
			if j := strings.Index(msg[i:], "at <"); j >= 0 {
				msg = msg[i+j:]
			}
		}
		return &ExecError{Where: t.Where, Msg: clipTo(msg, MaxQuote+100), Err: err}
	}
	return nil
}

// execute runs tm on a goroutine of its own and waits for it. Executing a
// template is deep (text/template walks the tree through reflect calls)
// and grows the stack it runs on to tens of KB. Run on a koi's reader or
// behavior goroutine, that growth stays with the koi for as long as it
// lives (a stack shrinks only by halves, at collections, and only while
// mostly unused): 77 KB of stack per busy koi, more than its heap. A
// short-lived goroutine gives its stack back when the template is done.
func (x *executor) execute(tm *template.Template, data any) error {
	x.tm, x.data = tm, data
	go x.executeHere()
	<-x.done
	err := x.err
	x.tm, x.data, x.err = nil, nil, nil
	return err
}

func (x *executor) executeHere() {
	x.err = x.tm.Execute(&x.out, x.data)
	x.done <- struct{}{}
}

// binding is the per-execution state the template functions see.
type binding struct {
	ctx      context.Context // the execution ends when it does
	env      *Env
	deadline time.Time
	ticks    int
	budget   budget
}

// charge takes n bytes from the execution's budget (see budget.charge).
// Without a binding (parsing) nothing is charged.
func (b *binding) charge(what string, n int64) error {
	if b == nil {
		return nil
	}
	return b.budget.charge(what, n)
}

func (b *binding) store() (*Store, error) {
	if b == nil || b.env == nil || b.env.Store == nil {
		return nil, errors.New("no koi store in this context")
	}
	return b.env.Store, nil
}

func (b *binding) tick() error {
	b.ticks++
	if b.ticks > MaxIterations {
		return fmt.Errorf("more than %d range iterations: %w", MaxIterations, ErrLimit)
	}
	if b.ticks&63 != 0 {
		return nil
	}
	if b.ctx != nil { // ctx.Err is an atomic load: a stop ends the loop
		if err := b.ctx.Err(); err != nil {
			return fmt.Errorf("stopped after %d range iterations: %w", b.ticks, err)
		}
	}
	if time.Now().After(b.deadline) {
		return fmt.Errorf("ran longer than %v: %w", MaxDuration, ErrLimit)
	}
	return nil
}

// limitedWriter collects template output up to MaxOutput bytes, charging
// what it keeps to the execution's budget.
type limitedWriter struct {
	buf []byte
	b   *binding
}

func (w *limitedWriter) reset() { w.buf = w.buf[:0] }

func (w *limitedWriter) Write(p []byte) (int, error) {
	if len(w.buf)+len(p) > MaxOutput {
		return 0, fmt.Errorf("output larger than %d bytes: %w", MaxOutput, ErrLimit)
	}
	if err := w.b.charge("output", int64(len(p))); err != nil {
		return 0, err
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *limitedWriter) String() string { return string(w.buf) }
