package verdict

import (
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
)

// Limits and defaults of guardrail rules.
const (
	DefaultMinCount = 10
	MaxGuardrails   = 50
	MinGuardFor     = time.Second
	MaxGuardFor     = 24 * time.Hour
)

// Guardrail is a parsed rule.
type Guardrail struct {
	Rule  state.GuardrailRule // as stored: the name defaulted
	Scope string              // run or global
	Cond  *Threshold          // the condition that fires the rule
	Dur   time.Duration       // how long the condition must hold
	// Action is pause, stop or shed; Shed is its percent.
	Action string
	Shed   float64
}

// ParseGuardrails parses rules, failing on the first bad one with its
// field (FIELD[i].when …).
func ParseGuardrails(field, scope string, rules []state.GuardrailRule) ([]*Guardrail, *FieldError) {
	if len(rules) > MaxGuardrails {
		return nil, invalid(field, "%d rules; at most %d", len(rules), MaxGuardrails)
	}
	out := make([]*Guardrail, 0, len(rules))
	names := map[string]bool{}
	for i, r := range rules {
		f := fmt.Sprintf("%s[%d]", field, i)
		g, err := ParseGuardrail(f, scope, r)
		if err != nil {
			return nil, err
		}
		if names[g.Rule.Name] {
			return nil, invalid(f+".name", "%q names two rules", g.Rule.Name)
		}
		names[g.Rule.Name] = true
		out = append(out, g)
	}
	return out, nil
}

// ParseGuardrail parses one rule; field prefixes its errors.
func ParseGuardrail(field, scope string, r state.GuardrailRule) (*Guardrail, *FieldError) {
	g := &Guardrail{Rule: r, Scope: scope}
	if err := checkName(field+".key", r.Key); err != nil {
		return nil, err
	}
	if _, err := path.Match(r.Key, ""); err != nil {
		return nil, invalid(field+".key", "%q is not a valid glob: %v", r.Key, err)
	}
	if strings.TrimSpace(r.When) == "" {
		return nil, invalid(field+".when", "give a condition that fires the rule, e.g. \"success_rate < 95%%\" or \"p99 > 5s\"")
	}
	t, err := ParseThreshold(r.Key, r.When)
	if err != nil {
		return nil, &FieldError{Field: field + ".when", Message: err.Error(), Err: err}
	}
	g.Cond = t
	if r.For == "" {
		return nil, invalid(field+".for", "give how long the condition must hold, e.g. \"5m\"")
	}
	d, perr := time.ParseDuration(r.For)
	if perr != nil {
		return nil, invalid(field+".for", "%q is not a duration (e.g. 30s, 5m)", r.For)
	}
	if d < MinGuardFor || d > MaxGuardFor {
		return nil, invalid(field+".for", "%s is outside %s..%s", r.For, MinGuardFor, MaxGuardFor)
	}
	g.Dur = d
	act := strings.Join(strings.Fields(strings.ToLower(r.Action)), " ")
	switch {
	case act == "pause" || act == "stop":
		g.Action = act
	case strings.HasPrefix(act, "shed "):
		num := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(act, "shed "), "%"))
		p, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(p) || p <= 0 || p >= 100 {
			return nil, invalid(field+".action", "%q: shed takes a percentage between 0 and 100, exclusive, e.g. \"shed 50%%\"", r.Action)
		}
		g.Action, g.Shed = "shed", p
		act = "shed " + strconv.FormatFloat(p, 'f', -1, 64) + "%"
	case act == "":
		return nil, invalid(field+".action", "give pause, stop or \"shed N%%\"")
	default:
		return nil, invalid(field+".action", "%q is not pause, stop or \"shed N%%\"", r.Action)
	}
	g.Rule.Action = act
	switch {
	case r.MinCount < 0 || r.MinCount > 1_000_000_000:
		return nil, invalid(field+".min_count", "%d is outside 0..1e9 (0 means %d)", r.MinCount, DefaultMinCount)
	case r.MinCount == 0:
		g.Rule.MinCount = DefaultMinCount
	}
	if g.Rule.Name == "" {
		g.Rule.Name = fmt.Sprintf("%s for %s → %s", g.Condition(), r.For, act)
	}
	if err := checkName(field+".name", g.Rule.Name); err != nil {
		return nil, err
	}
	return g, nil
}

// Condition is the rule's condition for people: "success_rate of api:* < 95%".
func (g *Guardrail) Condition() string {
	f := strings.Fields(g.Cond.Expr) // STAT OP VALUE, normalized by ParseThreshold
	return fmt.Sprintf("%s of %s %s %s", f[0], g.Rule.Key, f[1], f[2])
}

// RulesOf returns the stored form of parsed rules.
func RulesOf(gs []*Guardrail) []state.GuardrailRule {
	out := make([]state.GuardrailRule, len(gs))
	for i, g := range gs {
		out[i] = g.Rule
	}
	return out
}

// GuardrailWarnings names rule keys whose metric kind koi never report
// (globs over the kind are not judged).
func GuardrailWarnings(field string, rules []state.GuardrailRule) []string {
	var out []string
	for i, r := range rules {
		kind, _, _ := strings.Cut(r.Key, ":")
		if strings.ContainsAny(kind, `*?[\`) || metricKinds[kind] {
			continue
		}
		out = append(out, fmt.Sprintf("%s[%d].key: unknown metric kind %q (api:METHOD, ws:connect, event:TYPE, behavior:NAME, …); the rule never fires", field, i, kind))
	}
	return out
}
