// Package formations is koipond's thundering-herd language: the formation
// file format ("percent of all connected koi each start this sequence at a
// uniformly random moment within begin_within_secs of the launch"), its
// validation, and launch planning (exactly how many koi start, on which
// school, and when).
package formations

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/koipond/koipond/behaviors"
)

// MaxBeginWithin is the longest launch window accepted (one day).
const MaxBeginWithin = 24 * time.Hour

// MaxName is the longest formation name, in bytes, as for every name the
// keeper stores. A name travels in every poll reply while its launch is
// pending and names its metric keys ("formation:<name>#<launch id>:N"); a
// reply out of its bounds would be ignored by every school.
const MaxName = 200

// Formation is a loaded, validated, compiled formation.
type Formation struct {
	Name string
	// BeginWithin is the window in which chosen koi start (before time
	// scaling).
	BeginWithin time.Duration
	// Percent of all connected koi that take part, in (0, 100].
	Percent float64
	// percent exactly as written, for exact counts.
	percent *big.Rat
	// Sequence is what each chosen koi runs; launch parameters are readable
	// in it with get.
	Sequence *behaviors.Sequence
	// Doc is the optional description.
	Doc string
	// Params are the launch parameters the formation declares, in file
	// order; ParamsDeclared is false when the file has no "params" field
	// (then any parameters are accepted, see ResolveParams).
	Params         []Param
	ParamsDeclared bool
}

// Load reads and parses one formation file.
func Load(path string) (*Formation, behaviors.Diagnostics) {
	files, err := behaviors.ReadFiles(path)
	if err != nil {
		return nil, behaviors.Diagnostics{{File: path, Msg: err.Error()}}
	}
	return Parse(files[0])
}

// Parse decodes, validates and compiles a formation. It returns every
// problem found; the formation is nil when any is an error.
func Parse(f behaviors.File) (*Formation, behaviors.Diagnostics) {
	fields, seq, diags := behaviors.ParseWithSequence(f, "sequence", "name", "doc", "begin_within_secs", "percent", "params")
	if fields == nil {
		return nil, diags
	}
	fm := &Formation{Sequence: seq}
	bad := func(k, format string, args ...any) {
		fd := fields[k]
		diags = append(diags, behaviors.Diagnostic{File: f.Name, Line: fd.Line, Col: fd.Col, Path: k, Msg: fmt.Sprintf(format, args...)})
	}
	// badAt reports a problem inside a field, positioned at the field.
	badAt := func(k string) func(path, format string, args ...any) {
		return func(path, format string, args ...any) {
			fd := fields[k]
			diags = append(diags, behaviors.Diagnostic{File: f.Name, Line: fd.Line, Col: fd.Col, Path: path, Msg: fmt.Sprintf(format, args...)})
		}
	}
	missing := func(k, what string) {
		diags = append(diags, behaviors.Diagnostic{File: f.Name, Line: 1, Col: 1, Path: "top level", Msg: fmt.Sprintf("missing %q (%s)", k, what)})
	}
	if fd, ok := fields["name"]; !ok {
		missing("name", "what the UI and reports call this formation")
	} else if s, ok := fd.Value.(string); !ok || s == "" {
		bad("name", "must be a non-empty string")
	} else if len(s) > MaxName {
		bad("name", "is %d bytes long; at most %d", len(s), MaxName)
	} else if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		bad("name", "has a control character (%U) at byte %d", r, i)
	} else {
		fm.Name = s
	}
	if fd, ok := fields["doc"]; ok {
		if s, ok := fd.Value.(string); ok {
			fm.Doc = s
		} else {
			bad("doc", "must be a string")
		}
	}
	if fd, ok := fields["begin_within_secs"]; !ok {
		missing("begin_within_secs", "the launch window in seconds")
	} else if n, ok := fd.Value.(json.Number); !ok {
		bad("begin_within_secs", "must be a number of seconds")
	} else if v, err := n.Float64(); err != nil || math.IsNaN(v) || v < 0 || v > MaxBeginWithin.Seconds() {
		bad("begin_within_secs", "%s is outside [0, %.0f] seconds", n, MaxBeginWithin.Seconds())
	} else {
		fm.BeginWithin = time.Duration(v * float64(time.Second))
	}
	if fd, ok := fields["percent"]; !ok {
		missing("percent", "the share of connected koi that take part, 0–100")
	} else if n, ok := fd.Value.(json.Number); !ok {
		bad("percent", "must be a number between 0 and 100")
	} else if v, err := n.Float64(); err != nil || !(v > 0 && v <= 100) {
		// checked as a float first: big.Rat would expand an exponent such
		// as 1e-99999999 into a number of that many digits
		bad("percent", "%s is outside (0, 100]", n)
	} else if r, ok := new(big.Rat).SetString(n.String()); !ok || r.Sign() <= 0 || r.Cmp(big.NewRat(100, 1)) > 0 {
		bad("percent", "%s is outside (0, 100]", n)
	} else {
		fm.percent = r
		fm.Percent, _ = r.Float64()
	}
	if fd, ok := fields["params"]; ok {
		fm.Params, fm.ParamsDeclared = parseParams(fd, badAt("params")), true
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return fm, diags
}

// Count returns how many of total connected koi take part: percent × total
// rounded half up, computed exactly from the percent as written.
func (f *Formation) Count(total int) int {
	p := f.percent
	if p == nil {
		p = new(big.Rat).SetFloat64(f.Percent)
		if p == nil {
			return 0
		}
	}
	return countOf(p, total)
}

// countOf is floor(total × p / 100 + 1/2), exactly.
func countOf(p *big.Rat, total int) int {
	if total <= 0 {
		return 0
	}
	x := new(big.Rat).Mul(p, big.NewRat(int64(total), 100))
	x.Add(x, big.NewRat(1, 2))
	q := new(big.Int).Quo(x.Num(), x.Denom()) // both positive: floor
	n := int(q.Int64())
	return min(n, total)
}
