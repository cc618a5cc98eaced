package keeper

import (
	"fmt"
	"strings"

	"github.com/koipond/koipond/keeper/state"

	"github.com/koipond/koipond/keeper/verdict"
)

// thresholdWarnings names threshold keys the run may never report: kinds
// koi do not report (see metricKinds), and api methods no step of the
// behavior set calls (a formation launched over the run may still call
// them).
func thresholdWarnings(ts []*verdict.Threshold, set *setFacts) []string {
	parsed, methods := set != nil && set.parsed, map[string]bool{}
	if parsed {
		methods = set.apiMethods
	}
	var out []string
	seen := map[string]bool{}
	for _, t := range ts {
		if seen[t.Key] {
			continue
		}
		seen[t.Key] = true
		kind, name, _ := strings.Cut(t.Key, ":")
		switch {
		case t.IsFidelity():
		case !verdict.KnownKind(kind):
			out = append(out, fmt.Sprintf("thresholds[%q]: unknown metric kind %q (api:METHOD, ws:connect, event:TYPE, behavior:NAME, …); it fails for lack of data", t.Key, kind))
		case kind == "api" && parsed && !methods[name]:
			out = append(out, fmt.Sprintf("thresholds[%q]: no step of the behavior set calls %s; it fails for lack of data unless a formation does", t.Key, name))
		}
	}
	return out
}

// fieldError is a verdict field error as the API's invalid *Error (nil
// for nil).
func fieldError(e *verdict.FieldError) *Error {
	if e == nil {
		return nil
	}
	return &Error{Code: CodeInvalid, Field: e.Field, Message: e.Message, Err: e.Err}
}

// parseThresholds parses a run spec's thresholds (verdict.ParseThresholds)
// with the API's error.
func parseThresholds(m map[string][]string) ([]*verdict.Threshold, *Error) {
	ts, err := verdict.ParseThresholds(m)
	return ts, fieldError(err)
}

// parseGuardrails parses rules (verdict.ParseGuardrails) with the API's
// error.
func parseGuardrails(field, scope string, rules []state.GuardrailRule) ([]*verdict.Guardrail, *Error) {
	gs, err := verdict.ParseGuardrails(field, scope, rules)
	return gs, fieldError(err)
}
