package warehouse

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/koipond/koipond/behaviors"
)

// A generated session is a behavior per entry method: its steps call the
// entry method, then a `choose` step picks the next call among the
// learned transitions (branch weight = the share of the method's calls
// followed by it; the rest ends the session), each branch pausing for the
// learned delay (drawn from its quantiles at 0, 0.1, …, 1) before the
// call, and so on, at most MaxFollowUps deep. A branch is kept only when
// at least MinPathProbability of the entry's sessions reach it, and at
// most MaxSessionNodes branches are written in all, the most travelled
// first (a branch's weight is the expected number of times the export's
// sessions take it).

// sessionBehavior is one generated behavior.
type sessionBehavior struct {
	name      string
	frequency float64
	hourly    []float64
	doc       string
	steps     []any
}

// sessionNode is one call of a generated session tree.
type sessionNode struct {
	method string
	trans  int     // index into Sessions.Transitions (-1 at the root)
	weight float64 // the branch's weight from its parent
	path   float64 // share of the entry's sessions that get here
	depth  int
	kids   []int
}

// candidate is a branch that may be added to a tree.
type candidate struct {
	tree, parent, trans int
	weight, path        float64
	expected            float64 // sessions × path: the expected uses
}

type candHeap []candidate

func (h candHeap) Len() int           { return len(h) }
func (h candHeap) Less(i, j int) bool { return h[i].expected > h[j].expected }
func (h candHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)        { *h = append(*h, x.(candidate)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sessionBuild is what building session behaviors needs beside the
// learned Sessions: the sequences file's steps and SequencedOnly.
type sessionBuild struct {
	seqSteps      map[string][]map[string]json.RawMessage
	sequencedOnly bool
}

// build marks dropped transitions, grows the session trees, writes the
// session behaviors, and computes Reproduced, Kept, Coverage and
// CallShare. It expects those fields unset.
func (g *sessionBuild) build(s *Sessions, drops []string) error {
	calls := map[string]int64{}
	for _, e := range s.Ends {
		calls[e.Method] = e.Calls
	}
	byPair := map[[2]string]int{}
	for i, t := range s.Transitions {
		byPair[[2]string{t.From, t.To}] = i
	}
	for _, d := range drops {
		// A method name may hold '>': every split that names an observed
		// transition is the one meant.
		matched := false
		for at := strings.IndexByte(d, '>'); at >= 0; at = nextArrow(d, at) {
			if i, ok := byPair[[2]string{strings.TrimSpace(d[:at]), strings.TrimSpace(d[at+1:])}]; ok {
				s.Transitions[i].Dropped, matched = true, true
			}
		}
		if !matched {
			from, to, _ := parseDrop(d)
			s.Notes = append(s.Notes, fmt.Sprintf("--drop-transition %s>%s: no such transition was observed", clip(from), clip(to)))
		}
	}
	// With SequencedOnly, methods without a sequence are left out of the
	// sessions: no session begins with them, none calls them.
	sequenced := g.sequencedOnly
	has := func(m string) bool { _, ok := g.seqSteps[m]; return !sequenced || ok }
	out := map[string][]int{} // from → transitions, most frequent first
	var leftOut []string
	for i, t := range s.Transitions {
		if !t.Dropped && has(t.To) {
			out[t.From] = append(out[t.From], i)
		}
	}
	var entries []Entry
	for _, e := range s.Entries {
		if has(e.Method) {
			entries = append(entries, e)
		} else {
			leftOut = append(leftOut, e.Method)
		}
	}
	if len(leftOut) > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("--sequenced-only: no session begins with %d entry methods that have no sequence: %s", len(leftOut), strings.Join(short12(leftOut), ", ")))
	}

	if len(entries) > MaxEntryBehaviors {
		var left int64
		for _, e := range entries[MaxEntryBehaviors:] {
			left += e.Sessions
		}
		s.Notes = append(s.Notes, fmt.Sprintf("only the %d most frequent entry methods get a session behavior: %d more, beginning %s, are left out",
			MaxEntryBehaviors, len(entries)-MaxEntryBehaviors, plural64(left, "session", "sessions")))
		entries = entries[:MaxEntryBehaviors]
	}
	depths := map[string]int{} // per method: how deeply its sequence's choose steps nest
	chooseDepth := func(m string) int {
		d, ok := depths[m]
		if !ok {
			d = stepsChooseDepth(g.seqSteps[m])
			depths[m] = d
		}
		return d
	}
	trees := make([][]sessionNode, len(entries))
	var h candHeap
	push := func(tree, parent int) {
		n := trees[tree][parent]
		if n.depth >= MaxFollowUps {
			return
		}
		for _, ti := range out[n.method] {
			t := s.Transitions[ti]
			// The kid's steps sit inside n.depth+1 choose steps, and its
			// sequence may nest choose steps of its own.
			if n.depth+1+chooseDepth(t.To) > behaviors.MaxChooseDepth {
				continue
			}
			w := math.Floor(float64(t.Count)/float64(max(calls[t.From], 1))*1e6) / 1e6
			p := n.path * w
			if p < MinPathProbability || w <= 0 {
				continue
			}
			heap.Push(&h, candidate{tree: tree, parent: parent, trans: ti, weight: w, path: p, expected: p * float64(entries[tree].Sessions)})
		}
	}
	for i, e := range entries {
		trees[i] = []sessionNode{{method: e.Method, trans: -1, path: 1}}
		push(i, 0)
	}
	var made float64 // calls the generated sessions make
	for _, e := range entries {
		made += float64(e.Sessions)
	}
	nodes, skipped := 0, 0
	for h.Len() > 0 {
		c := heap.Pop(&h).(candidate)
		if nodes >= MaxSessionNodes {
			skipped++
			continue
		}
		nodes++
		parent := trees[c.tree][c.parent]
		trees[c.tree] = append(trees[c.tree], sessionNode{method: s.Transitions[c.trans].To, trans: c.trans, weight: c.weight,
			path: c.path, depth: parent.depth + 1})
		id := len(trees[c.tree]) - 1
		trees[c.tree][c.parent].kids = append(trees[c.tree][c.parent].kids, id)
		s.Transitions[c.trans].Reproduced += c.expected
		made += c.expected
		push(c.tree, id)
	}
	if skipped > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("the generated sessions hold the %d most travelled follow-ups; %d rarer ones reached by at least %g%% of their sessions are left out",
			MaxSessionNodes, skipped, 100*MinPathProbability))
	}
	var covered float64
	for i := range s.Transitions {
		t := &s.Transitions[i]
		t.Kept = t.Reproduced > 0
		covered += math.Min(float64(t.Count), t.Reproduced)
		t.Reproduced = math.Round(t.Reproduced*100) / 100
	}
	if s.TransitionCount > 0 {
		s.Coverage = covered / float64(s.TransitionCount)
	}
	if s.Calls > 0 {
		s.CallShare = made / float64(s.Calls)
	}
	if s.CallShare < 0.9 && s.Count > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("the generated sessions make about %.0f%% of the export's calls: its sessions average %.1f calls, a generated one at most %d, and paths under %g%% are pruned; "+
			"a shorter --session-gap cuts long activity into more, shorter sessions, or generate without --sessions for per-method frequencies",
			100*s.CallShare, float64(s.Calls)/float64(s.Count), 1+MaxFollowUps, 100*MinPathProbability))
	}

	unseq := map[string]bool{}
	index := map[string]int{}
	for i, e := range s.Entries {
		index[e.Method] = i
	}
	for i, e := range entries {
		name := "session:" + e.Method
		s.Entries[index[e.Method]].Behavior = name
		steps, err := g.treeSteps(trees[i], 0, s, unseq)
		if err != nil {
			return err
		}
		s.behaviors = append(s.behaviors, sessionBehavior{name: name, frequency: e.Frequency, hourly: e.Hourly, steps: steps,
			doc: fmt.Sprintf("sessions beginning with %s (%s of %s): the entry call, then up to %d learned follow-ups",
				e.Method, commas(e.Sessions), commas(s.Count), MaxFollowUps)})
	}
	for m := range unseq {
		s.Unsequenced = append(s.Unsequenced, m)
	}
	sort.Strings(s.Unsequenced)
	if len(s.Unsequenced) > 0 {
		why := "no --sequences file was given"
		if g.seqSteps != nil {
			why = "the sequences file has none for them"
		}
		s.Notes = append(s.Notes, fmt.Sprintf("%d methods have no sequence, so the sessions call them as bare api requests without arguments (%s; --sequenced-only leaves them out): %s",
			len(s.Unsequenced), why, strings.Join(short12(s.Unsequenced), ", ")))
	}
	return nil
}

// nextArrow is the index of the '>' in d after the one at at, or -1.
func nextArrow(d string, at int) int {
	if i := strings.IndexByte(d[at+1:], '>'); i >= 0 {
		return at + 1 + i
	}
	return -1
}

// short12 lists at most 12 names, then how many more.
func short12(names []string) []string {
	if len(names) <= 12 {
		return names
	}
	return append(names[:12:12], fmt.Sprintf("and %d more", len(names)-12))
}

// treeSteps writes the steps of node id: its method's steps, then a
// choose over its kids.
func (g *sessionBuild) treeSteps(tree []sessionNode, id int, s *Sessions, unseq map[string]bool) ([]any, error) {
	n := tree[id]
	steps := g.methodSteps(n.method, unseq)
	if len(n.kids) == 0 {
		return steps, nil
	}
	var branches []any
	for _, k := range n.kids {
		kid := tree[k]
		t := s.Transitions[kid.trans]
		sub, err := g.treeSteps(tree, k, s, unseq)
		if err != nil {
			return nil, err
		}
		delay := map[string]any{
			"doc":            fmt.Sprintf("the learned pause from %s to %s: p50 %d ms, p90 %d ms", t.From, t.To, t.DelayP50MS, t.DelayP90MS),
			"delay_after_ms": t.DelayQuantilesMS,
		}
		branches = append(branches, map[string]any{
			"weight": kid.weight,
			"doc":    fmt.Sprintf("%s after %s: %.1f%% of its calls (%s seen); %.1f%% of these sessions get here", t.To, t.From, 100*kid.weight, commas(t.Count), 100*kid.path),
			"steps":  append([]any{delay}, sub...),
		})
	}
	return append(steps, map[string]any{"choose": branches}), nil
}

// stepsChooseDepth is how deeply the choose steps of a sequence's steps
// (as Options.Sequences holds them) nest: 0 for none.
func stepsChooseDepth(steps []map[string]json.RawMessage) int {
	depth := 0
	for _, st := range steps {
		raw, ok := st["choose"]
		if !ok {
			continue
		}
		var branches []struct {
			Steps []map[string]json.RawMessage `json:"steps"`
		}
		_ = json.Unmarshal(raw, &branches) // the file loaded: it is well formed
		d := 1
		for _, b := range branches {
			d = max(d, 1+stepsChooseDepth(b.Steps))
		}
		depth = max(depth, d)
	}
	return depth
}

// methodSteps are a method's steps: its sequence from Options.Sequences
// without the last step's pause (the learned delay replaces it), or a
// bare api request.
func (g *sessionBuild) methodSteps(method string, unseq map[string]bool) []any {
	raw, ok := g.seqSteps[method]
	if !ok {
		unseq[method] = true
		return []any{map[string]any{"request": map[string]any{"type": "api", "method": method}}}
	}
	out := make([]any, len(raw))
	for i, st := range raw {
		c := make(map[string]json.RawMessage, len(st))
		for k, v := range st {
			if i == len(raw)-1 && k == "delay_after_ms" {
				continue
			}
			c[k] = v
		}
		out[i] = c
	}
	return out
}

// loadSequenceSteps reads the steps of every behavior and sequence of a
// behavior file as JSON, to copy into generated sessions. The file has
// been loaded and validated by loadSequences.
func loadSequenceSteps(path string) (map[string][]map[string]json.RawMessage, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading the sequences file: %w", err)
	}
	if st.Size() > behaviors.MaxFileSize {
		return nil, fmt.Errorf("reading the sequences file %s: %d bytes, over the %d-byte behavior file limit", path, st.Size(), behaviors.MaxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the sequences file: %w", err)
	}
	std, err := behaviors.StandardJSON(data)
	if err != nil {
		return nil, fmt.Errorf("reading the sequences file %s: %w", path, err)
	}
	type entry struct {
		Steps []map[string]json.RawMessage `json:"steps"`
	}
	var f struct {
		Behaviors map[string]entry `json:"behaviors"`
		Sequences map[string]entry `json:"sequences"`
	}
	if err := json.Unmarshal(std, &f); err != nil {
		return nil, fmt.Errorf("reading the sequences file %s: %w", path, err)
	}
	out := map[string][]map[string]json.RawMessage{}
	for _, m := range []map[string]entry{f.Behaviors, f.Sequences} {
		for name, e := range m {
			if len(e.Steps) > 0 {
				out[name] = e.Steps
			}
		}
	}
	return out, nil
}

// SessionGroup is the "exclusive" group of every generated session
// behavior: a koi, like the user it plays, runs one session at a time, so
// the calls of two sessions never interleave at the target.
const SessionGroup = "session"

// encodeSessionBehaviors writes the "behaviors" object of a sessions
// output: each session behavior with its frequency, exclusive group, doc
// and steps.
func encodeSessionBehaviors(b *bytes.Buffer, list []sessionBehavior) error {
	before := b.Len() // the provenance
	b.WriteString("  \"behaviors\": {")
	for i, sb := range list {
		if i > 0 {
			b.WriteString(",")
		}
		var body bytes.Buffer
		enc := json.NewEncoder(&body)
		enc.SetEscapeHTML(false)
		enc.SetIndent("    ", "  ")
		v := map[string]any{"frequency": json.Number(formatFloat(sb.frequency)), "exclusive": SessionGroup, "doc": sb.doc, "steps": sb.steps}
		if sb.hourly != nil {
			h := make([]json.Number, len(sb.hourly))
			for i, x := range sb.hourly {
				h[i] = json.Number(strconv.FormatFloat(x, 'f', 4, 64))
			}
			v["hourly"] = h
		}
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encoding session behavior %s: %w", sb.name, err)
		}
		fmt.Fprintf(b, "\n    %s: %s", jsonString(sb.name), bytes.TrimRight(body.Bytes(), "\n"))
	}
	if len(list) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n")
	if b.Len() > behaviors.MaxFileSize {
		return fmt.Errorf("%w: the output would take %s (the \"generated\" provenance %s, the session behaviors %s), over the %s behavior file limit: "+
			"filter the export (--team, --since, --until) or use shorter sequences",
			ErrLimit, byteSize(int64(b.Len())), byteSize(int64(before)), byteSize(int64(b.Len()-before)), byteSize(behaviors.MaxFileSize))
	}
	return nil
}
