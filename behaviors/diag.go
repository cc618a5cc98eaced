package behaviors

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
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
	// lines holds the offset of each line's first byte, computed once on
	// first use so that every lookup is a binary search: a file with many
	// templates costs linear time, not quadratic.
	lines []int
	// dropped counts the diagnostics past MaxDiagnostics.
	dropped, droppedErrors int
}

// MaxDiagnostics is the most diagnostics reported for one file: a file with
// a million bad fields gets a hundred messages and a count, not a
// hundred-megabyte error.
const MaxDiagnostics = 100

// result returns the file's diagnostics, with one more that counts those
// left out.
func (s *diagSink) result() Diagnostics {
	if s.dropped == 0 {
		return s.diags
	}
	return append(s.diags[:len(s.diags):len(s.diags)], Diagnostic{File: s.file, Warning: s.droppedErrors == 0,
		Msg: fmt.Sprintf("%d more problems (%d errors) not shown", s.dropped, s.droppedErrors)})
}

// full reports whether the sink holds MaxDiagnostics already, counting
// the one being added.
func (s *diagSink) full(warning bool) bool {
	if len(s.diags) < MaxDiagnostics {
		return false
	}
	s.dropped++
	if !warning {
		s.droppedErrors++
	}
	return true
}

func (s *diagSink) lineCol(off int) (int, int) {
	if off < 0 || s.data == nil {
		return 0, 0
	}
	if off > len(s.data) {
		off = len(s.data)
	}
	if s.lines == nil {
		s.lines = lineStarts(s.data)
	}
	// the last line starting at or before off
	i := sort.SearchInts(s.lines, off+1) - 1
	return i + 1, off - s.lines[i] + 1
}

// lineStarts returns the offset of every line's first byte.
func lineStarts(data []byte) []int {
	starts := make([]int, 1, 1+bytes.Count(data, []byte{'\n'}))
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return starts
		}
		i += j + 1
		starts = append(starts, i)
	}
}

// maxDiagText bounds a diagnostic's path and message: whatever they quote
// from the input, an error never echoes more than about this much of it.
const maxDiagText = 1024

func (s *diagSink) add(off int, path, format string, args ...any) {
	if s.full(false) {
		return
	}
	l, c := s.lineCol(off)
	s.diags = append(s.diags, Diagnostic{File: s.file, Line: l, Col: c, Path: clipTo(path, maxDiagText), Msg: clipTo(fmt.Sprintf(format, args...), maxDiagText)})
}

func (s *diagSink) warn(off int, path, format string, args ...any) {
	if s.full(true) {
		return
	}
	l, c := s.lineCol(off)
	s.diags = append(s.diags, Diagnostic{File: s.file, Line: l, Col: c, Path: clipTo(path, maxDiagText), Msg: clipTo(fmt.Sprintf(format, args...), maxDiagText), Warning: true})
}

// parseError records a file that is not valid (Hu)JSON at its position.
func (s *diagSink) parseError(err error) {
	var pe *posError
	if errors.As(err, &pe) {
		s.add(pe.off, "", "invalid JSON: %s", strings.TrimPrefix(pe.msg, "json: "))
		return
	}
	s.add(-1, "", "%v", err)
}

// MaxQuote is the most bytes of input an error message quotes.
const MaxQuote = 200

// clip shortens s to at most MaxQuote bytes, cut on a UTF-8 boundary and
// marked with an ellipsis, for quoting input back in messages.
func clip(s string) string { return clipTo(s, MaxQuote) }

// clipTo shortens s to at most n bytes (plus the ellipsis), on a UTF-8
// boundary.
func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quote is %q of clip(s): how every message quotes a piece of input.
func quote(s string) string { return strconv.Quote(clip(s)) }

// Clip is clip for other packages: at most MaxQuote bytes of s, cut on a
// UTF-8 boundary, with an ellipsis when cut.
func Clip(s string) string { return clip(s) }

// ClipTo is clipTo for other packages: at most n bytes of s, cut on a
// UTF-8 boundary, then an ellipsis when cut.
func ClipTo(s string, n int) string { return clipTo(s, n) }
