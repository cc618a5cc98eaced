package behaviors

import (
	"sync"
	"text/template/parse"
)

// dataReads caches, per template of a Program, whether executing it can
// read its data (dot).
type dataReads struct {
	mu sync.Mutex
	m  map[int]bool
}

// ReadsData reports whether running any of ts can read the data it is
// given (the reply of a request, a frame): a template that uses no `.`,
// field of dot or `$` never sees it, so the caller may skip decoding. The
// answer errs on the safe side (a field of a `with` value counts as a
// read).
func (p *Program) ReadsData(ts ...Text) bool {
	for _, t := range ts {
		if t.IsConst() {
			continue
		}
		if p.readsData(t.id) {
			return true
		}
	}
	return false
}

func (p *Program) readsData(id int) bool {
	p.reads.mu.Lock()
	defer p.reads.mu.Unlock()
	if r, ok := p.reads.m[id]; ok {
		return r
	}
	r := true
	if id >= 0 && id < len(p.names) {
		if t := p.root.Lookup(p.names[id]); t != nil && t.Tree != nil {
			r = nodeReadsData(t.Tree.Root)
		}
	}
	if p.reads.m == nil {
		p.reads.m = map[int]bool{}
	}
	p.reads.m[id] = r
	return r
}

// nodeReadsData walks a template tree for anything that reads dot.
func nodeReadsData(n parse.Node) bool {
	switch n := n.(type) {
	case nil:
		return false
	case *parse.ListNode:
		if n == nil {
			return false
		}
		for _, c := range n.Nodes {
			if nodeReadsData(c) {
				return true
			}
		}
		return false
	case *parse.ActionNode:
		return nodeReadsData(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return false
		}
		for _, c := range n.Cmds {
			if nodeReadsData(c) {
				return true
			}
		}
		return false
	case *parse.CommandNode:
		for _, a := range n.Args {
			if nodeReadsData(a) {
				return true
			}
		}
		return false
	case *parse.IfNode:
		return nodeReadsData(n.Pipe) || nodeReadsData(n.List) || nodeReadsData(n.ElseList)
	case *parse.RangeNode:
		return nodeReadsData(n.Pipe) || nodeReadsData(n.List) || nodeReadsData(n.ElseList)
	case *parse.WithNode:
		return nodeReadsData(n.Pipe) || nodeReadsData(n.List) || nodeReadsData(n.ElseList)
	case *parse.ChainNode:
		return nodeReadsData(n.Node)
	case *parse.VariableNode:
		return len(n.Ident) > 0 && n.Ident[0] == "$"
	case *parse.TextNode, *parse.BoolNode, *parse.NumberNode, *parse.StringNode,
		*parse.NilNode, *parse.IdentifierNode, *parse.CommentNode, *parse.BreakNode, *parse.ContinueNode:
		return false
	}
	return true // dot, fields of dot, template calls, anything new: a read
}
