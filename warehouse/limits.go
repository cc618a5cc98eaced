package warehouse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// ErrLimit is wrapped by every error of a part that breaks a reading
// limit: a line, a row or a value too long (a RowError with ReasonTooLong),
// or a decompression past MaxRatio or MaxInflatedBytes. Such a part stops
// the run even with SkipBadRows: what follows cannot be trusted to be
// rows.
var ErrLimit = errors.New("over a reading limit")

// maxQuoted is the most bytes of an export that one message quotes.
const maxQuoted = 60

// clip quotes at most maxQuoted bytes of v (whole runes), marking a cut.
func clip(v string) string {
	if s := short(v); len(s) != len(v) {
		return strconv.Quote(s[:len(s)-len("…")]) + "…"
	}
	return strconv.Quote(v)
}

// short cuts v to maxQuoted bytes (whole runes), marking a cut; for
// values that a message quotes itself.
func short(v string) string {
	if len(v) <= maxQuoted {
		return v
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "…"
}

// limitWords names a limit in messages: "1.0 MiB (1048576 bytes)".
func limitWords(n int64) string {
	return fmt.Sprintf("%s (%d bytes)", byteSize(n), n)
}

// inflateGuard stops a decompressing reader that inflates past ratio × the
// compressed bytes read so far plus inflateFloor, or past max bytes.
type inflateGuard struct {
	r     io.Reader
	in    func() int64 // compressed bytes read so far
	out   int64
	ratio int64
	max   int64
	obj   string
	kind  string // gzip, zstd
	err   error
}

func (g *inflateGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	g.out += int64(n)
	in := g.in()
	switch {
	case g.out > g.max:
		g.err = fmt.Errorf("%s: %w: %s inflates past the %s limit on one part (MaxInflatedBytes, --max-inflated-bytes)",
			g.obj, ErrLimit, g.kind, limitWords(g.max))
	case g.out > g.ratio*in+inflateFloor:
		g.err = fmt.Errorf("%s: %w: %s inflates to %s from %s compressed, past %d× plus %s: a decompression bomb? (MaxRatio, --max-ratio)",
			g.obj, ErrLimit, g.kind, byteSize(g.out), byteSize(in), g.ratio, byteSize(inflateFloor))
	}
	if g.err != nil {
		return 0, g.err
	}
	return n, err
}

// csvLines feeds a csv.Reader whole lines, none longer than max bytes, and
// stops a row whose quoted fields span lines once it passes max bytes. It
// holds at most one line, so the CSV reader never buffers more than about
// max bytes of a hostile part.
//
// The CSV reader asks for more input only when it has consumed every line
// handed out, and a long line is refused at its start: so when a limit
// error comes out of the CSV reader, the row it was reading is the row at
// fault, and every byte handed out before it is consumed.
type csvLines struct {
	br  *bufio.Reader // max+2 bytes: a line and its \r\n
	max int
	// rowStart is where the row being read starts (the CSV reader's
	// InputOffset after the last row): the caller sets it after each row.
	rowStart int64

	pend  []byte // the rest of the line being handed out
	off   int64  // bytes handed out
	lines int64  // lines fetched
	blank int64  // bytes of blank lines just before off (the CSV reader skips them)
	err   error  // the error to return once pend is handed out
}

// csvTooLong is what csvLines returns for a line or row over the limit;
// the caller turns it into a RowError naming the row.
type csvTooLong struct {
	line       int64  // 1-based line at fault (the row's last line for a row)
	prefix     []byte // the long line's first max bytes; nil for a row
	atRowStart bool   // the long line starts a row (fields count from 0)
}

func (e *csvTooLong) Error() string { return "line " + strconv.FormatInt(e.line, 10) + " is too long" }

func newCSVLines(br *bufio.Reader, r io.Reader, max int) *csvLines {
	if br == nil || br.Size() < max+2 {
		br = bufio.NewReaderSize(r, max+2)
	} else {
		br.Reset(r)
	}
	return &csvLines{br: br, max: max}
}

func (l *csvLines) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(l.pend) == 0 {
			if l.err != nil {
				break
			}
			if n == 0 && l.off-l.blank-l.rowStart > int64(l.max) {
				// Every byte handed out is consumed and the row has not
				// ended: a quoted field runs across lines past the limit.
				l.err = &csvTooLong{line: l.lines}
				break
			}
			if n == 0 && len(p) <= l.max {
				// The fast path: the whole lines already buffered that
				// fit, in one copy. Each is shorter than p, so within
				// the limit.
				data, _ := l.br.Peek(min(l.br.Buffered(), len(p)))
				if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
					chunk := data[:i+1]
					n = copy(p, chunk)
					l.lines += int64(bytes.Count(chunk, newline))
					l.noteBlank(chunk)
					l.off += int64(n)
					l.br.Discard(n)
					return n, nil
				}
			}
			line, err := l.br.ReadSlice('\n')
			if err == bufio.ErrBufferFull || contentLen(line) > l.max {
				// Whether it starts a row is known once the CSV reader
				// has consumed the lines before it: see below.
				l.err = &csvTooLong{line: l.lines + 1, prefix: line[:min(len(line), l.max)]}
				break
			}
			if len(line) > 0 {
				l.lines++
				if contentLen(line) == 0 {
					l.blank += int64(len(line))
				} else {
					l.blank = 0
				}
			}
			if err != nil {
				l.err = err
			}
			l.pend = line
			continue
		}
		c := copy(p[n:], l.pend)
		n += c
		l.pend = l.pend[c:]
		l.off += int64(c)
	}
	if n > 0 {
		return n, nil
	}
	if tl, ok := l.err.(*csvTooLong); ok && tl.prefix != nil {
		tl.atRowStart = l.off-l.blank == l.rowStart
	}
	return 0, l.err
}

var newline = []byte{'\n'}

// noteBlank updates blank for whole lines handed out: the bytes of the
// blank lines ("\n", "\r\n") that end them.
func (l *csvLines) noteBlank(lines []byte) {
	i := len(lines)
	for {
		switch {
		case i >= 1 && lines[i-1] == '\n' && (i == 1 || lines[i-2] == '\n'):
			i--
			continue
		case i >= 2 && lines[i-1] == '\n' && lines[i-2] == '\r' && (i == 2 || lines[i-3] == '\n'):
			i -= 2
			continue
		}
		break
	}
	if i == 0 {
		l.blank += int64(len(lines))
	} else {
		l.blank = int64(len(lines) - i)
	}
}

// contentLen is a line's length without its \n or \r\n.
func contentLen(line []byte) int {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	return n
}

// csvFieldAt is the 0-based field that the end of b falls in, b being the
// start of a CSV row.
func csvFieldAt(b []byte, comma rune) int {
	var sep [utf8.UTFMax]byte
	sl := utf8.EncodeRune(sep[:], comma)
	field, quoted, start := 0, false, true
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case quoted:
			if c == '"' {
				if i+1 < len(b) && b[i+1] == '"' {
					i++
				} else {
					quoted = false
				}
			}
		case c == sep[0] && i+sl <= len(b) && string(b[i:i+sl]) == string(sep[:sl]):
			field++
			start = true
			i += sl - 1
			continue
		case c == '"' && start:
			quoted = true
		}
		start = false
	}
	return field
}

// jsonKeyAt is the key whose value the end of b falls in, b being the start
// of a JSON object ("" when it falls outside any value).
func jsonKeyAt(b []byte) string {
	p := jsonScanner{b: b}
	p.ws()
	if !p.eat('{') {
		return ""
	}
	key := ""
	for {
		p.ws()
		k, ok := p.str()
		if !ok {
			return "" // cut inside a key, or not a key
		}
		key = k
		p.ws()
		if !p.eat(':') {
			return key
		}
		p.ws()
		if _, _, msg := p.value(); msg != "" {
			return key
		}
		p.ws()
		if !p.eat(',') {
			return key
		}
	}
}
