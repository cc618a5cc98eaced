package behaviors

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
)

// literalTypes returns every type the classifier can name when each of its
// rules gives a literal type (prefix, prefix_hex, a match without a type
// group, a constant template); ok is false when some rule names frames
// from their content (field, type group, template), so any type may come.
func (c *Classifier) literalTypes() (types []string, ok bool) {
	seen := map[string]bool{}
	for _, list := range [][]FrameRule{c.JSON, c.Text, c.Binary} {
		for i := range list {
			r := &list[i]
			var typ string
			switch {
			case r.Prefix != nil, r.Match != nil && r.typeGroup < 0:
				typ = r.Type
			case r.HasTemplate && r.Template.IsConst():
				typ = strings.TrimSpace(r.Template.Const)
			default:
				return nil, false
			}
			if !seen[typ] {
				seen[typ] = true
				types = append(types, typ)
			}
		}
	}
	sort.Strings(types)
	return types, true
}

// checkAwaitedTypes reports each constant await or error type that the
// set's classifier can never name, when every rule of it is literal: such
// a request would wait out its timeout on every run. It runs once the set
// is whole, as "frames" and the requests may come from different files.
func (s *Set) checkAwaitedTypes() Diagnostics {
	types, ok := s.Frames.literalTypes()
	if !ok {
		return nil
	}
	var out Diagnostics
	check := func(m *FrameMatch) {
		if m == nil || !m.HasType || !m.Type.IsConst() || slices.Contains(types, m.Type.Const) {
			return
		}
		d := posDiag(m.typeAt)
		d.Path = m.typePath
		named := "no type at all"
		if len(types) > 0 {
			q := make([]string, len(types))
			for i, t := range types {
				q[i] = quote(t)
			}
			named = strings.Join(q, ", ")
		}
		d.Msg = fmt.Sprintf("no rule of \"frames\" names a frame %s, so nothing can match (the rules name %s)", quote(m.Type.Const), clip(named))
		if hint := didYouMean(m.Type.Const, types); strings.HasPrefix(hint, " (did") {
			d.Msg += "; did you mean " + strings.TrimSuffix(strings.TrimPrefix(hint, " (did you mean "), ")")
		}
		out = append(out, d)
	}
	for _, seq := range s.orderedSequences() {
		if seq == nil {
			continue
		}
		seq.EachStep(func(st *Step) {
			r := st.Request
			if r == nil {
				return
			}
			if r.Await != nil {
				check(&r.Await.FrameMatch)
			}
			if r.Error != nil {
				check(&r.Error.FrameMatch)
			}
		})
	}
	return out
}

// orderedSequences lists the set's sequences in a stable order (on_event
// handlers by type), so diagnostics come out the same every time.
func (s *Set) orderedSequences() []*Sequence {
	out := []*Sequence{s.Boot, s.OnConnect, s.OnDisconnect}
	for _, b := range s.Behaviors {
		out = append(out, b.Sequence)
	}
	keys := make([]string, 0, len(s.OnEvent))
	for k := range s.OnEvent {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if h := s.OnEvent[k]; h != nil {
			out = append(out, h.Sequence)
		}
	}
	return out
}

// typeGroupOnlyEmpty reports whether the pattern's (?P<type>…) group can
// capture nothing but "" (it holds only anchors or empty matches): such a
// rule never names a frame.
func typeGroupOnlyEmpty(pattern string) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return false
	}
	var find func(*syntax.Regexp) *syntax.Regexp
	find = func(r *syntax.Regexp) *syntax.Regexp {
		if r.Op == syntax.OpCapture && r.Name == "type" {
			return r
		}
		for _, s := range r.Sub {
			if g := find(s); g != nil {
				return g
			}
		}
		return nil
	}
	g := find(re)
	return g != nil && emptyOnly(g.Sub[0])
}

// emptyOnly reports whether r can match only the empty string (or
// nothing).
func emptyOnly(r *syntax.Regexp) bool {
	switch r.Op {
	case syntax.OpEmptyMatch, syntax.OpNoMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	case syntax.OpLiteral:
		return len(r.Rune) == 0
	case syntax.OpRepeat:
		if r.Max == 0 {
			return true
		}
	case syntax.OpConcat, syntax.OpAlternate, syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
	default:
		return false
	}
	for _, s := range r.Sub {
		if !emptyOnly(s) {
			return false
		}
	}
	return true
}
