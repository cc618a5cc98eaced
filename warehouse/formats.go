package warehouse

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// flagOf names the CLI flag that maps a logical column.
var flagOf = [numCols]string{"--user-column", "--method-column", "--timestamp-column", "--team-column",
	"--client-column", "--user-minutes-column", "--active-user-minutes-column"}

// required lists the logical columns a shape needs; team and client are
// needed when filtered on.
func (g *ingest) required(shape Shape) []int {
	cols := []int{colMethod, colUser, colTimestamp}
	if shape == ShapeAggregated {
		cols = []int{colMethod, colUserMinutes, colActiveUserMinutes}
	}
	if len(g.o.Teams) > 0 {
		cols = append(cols, colTeam)
	}
	if len(g.o.Clients) > 0 {
		cols = append(cols, colClient)
	}
	return cols
}

// matchColumn finds a logical column name among the export's: exactly,
// else ignoring case (warehouses like to upper-case names).
func matchColumn(names []string, want string) int {
	for i, n := range names {
		if n == want {
			return i
		}
	}
	for i, n := range names {
		if strings.EqualFold(n, want) {
			return i
		}
	}
	return -1
}

// resolveColumns maps logical columns to positions among names, decides
// the shape on the first part, and says which required column is missing.
func (g *ingest) resolveColumns(obj string, names []string, what string) ([numCols]int, error) {
	var idx [numCols]int
	for c := range numCols {
		idx[c] = matchColumn(names, g.names[c])
	}
	if err := g.decideShape(obj, idx[colUserMinutes] >= 0 && idx[colActiveUserMinutes] >= 0); err != nil {
		return idx, err
	}
	for _, c := range g.required(g.parser.shape) {
		if idx[c] < 0 {
			why := ""
			switch c {
			case colTeam:
				why = " (needed by the team filter)"
			case colClient:
				why = " (needed by the client filter)"
			}
			return idx, fmt.Errorf("%s: column %q not found in the %s%s: it has %s; name the right one with %s",
				obj, g.names[c], what, why, listNames(names), flagOf[c])
		}
	}
	return idx, nil
}

// listNames quotes the first names of a header or schema, about 200
// bytes of them at most: a message never carries more of a part.
func listNames(names []string) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		if b.Len() > 200-maxQuoted {
			fmt.Fprintf(&b, "… (%d columns)", len(names))
			break
		}
		b.WriteString(clip(n))
	}
	return b.String()
}

// readCSV reads one CSV part. Lines and rows are bounded by MaxLineBytes
// (see csvLines), the values read by MaxFieldBytes.
func (g *ingest) readCSV(ctx context.Context, obj string, r io.Reader, comma rune) error {
	lr := newCSVLines(g.lineBuf, r, g.o.MaxLineBytes)
	g.lineBuf = lr.br
	cr := csv.NewReader(lr)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	cr.Comma = comma
	header, err := cr.Read()
	lr.rowStart = cr.InputOffset()
	if err == io.EOF {
		return nil // an empty part
	}
	if err != nil {
		var tl *csvTooLong
		if errors.As(err, &tl) {
			return g.csvTooLong(obj, 0, tl, nil, comma)
		}
		if errors.Is(err, ErrLimit) {
			return err
		}
		return fmt.Errorf("%s: reading the CSV header: %w", obj, err)
	}
	names := make([]string, len(header))
	for i, h := range header {
		names[i] = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
	}
	idx, err := g.resolveColumns(obj, names, "CSV header")
	if err != nil {
		return err
	}
	var rec record
	for n := int64(1); ; n++ {
		fields, err := cr.Read()
		lr.rowStart = cr.InputOffset()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var tl *csvTooLong
			if errors.As(err, &tl) {
				return g.csvTooLong(obj, n, tl, names, comma)
			}
			var pe *csv.ParseError
			if errors.Is(err, ErrLimit) {
				return err
			}
			if !errors.As(err, &pe) {
				return fmt.Errorf("%s: row %d: %w", obj, n, err)
			}
			if err := g.bad(&RowError{Object: obj, Row: n, Line: int64(pe.StartLine), Reason: ReasonMalformed, Msg: pe.Err.Error()}); err != nil {
				return err
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		if len(fields) != len(names) {
			if len(fields) == 1 && fields[0] == "" {
				continue // a blank line
			}
			if err := g.bad(&RowError{Object: obj, Row: n, Line: int64(line), Reason: ReasonMalformed,
				Msg: fmt.Sprintf("%d fields, but the header has %d", len(fields), len(names))}); err != nil {
				return err
			}
			continue
		}
		rec.reset()
		for c := range numCols {
			if i := idx[c]; i >= 0 {
				rec.vals[c], rec.has[c] = fields[i], true
			}
		}
		if c := g.overField(&rec); c >= 0 {
			if err := g.bad(g.fieldTooLong(obj, n, int64(line), names[idx[c]], len(rec.vals[c]))); err != nil {
				return err
			}
			continue
		}
		if err := g.row(ctx, obj, n, int64(line), &rec); err != nil {
			return err
		}
	}
}

// overField is the first logical column whose value is over
// MaxFieldBytes, or -1.
func (g *ingest) overField(rec *record) int {
	for c := range numCols {
		if len(rec.vals[c]) > g.o.MaxFieldBytes {
			return c
		}
	}
	return -1
}

func (g *ingest) fieldTooLong(obj string, row, line int64, column string, size int) *RowError {
	return &RowError{Object: obj, Row: row, Line: line, Column: short(column), Reason: ReasonTooLong,
		Msg: fmt.Sprintf("a value of %s is longer than the %s limit on a value (MaxFieldBytes, --max-field-bytes)",
			byteSize(int64(size)), limitWords(int64(g.o.MaxFieldBytes)))}
}

// csvTooLong names the row, line and column of a CSV line or row over
// MaxLineBytes (row 0 is the header).
func (g *ingest) csvTooLong(obj string, row int64, tl *csvTooLong, names []string, comma rune) error {
	e := &RowError{Object: obj, Row: row, Line: tl.line, Reason: ReasonTooLong}
	limit := limitWords(int64(g.o.MaxLineBytes))
	switch {
	case tl.prefix == nil:
		e.Msg = fmt.Sprintf("the row runs across lines past the %s limit on a row: a quoted field left open? (MaxLineBytes, --max-line-bytes)", limit)
	case tl.atRowStart:
		f := csvFieldAt(tl.prefix, comma)
		if f < len(names) {
			e.Column = short(names[f])
		} else {
			e.Column = fmt.Sprintf("field %d", f+1)
		}
		e.Msg = fmt.Sprintf("the line passes the %s limit on a line in this column: is this really CSV? (MaxLineBytes, --max-line-bytes)", limit)
	default:
		e.Msg = fmt.Sprintf("the line, inside a quoted field that spans lines, is longer than the %s limit on a line (MaxLineBytes, --max-line-bytes)", limit)
	}
	return e
}

// readJSONLines reads one JSON-lines part. Lines are bounded by
// MaxLineBytes, the values read by MaxFieldBytes.
func (g *ingest) readJSONLines(ctx context.Context, obj string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	maxLine := g.o.MaxLineBytes
	var long []byte
	var rec record
	n := int64(0)
	for line := int64(1); ; line++ {
		b, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], b...)
			for err == bufio.ErrBufferFull && len(long) <= maxLine {
				b, err = br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if contentLen(b) > maxLine {
			key := jsonKeyAt(b[:maxLine])
			return &RowError{Object: obj, Row: n + 1, Line: line, Column: short(key), Reason: ReasonTooLong,
				Msg: fmt.Sprintf("the line is longer than the %s limit on a line: is this really JSON lines? (MaxLineBytes, --max-line-bytes)",
					limitWords(int64(maxLine)))}
		}
		if err != nil && err != io.EOF {
			if errors.Is(err, ErrLimit) {
				return err
			}
			return fmt.Errorf("%s: line %d: %w", obj, line, err)
		}
		if t := trimSpace(b); len(t) > 0 {
			n++
			if !g.shapeDecided() {
				ok := func(k string) bool {
					return jsonHasKey(t, k)
				}
				if err := g.decideShape(obj, ok(g.names[colUserMinutes]) && ok(g.names[colActiveUserMinutes])); err != nil {
					return err
				}
			}
			rec.reset()
			if col, msg := parseJSONRecord(t, &g.names, &rec); msg != "" {
				column := ""
				if col >= 0 {
					column = g.names[col]
				}
				if err := g.bad(&RowError{Object: obj, Row: n, Line: line, Column: column, Reason: ReasonMalformed, Msg: msg}); err != nil {
					return err
				}
			} else if c := g.overField(&rec); c >= 0 {
				if err := g.bad(g.fieldTooLong(obj, n, line, g.names[c], len(rec.vals[c]))); err != nil {
					return err
				}
			} else if err := g.row(ctx, obj, n, line, &rec); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

func jsonHasKey(line []byte, key string) bool {
	var rec record
	names := [numCols]string{key, "\x00", "\x00", "\x00", "\x00", "\x00", "\x00"}
	if _, msg := parseJSONRecord(line, &names, &rec); msg != "" {
		return false
	}
	return rec.has[0]
}

// parseJSONRecord reads one JSON object, keeping the scalar values of the
// keys in names (exact match first, else ignoring case). Strings in rec
// alias line unless they had escapes. On failure it returns the logical
// column at fault (or -1) and a message.
func parseJSONRecord(line []byte, names *[numCols]string, rec *record) (int, string) {
	p := jsonScanner{b: line}
	p.ws()
	if !p.eat('{') {
		return -1, "not a JSON object"
	}
	var exact [numCols]bool
	p.ws()
	if p.eat('}') {
		return -1, p.end()
	}
	for {
		p.ws()
		key, ok := p.str()
		if !ok {
			return -1, fmt.Sprintf("bad object key at byte %d", p.i+1)
		}
		p.ws()
		if !p.eat(':') {
			return -1, fmt.Sprintf("want ':' at byte %d", p.i+1)
		}
		p.ws()
		col, isExact := -1, false
		for c := range numCols {
			if names[c] == key {
				col, isExact = c, true
				break
			}
		}
		if col < 0 {
			for c := range numCols {
				if strings.EqualFold(names[c], key) && !exact[c] {
					col = c
					break
				}
			}
		}
		if col >= 0 && (isExact || !rec.has[col]) {
			v, kind, msg := p.value()
			if msg != "" {
				return col, msg
			}
			switch kind {
			case 'n': // null: absent
				rec.has[col], rec.vals[col] = false, ""
			case '{', '[':
				return col, fmt.Sprintf("a JSON %s, want a string or a number", map[byte]string{'{': "object", '[': "array"}[kind])
			default:
				rec.vals[col], rec.has[col] = v, true
			}
			exact[col] = exact[col] || isExact
		} else if _, _, msg := p.value(); msg != "" {
			return -1, msg
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return -1, p.end()
		}
		return -1, fmt.Sprintf("want ',' or '}' at byte %d", p.i+1)
	}
}

type jsonScanner struct {
	b []byte
	i int
}

func (p *jsonScanner) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\r' || p.b[p.i] == '\n') {
		p.i++
	}
}

func (p *jsonScanner) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonScanner) end() string {
	p.ws()
	if p.i != len(p.b) {
		return fmt.Sprintf("unexpected %q after the object at byte %d", p.b[p.i], p.i+1)
	}
	return ""
}

// str reads a JSON string; without escapes it aliases the line. Invalid
// UTF-8 becomes U+FFFD, as encoding/json does.
func (p *jsonScanner) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start, esc := p.i, false
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '\\':
			esc = true
			p.i += 2
			continue
		case c == '"':
			raw := p.b[start:p.i]
			p.i++
			if !esc && utf8.Valid(raw) {
				return unsafe.String(unsafe.SliceData(raw), len(raw)), true
			}
			var s string
			if err := json.Unmarshal(p.b[start-1:p.i], &s); err != nil {
				return "", false
			}
			return s, true
		case c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

// value reads any JSON value: kind is '"' (string), '0' (number, true or
// false, as text), 'n' (null), '{' or '[' (skipped).
func (p *jsonScanner) value() (string, byte, string) {
	if p.i >= len(p.b) {
		return "", 0, "unexpected end of line: want a value"
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s, ok := p.str()
		if !ok {
			return "", 0, fmt.Sprintf("bad string at byte %d", p.i+1)
		}
		return s, '"', ""
	case c == '{' || c == '[':
		depth := 0
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '"':
				if _, ok := p.str(); !ok {
					return "", 0, fmt.Sprintf("bad string at byte %d", p.i+1)
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			p.i++
			if depth == 0 {
				return "", c, ""
			}
		}
		return "", 0, "unclosed object or array"
	default:
		start := p.i
		for p.i < len(p.b) && strings.IndexByte("0123456789+-.eEtrufalsn", p.b[p.i]) >= 0 {
			p.i++
		}
		lit := p.b[start:p.i]
		s := unsafe.String(unsafe.SliceData(lit), len(lit))
		switch {
		case s == "null":
			return "", 'n', ""
		case s == "true" || s == "false":
			return s, '0', ""
		case len(s) > 0 && json.Valid(lit):
			return s, '0', ""
		}
		return "", 0, fmt.Sprintf("bad value at byte %d", start+1)
	}
}
