package formations

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/koipond/koipond/behaviors"
)

// Bounds on declared launch parameters.
const (
	// MaxParams is the most parameters a formation may declare.
	MaxParams = 32
	// MaxParamValue is the longest parameter value (default or given).
	MaxParamValue = 4096
	// MaxParamDoc is the longest parameter doc.
	MaxParamDoc = 1024
)

// paramName is what a parameter may be called: what get can read as a
// plain word, short.
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// Param is one launch parameter a formation declares: the launch must give
// it when Required, else Default fills in. Its value is readable in the
// sequence with get or param.
type Param struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
	Default  string `json:"default,omitempty"`
	Doc      string `json:"doc,omitempty"`
}

// ParamError says what is wrong with a launch's parameters: which
// required ones are missing and which given ones the formation does not
// declare, with the declared list for the message.
type ParamError struct {
	Formation string
	Missing   []string
	Unknown   []string
	Declared  []Param
}

func (e *ParamError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("missing required %s %s", plural(len(e.Missing), "parameter"), strings.Join(e.Missing, ", ")))
	}
	if len(e.Unknown) > 0 {
		parts = append(parts, fmt.Sprintf("unknown %s %s", plural(len(e.Unknown), "parameter"), strings.Join(e.Unknown, ", ")))
	}
	msg := fmt.Sprintf("formation %q: %s", e.Formation, strings.Join(parts, "; "))
	if len(e.Declared) == 0 {
		return msg + " (it declares no parameters)"
	}
	return msg + "; it declares: " + DescribeParams(e.Declared)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// DescribeParams lists parameters on one line: name (required) or
// name=default, each with its doc.
func DescribeParams(ps []Param) string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		s := p.Name
		switch {
		case p.Required:
			s += " (required)"
		case p.Default != "":
			s += fmt.Sprintf(" (default %q)", p.Default)
		default:
			s += " (optional)"
		}
		if p.Doc != "" {
			s += ": " + p.Doc
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

// ResolveParams checks a launch's parameters against the declared ones and
// returns them with defaults filled in. A formation that declares no
// parameters at all (no "params" field, as before parameters were
// declared) takes whatever it is given, unchanged. Otherwise every
// required parameter must be given (non-empty) and every given one must be
// declared; the error is a *ParamError naming all of them.
func (f *Formation) ResolveParams(given map[string]string) (map[string]string, error) {
	if !f.ParamsDeclared {
		return given, nil
	}
	e := &ParamError{Formation: f.Name, Declared: f.Params}
	out := make(map[string]string, len(f.Params))
	for _, p := range f.Params {
		v, ok := given[p.Name]
		switch {
		case ok && v != "":
			out[p.Name] = v
		case p.Required:
			e.Missing = append(e.Missing, p.Name)
		case p.Default != "":
			out[p.Name] = p.Default
		}
	}
	for k := range given {
		if !slices.ContainsFunc(f.Params, func(p Param) bool { return p.Name == k }) {
			e.Unknown = append(e.Unknown, k)
		}
	}
	sort.Strings(e.Unknown)
	if len(e.Missing) > 0 || len(e.Unknown) > 0 {
		return nil, e
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// parseParams validates the "params" field: a list of
// {name, required, default, doc} objects, names unique.
func parseParams(fd behaviors.Field, bad func(path, format string, args ...any)) []Param {
	list, ok := fd.Value.([]any)
	if !ok {
		bad("params", "must be a list of {\"name\", \"required\", \"default\", \"doc\"} objects")
		return nil
	}
	if len(list) > MaxParams {
		bad("params", "%d parameters; at most %d", len(list), MaxParams)
		return nil
	}
	out := make([]Param, 0, len(list))
	seen := map[string]bool{}
	for i, v := range list {
		at := fmt.Sprintf("params[%d]", i)
		m, ok := v.(map[string]any)
		if !ok {
			bad(at, "must be an object with \"name\" and optionally \"required\", \"default\", \"doc\"")
			continue
		}
		var p Param
		good := true
		for k := range m {
			switch k {
			case "name", "required", "default", "doc":
			default:
				bad(at+"."+k, "unknown field %q (known: name, required, default, doc)", short(k))
				good = false
			}
		}
		switch s, ok := m["name"].(string); {
		case !ok:
			bad(at+".name", "missing or not a string: give the name the sequence reads with get")
			good = false
		case !paramName.MatchString(s):
			bad(at+".name", "%q is not a parameter name (a letter or _, then letters, digits, _ . -, at most 64)", short(s))
			good = false
		case seen[s]:
			bad(at+".name", "%q is declared twice", s)
			good = false
		default:
			seen[s] = true
			p.Name = s
		}
		if r, ok := m["required"]; ok {
			if b, ok := r.(bool); ok {
				p.Required = b
			} else {
				bad(at+".required", "must be true or false")
				good = false
			}
		}
		if d, ok := m["default"]; ok {
			if s, ok := d.(string); !ok {
				bad(at+".default", "must be a string")
				good = false
			} else if len(s) > MaxParamValue {
				bad(at+".default", "%d bytes; at most %d", len(s), MaxParamValue)
				good = false
			} else {
				p.Default = s
			}
		}
		if p.Required && p.Default != "" {
			bad(at+".default", "a required parameter has no default: drop one of them")
			good = false
		}
		if d, ok := m["doc"]; ok {
			if s, ok := d.(string); !ok {
				bad(at+".doc", "must be a string")
				good = false
			} else if len(s) > MaxParamDoc {
				bad(at+".doc", "%d bytes; at most %d", len(s), MaxParamDoc)
				good = false
			} else {
				p.Doc = s
			}
		}
		if good {
			out = append(out, p)
		}
	}
	return out
}

// short quotes at most a short prefix of s back.
func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
