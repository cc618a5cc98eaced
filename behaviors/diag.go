package behaviors

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Diagnostic is one problem found in a behavior or formation file. It names
// the file, the position in it, the path to the offending value (behavior,
// step, field) and what is wrong.
type Diagnostic struct {
	File    string // file name as given to the loader
	Line    int    // 1-based line in the file, 0 if unknown
	Col     int    // 1-based column in the file, 0 if unknown
	Path    string // e.g. `behavior "chat.postMessage" › step 2 › pre_actions[0]`
	Msg     string // what is wrong
	Warning bool   // a warning does not stop the file from loading
}

// String formats the diagnostic as `file:line:col: path: msg`.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Col)
	}
	b.WriteString(": ")
	if d.Warning {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Diagnostics is a list of problems; as an error it reports every error (not
// warning) in it, one per line.
type Diagnostics []Diagnostic

// Error implements error.
func (ds Diagnostics) Error() string {
	var lines []string
	for _, d := range ds {
		if !d.Warning {
			lines = append(lines, d.String())
		}
	}
	if len(lines) == 0 {
		return "no errors"
	}
	return strings.Join(lines, "\n")
}

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if !d.Warning {
			return true
		}
	}
	return false
}

// Warnings returns only the warnings.
func (ds Diagnostics) Warnings() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Warning {
			out = append(out, d)
		}
	}
	return out
}

// diagSink collects diagnostics for one file, turning byte offsets into
// line:col.
type diagSink struct {
	file  string
	data  []byte
	diags Diagnostics
}

func (s *diagSink) lineCol(off int) (int, int) {
	if off < 0 || s.data == nil {
		return 0, 0
	}
	if off > len(s.data) {
		off = len(s.data)
	}
	line, col := 1, 1
	for _, c := range s.data[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

func (s *diagSink) add(off int, path, format string, args ...any) {
	l, c := s.lineCol(off)
	s.diags = append(s.diags, Diagnostic{File: s.file, Line: l, Col: c, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (s *diagSink) warn(off int, path, format string, args ...any) {
	l, c := s.lineCol(off)
	s.diags = append(s.diags, Diagnostic{File: s.file, Line: l, Col: c, Path: path, Msg: fmt.Sprintf(format, args...), Warning: true})
}

// hujsonPos matches the position prefix of hujson's syntax errors.
var hujsonPos = regexp.MustCompile(`^hujson: line (\d+), column (\d+): (.*)$`)

// parseError records a file that is not valid (Hu)JSON at its position.
func (s *diagSink) parseError(err error) {
	var pe *posError
	if errors.As(err, &pe) {
		s.add(pe.off, "", "invalid JSON: %s", strings.TrimPrefix(pe.msg, "json: "))
		return
	}
	if m := hujsonPos.FindStringSubmatch(err.Error()); m != nil {
		l, _ := strconv.Atoi(m[1])
		c, _ := strconv.Atoi(m[2])
		s.diags = append(s.diags, Diagnostic{File: s.file, Line: l, Col: c, Msg: "invalid JSON: " + m[3]})
		return
	}
	s.add(-1, "", "%v", err)
}
