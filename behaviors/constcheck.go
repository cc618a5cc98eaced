package behaviors

import (
	"fmt"
	"strings"
	"text/template/parse"
)

// constChecker finds, when a template is compiled, expressions whose size
// is known from constants alone and is over the execution budget:
// `repeat 10000 (repeat 10000 "x")`, or a string doubled with `print $s $s`
// again and again. Such a template could only ever fail; refusing it at
// validation (and upload) names the position instead of failing every
// execution at run time.
//
// Sizes are lower bounds: an unknown part counts as 0, so a template is
// refused only when it is certain to be over. Variables keep the lower
// bound of their value; after an if, with or range body (which may run
// zero times) a variable keeps the smaller of its values before and after.
type constChecker struct {
	src    string
	budget int64
	vars   map[string]int64
	err    error
}

// checkConstants reports the first constant expression of tree over the
// budget.
func checkConstants(root *parse.ListNode, src string, budget int64) error {
	c := &constChecker{src: src, budget: budget, vars: map[string]int64{}}
	c.list(root)
	return c.err
}

func (c *constChecker) list(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		if c.err != nil {
			return
		}
		switch n := n.(type) {
		case *parse.ActionNode:
			c.action(n.Pipe)
		case *parse.IfNode:
			c.branch(&n.BranchNode)
		case *parse.WithNode:
			c.branch(&n.BranchNode)
		case *parse.RangeNode:
			c.branch(&n.BranchNode)
		}
	}
}

// action evaluates a pipeline and records what it declares or assigns.
func (c *constChecker) action(p *parse.PipeNode) {
	size := c.pipe(p)
	for _, v := range p.Decl {
		if len(v.Ident) != 1 {
			continue
		}
		if len(p.Decl) == 1 && size > 0 {
			c.vars[v.Ident[0]] = size
		} else {
			delete(c.vars, v.Ident[0])
		}
	}
}

func (c *constChecker) branch(b *parse.BranchNode) {
	c.pipe(b.Pipe)
	before := c.vars
	for _, l := range []*parse.ListNode{b.List, b.ElseList} {
		c.vars = copyVars(before)
		c.list(l)
		after := c.vars
		merged := map[string]int64{}
		for k, v := range before {
			if a, ok := after[k]; ok {
				merged[k] = min(v, a)
			}
		}
		before = merged
	}
	c.vars = before
}

func copyVars(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pipe returns the lower bound of a pipeline's string result (0 when
// unknown).
func (c *constChecker) pipe(p *parse.PipeNode) int64 {
	if p == nil {
		return 0
	}
	var prev *int64
	var size int64
	for _, cmd := range p.Cmds {
		size = c.command(cmd, prev)
		s := size
		prev = &s
	}
	return size
}

func (c *constChecker) command(cmd *parse.CommandNode, prev *int64) int64 {
	if len(cmd.Args) == 0 {
		return 0
	}
	id, ok := cmd.Args[0].(*parse.IdentifierNode)
	if !ok {
		if len(cmd.Args) == 1 {
			return c.arg(cmd.Args[0])
		}
		return 0
	}
	args := make([]int64, 0, len(cmd.Args))
	nums := make([]int64, 0, len(cmd.Args))
	for _, a := range cmd.Args[1:] {
		args = append(args, c.arg(a))
		nums = append(nums, constInt(a))
	}
	if prev != nil {
		args = append(args, *prev)
		nums = append(nums, -1)
	}
	if c.err != nil {
		return 0
	}
	var size int64
	switch id.Ident {
	case "repeat":
		if len(args) == 2 && nums[0] > 0 {
			size = satMul(nums[0], args[1])
		}
	case "print", "cat":
		for _, a := range args {
			size = satAdd(size, a)
		}
	case "println":
		for _, a := range args {
			size = satAdd(size, satAdd(a, 1))
		}
	case "quote", "squote":
		for _, a := range args {
			size = satAdd(size, satAdd(a, 2))
		}
	case "indent", "nindent":
		if len(args) == 2 && nums[0] > 0 {
			size = satAdd(nums[0], args[1])
		}
	case "printf":
		// only %s and %v verbs without precision print at least their
		// argument (%.3s, %T, %d of a list can be shorter)
		if f, ok := cmd.Args[min(1, len(cmd.Args)-1)].(*parse.StringNode); ok && len(cmd.Args) > 1 && plainVerbs(f.Text) {
			size = max(int64(len(f.Text)-2*strings.Count(f.Text, "%")), 0)
			for _, a := range args[1:] {
				size = satAdd(size, a)
			}
		}
	case printFunc:
		if len(args) == 1 {
			size = args[0]
		}
	default:
		return 0
	}
	if size > c.budget {
		c.err = fmt.Errorf("line %s: %s would produce %s, over the %s template budget", c.pos(cmd), id.Ident, bytesText(size), bytesText(c.budget))
	}
	return max(size, 0)
}

func (c *constChecker) arg(n parse.Node) int64 {
	switch n := n.(type) {
	case *parse.StringNode:
		return int64(len(n.Text))
	case *parse.PipeNode:
		return c.pipe(n)
	case *parse.VariableNode:
		if len(n.Ident) == 1 {
			return c.vars[n.Ident[0]]
		}
	}
	return 0
}

// plainVerbs reports whether every directive of a printf format is a bare
// %s or %v.
func plainVerbs(f string) bool {
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		if i+1 >= len(f) || (f[i+1] != 's' && f[i+1] != 'v') {
			return false
		}
		i++
	}
	return true
}

// constInt is the value of an integer constant, or -1.
func constInt(n parse.Node) int64 {
	if num, ok := n.(*parse.NumberNode); ok && num.IsInt {
		return num.Int64
	}
	return -1
}

// pos renders a node's position in its template as line:col.
func (c *constChecker) pos(n parse.Node) string {
	off := min(int(n.Position()), len(c.src))
	line := 1 + strings.Count(c.src[:off], "\n")
	col := off - strings.LastIndex(c.src[:off], "\n")
	return fmt.Sprintf("%d:%d", line, col)
}
