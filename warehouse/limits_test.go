package warehouse

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
)

// hostilePart is a part made on the fly: head, then fill called for each
// block until total bytes are written or the reader stops reading;
// compressed with gzip, zstd or not at all. Nothing big is ever held:
// the 1 GB-line attack is written only as far as it is read.
type hostilePart struct {
	pr   *io.PipeReader
	pw   *io.PipeWriter
	done chan struct{}
	// written counts the uncompressed bytes made.
	written int64
}

func newHostilePart(t testing.TB, compress string, head []byte, total int64, fill func(block []byte)) *hostilePart {
	t.Helper()
	pr, pw := io.Pipe()
	h := &hostilePart{pr: pr, pw: pw, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var w io.WriteCloser
		switch compress {
		case "gzip":
			w = gzip.NewWriter(pw)
		case "zstd":
			zw, err := zstd.NewWriter(pw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			w = zw
		default:
			w = nopWriteCloser{pw}
		}
		if _, err := w.Write(head); err != nil {
			return
		}
		h.written = int64(len(head))
		block := make([]byte, 64<<10)
		for h.written < total {
			fill(block)
			n := int(min(int64(len(block)), total-h.written))
			if _, err := w.Write(block[:n]); err != nil {
				return // the reader stopped
			}
			h.written += int64(n)
		}
		if err := w.Close(); err != nil {
			return
		}
		pw.Close()
	}()
	t.Cleanup(func() { h.Close() })
	return h
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

func (h *hostilePart) Read(p []byte) (int, error) { return h.pr.Read(p) }

// Close stops the writer and waits for it.
func (h *hostilePart) Close() error {
	h.pr.Close()
	<-h.done
	return nil
}

// letters fills a block with random lower-case letters: text that gzip
// shrinks by less than 2×, so no ratio guard stops it.
func letters(r *rand.Rand) func([]byte) {
	return func(b []byte) {
		for i := range b {
			b[i] = 'a' + byte(r.IntN(26))
		}
	}
}

// repeat fills blocks with one row again and again (rows cut at the
// block's end unless their length divides 64 KiB): a ratio of about 1000×
// under gzip.
func repeat(row string) func([]byte) {
	return func(b []byte) {
		for i := 0; i < len(b); i += copy(b[i:], row) {
		}
	}
}

// readPart reads one part as Generate would, with options o.
func readPart(t testing.TB, o Options, name string, rc io.ReadCloser) (*ingest, error) {
	t.Helper()
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatalf("options: %v", errs)
	}
	d := o.withDefaults()
	tmp := t.TempDir()
	g := newIngest(&d, nil, tmp)
	t.Cleanup(g.cnt.cleanup)
	_, err := g.readObject(context.Background(), object{name: name, open: func(context.Context) (io.ReadCloser, error) { return rc, nil }}, tmp)
	return g, err
}

// wantRowError checks that err is a RowError over a limit at the given
// place, matching ErrLimit.
func wantRowError(t *testing.T, err error, obj string, row, line int64, column string, says ...string) {
	t.Helper()
	var re *RowError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a RowError", err, err)
	}
	if re.Object != obj || re.Row != row || re.Line != line || re.Column != column || re.Reason != ReasonTooLong {
		t.Errorf("error at %s row %d line %d column %q (%s), want %s row %d line %d column %q (too long): %v",
			re.Object, re.Row, re.Line, re.Column, re.Reason, obj, row, line, column, err)
	}
	if !errors.Is(err, ErrLimit) {
		t.Errorf("error %v does not match ErrLimit", err)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

// The attack: a CSV part whose second line is 1 GB (a few MB gzipped).
// Reading stops after about MaxLineBytes, with an error naming the part,
// row, line, column and limit, and the heap stays small: the reader never
// buffers more than the limit.
func TestCSVGigabyteLine(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		row, line  int64
		column     string
	}{
		// The long value is the first field of the first row.
		{"first field", "user,method,timestamp\n", 1, 2, "user"},
		// Two good rows, then the long value in the third field.
		{"third field", "user,method,timestamp\nU1,m,1793491200\nU2,m,1793491200\nU3,m,", 3, 4, "timestamp"},
		// A quoted field that never closes on one long line.
		{"quoted", "user,method,timestamp\nU1,\"", 1, 2, "method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			part := newHostilePart(t, "gzip", []byte(tc.head), 1<<30, letters(rand.New(rand.NewPCG(1, 2))))
			var err error
			peak := heapPeak(func() { _, err = readPart(t, Options{From: "x"}, "calls.csv.gz", part) })
			wantRowError(t, err, "calls.csv.gz", tc.row, tc.line, tc.column, "1.0 MiB (1048576 bytes)", "limit on a line")
			if peak > 24<<20 {
				t.Errorf("heap grew by %s reading a 1 GB line: not bounded by the 1 MiB limit", byteSize(int64(peak)))
			}
			if part.written > 64<<20 {
				t.Errorf("%s of the part were read before stopping", byteSize(part.written))
			}
			t.Logf("heap +%s, %s made; %v", byteSize(int64(peak)), byteSize(part.written), err)
		})
	}
}

// A quoted field that runs across many short lines makes one long row: it
// is stopped at the same limit, naming the row where it starts.
func TestCSVRowAcrossLines(t *testing.T) {
	part := newHostilePart(t, "", []byte("user,method,timestamp\nU1,m,1793491200\n\"U2"), 64<<20, repeat("abc\n"))
	var err error
	peak := heapPeak(func() { _, err = readPart(t, Options{From: "x", MaxLineBytes: 64 << 10}, "calls.csv", part) })
	var re *RowError
	if !errors.As(err, &re) || re.Row != 2 || re.Reason != ReasonTooLong || !strings.Contains(err.Error(), "runs across lines") {
		t.Fatalf("error %v, want row 2 too long across lines", err)
	}
	if peak > 16<<20 {
		t.Errorf("heap grew by %s", byteSize(int64(peak)))
	}
}

// A JSON-lines part with a 1 GB line stops at the limit too, naming the
// key whose value passes it.
func TestJSONLinesGigabyteLine(t *testing.T) {
	head := `{"user":"U1","method":"m","timestamp":1793491200}` + "\n" + `{"user":"U2","method":"`
	part := newHostilePart(t, "zstd", []byte(head), 1<<30, letters(rand.New(rand.NewPCG(3, 4))))
	var err error
	peak := heapPeak(func() { _, err = readPart(t, Options{From: "x"}, "calls.jsonl.zst", part) })
	wantRowError(t, err, "calls.jsonl.zst", 2, 2, "method", "limit on a line")
	if peak > 24<<20 {
		t.Errorf("heap grew by %s reading a 1 GB line", byteSize(int64(peak)))
	}
}

// A value longer than MaxFieldBytes in a column that is read is a bad row
// naming its column: it stops the run, or is skipped and counted with
// SkipBadRows. Long values of other columns are left alone.
func TestFieldTooLong(t *testing.T) {
	long := strings.Repeat("x", 70<<10)
	good := "U1,users.info,1793491200," + long + "\n"
	for _, tc := range []struct {
		name, data string
		line       int64
		column     string
	}{
		{"csv", "user,method,timestamp,notes\n" + good + "U2," + long + ",1793491200,n\n", 3, "method"},
		{"jsonl", `{"user":"U1","method":"users.info","timestamp":1793491200,"notes":"` + long + `"}` + "\n" +
			`{"user":"` + long + `","method":"m","timestamp":1793491200}` + "\n", 2, "user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, dir, "calls."+tc.name, []byte(tc.data))
			_, err := Generate(context.Background(), Options{From: p, TempDir: dir}, nil)
			wantRowError(t, err, p, 2, tc.line, tc.column, "limit on a value", "64.0 KiB (65536 bytes)")
			res := generate(t, Options{From: p, SkipBadRows: true})
			if res.Rows.Used != 1 || res.Rows.SkippedBy[ReasonTooLong] != 1 {
				t.Errorf("rows %+v: want 1 used, 1 skipped as too long", res.Rows)
			}
		})
	}
}

// Decompression bombs: a part that inflates past MaxRatio × its compressed
// bytes (plus 1 MiB), or past MaxInflatedBytes, stops with an error naming
// the part, long before it is all inflated.
func TestDecompressionGuard(t *testing.T) {
	row := "U1,m,1793491200\n" // 16 bytes: whole rows in every block
	for _, tc := range []struct {
		name     string
		compress string
		o        Options
		fill     func([]byte)
		says     string
	}{
		// 4 GB of one row, about 4 MB of gzip.
		{"gzip ratio", "gzip", Options{From: "x"}, repeat(row), "decompression bomb"},
		// The same under zstd, which shrinks it far more.
		{"zstd ratio", "zstd", Options{From: "x"}, repeat(row), "decompression bomb"},
		// Rows that shrink little, under a small absolute cap.
		{"size", "gzip", Options{From: "x", MaxInflatedBytes: 8 << 20}, func(b []byte) {
			r := rand.New(rand.NewPCG(5, 6))
			for i := 0; i < len(b); i += copy(b[i:], fmt.Sprintf("U%d,m,1793491200\n", r.Int64())) {
			}
		}, "8.0 MiB (8388608 bytes) limit on one part"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			part := newHostilePart(t, tc.compress, []byte("user,method,timestamp\n"), 4<<30, tc.fill)
			_, err := readPart(t, tc.o, "calls.csv", part)
			if !errors.Is(err, ErrLimit) || !strings.HasPrefix(err.Error(), "calls.csv: ") || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want calls.csv: … %s", err, tc.says)
			}
			if part.written > 512<<20 {
				t.Errorf("%s inflated before stopping", byteSize(part.written))
			}
			t.Logf("%s made: %v", byteSize(part.written), err)
		})
	}
	// An ordinary gzip part is not stopped.
	calls := genCalls(7, 20_000, 100, day0, 600)
	p := writeFile(t, t.TempDir(), "ok.csv.gz", gz(csvBytes(calls, 0)))
	checkSame(t, generate(t, Options{From: p}), calls)
}

// S3 objects go through the same guards: a gzip bomb, a 4 MB line and a
// Parquet object whose footer claims 4 GB are stopped, each named.
func TestS3Limits(t *testing.T) {
	s := startS3(t)
	s.bucket(t, "hostile")
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zw.Write([]byte("user,method,timestamp\n"))
	fill := make([]byte, 1<<20)
	repeat("U1,users.info,1793491200\n")(fill)
	for range 64 {
		zw.Write(fill)
	}
	zw.Close()
	s.put(t, "hostile", "bomb/part-0.csv.gz", bomb.Bytes())
	line := make([]byte, 4<<20)
	letters(rand.New(rand.NewPCG(8, 9)))(line)
	s.put(t, "hostile", "line/part-0.csv", append([]byte("user,method,timestamp\nU1,"), line...))
	pq := append([]byte("PAR1"), make([]byte, 64)...)
	pq = append(pq, 0xff, 0xff, 0xff, 0xff, 'P', 'A', 'R', '1')
	s.put(t, "hostile", "footer/part-0.parquet", pq)
	for _, tc := range []struct {
		prefix string
		says   []string
	}{
		{"bomb/", []string{"s3://hostile/bomb/part-0.csv.gz: ", "decompression bomb"}},
		{"line/", []string{"s3://hostile/line/part-0.csv: row 1 (line 2), column \"method\"", "limit on a line"}},
		{"footer/", []string{"s3://hostile/footer/part-0.parquet: ", "footer claims 4.0 GiB"}},
	} {
		_, err := Generate(context.Background(), Options{From: "s3://hostile/" + tc.prefix, EndpointURL: s.URL, TempDir: t.TempDir()}, nil)
		if !errors.Is(err, ErrLimit) {
			t.Errorf("%s: error %v does not match ErrLimit", tc.prefix, err)
			continue
		}
		for _, w := range tc.says {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.prefix, err, w)
			}
		}
	}
}

// Parquet: a column chunk whose pages inflate past the ratio is refused
// from its metadata before any page is read; a value over MaxFieldBytes
// is a bad row naming its column.
func TestParquetLimits(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	pw := parquet.NewGenericWriter[pqCall](&b, parquet.Compression(&parquet.Zstd))
	rows := make([]pqCall, 20_000)
	for i := range rows {
		rows[i] = pqCall{User: strings.Repeat("u", 2000), Method: "m", Timestamp: day0, Client: "desktop"}
	}
	if _, err := pw.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, dir, "bomb.parquet", b.Bytes())
	// 40 MB of user names in under 1 MB of zstd: about 48×.
	_, err := Generate(context.Background(), Options{From: p, TempDir: dir, MaxRatio: 10}, nil)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), `column "user"`) || !strings.Contains(err.Error(), "row group 1") {
		t.Errorf("error %v, want the user column's chunk refused", err)
	}

	b.Reset()
	calls := genCalls(9, 10, 5, day0, 10)
	calls[3].Method = strings.Repeat("m", 70<<10)
	writeParquet(t, &b, calls)
	p = writeFile(t, dir, "long.parquet", b.Bytes())
	_, err = Generate(context.Background(), Options{From: p, TempDir: dir}, nil)
	wantRowError(t, err, p, 4, 0, "method", "limit on a value")
}

// With Root, local reads stay inside the folder: a symlink out, "..", an
// absolute path are refused with a message that quotes nothing of the file
// pointed to; a folder's symlinked parts are not read.
func TestRootConfinesReads(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	const secret = "TOPSECRET-first-line"
	writeFile(t, outside, "secret.csv", []byte(secret+",x\n1,2\n"))
	calls := genCalls(10, 500, 20, day0, 60)
	writeFile(t, root, "export/part-0.csv", csvBytes(calls, 0))
	for _, l := range [][2]string{
		{filepath.Join(outside, "secret.csv"), "link.csv"},
		{filepath.Join(outside, "secret.csv"), "export/part-1.csv"},
		{outside, "out"},
		{"../part-0.csv", "export/sub/inside.csv"},
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, l[1])), 0o755)
		if err := os.Symlink(l[0], filepath.Join(root, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []string{"link.csv", "out/secret.csv", "out", "export/sub/../../link.csv"} {
		_, err := Generate(context.Background(), Options{From: from, Root: root, TempDir: t.TempDir()}, nil)
		if err == nil || !strings.Contains(err.Error(), "may not leave the folder") || strings.Contains(err.Error(), "TOPSECRET") {
			t.Errorf("%s: %v, want a refusal quoting nothing of the file", from, err)
		}
	}
	for _, from := range []string{"../outside.csv", filepath.Join(outside, "secret.csv")} {
		_, err := Generate(context.Background(), Options{From: from, Root: root}, nil)
		if err == nil || !strings.Contains(err.Error(), "not a path inside the folder") {
			t.Errorf("%s: %v, want refused by Validate", from, err)
		}
	}
	// The folder's own part is read; the symlinks in it are not parts.
	res := generate(t, Options{From: "export", Root: root})
	if res.Objects != 1 {
		t.Errorf("%d parts read, want 1", res.Objects)
	}
	checkSame(t, res, calls)
	// A symlink that stays inside is followed when named.
	checkSame(t, generate(t, Options{From: "export/sub/inside.csv", Root: root}), calls)
}

// Messages quote at most a short prefix of the export: a header of 1,000
// columns of 10 KB each is named in a couple of hundred bytes.
func TestMessagesQuoteLittle(t *testing.T) {
	var h strings.Builder
	for i := range 1000 {
		if i > 0 {
			h.WriteByte(',')
		}
		h.WriteString(strings.Repeat(string(rune('a'+i%26)), 10<<10))
	}
	h.WriteString("\n")
	p := writeFile(t, t.TempDir(), "wide.csv", []byte(h.String()))
	_, err := Generate(context.Background(), Options{From: p, MaxLineBytes: 16 << 20, MaxFieldBytes: 16 << 20}, nil)
	if err == nil || !strings.Contains(err.Error(), "(1000 columns)") || len(err.Error())-len(p) > 500 {
		t.Errorf("error of %d bytes: %.600v", len(err.Error()), err)
	}
	// A bad timestamp of 50 KB is quoted by its first 60 bytes.
	p = writeFile(t, t.TempDir(), "ts.csv", []byte("user,method,timestamp\nU1,m,"+strings.Repeat("9x", 25<<10)+"\n"))
	_, err = Generate(context.Background(), Options{From: p}, nil)
	if err == nil || len(err.Error())-len(p) > 300 {
		t.Errorf("error of %d bytes: %.400v", len(err.Error()), err)
	}
}

// FuzzCSVLines: a CSV reader fed through csvLines reads exactly what it
// reads straight from the input (records, parse errors, offsets) when no
// limit is passed, whatever the chunking: blank lines, CRLF, quoted fields
// across lines, a last line without a newline.
func FuzzCSVLines(f *testing.F) {
	for _, s := range []string{
		"a,b,c\n1,2,3\n", "a,b\r\n\r\n1,2\r\n\n\n3,4", "a,\"b\nc\",d\n\"x\"\"y\",z\n", "\"unclosed\n1,2\n",
		"a,b\n1,\"2\n\n3\"\n", "\n\n\na\n", "a\"b,c\n", strings.Repeat("x,y\n", 2000), "a;b\n1;2\n",
	} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, in string, bufSize int) {
		read := func(r io.Reader, lines *csvLines) (out []string) {
			cr := csv.NewReader(r)
			cr.FieldsPerRecord = -1
			for i := 0; i < 10_000; i++ {
				rec, err := cr.Read()
				if lines != nil {
					lines.rowStart = cr.InputOffset()
				}
				out = append(out, fmt.Sprintf("%q %v %d", rec, err, cr.InputOffset()))
				if err == io.EOF {
					break
				}
			}
			return out
		}
		want := read(strings.NewReader(in), nil)
		// A reader that hands out odd sizes, to vary the chunking.
		size := 1 + (bufSize&0xff)%64
		src := iotest.OneByteReader(strings.NewReader(in))
		if bufSize&1 == 0 {
			src = &chunkReader{r: strings.NewReader(in), n: size}
		}
		lines := newCSVLines(nil, src, len(in)+16)
		got := read(lines, lines)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("through csvLines:\n%s\nstraight:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// A Parquet footer of a few bytes that declares 2^31 schema elements (or
// any list its bytes cannot hold) is refused before parquet-go allocates
// for it: parquet-go would end the process with "out of memory".
func TestParquetHostileFooter(t *testing.T) {
	file := func(footer []byte) []byte {
		b := append([]byte("PAR1"), footer...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(footer)))
		return append(b, "PAR1"...)
	}
	dir := t.TempDir()
	for name, footer := range map[string][]byte{
		// version 1, then schema: a list of 2^31-1 structs, and nothing.
		"huge list": {0x15, 0x02, 0x19, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x00},
		// Structs nested 100 deep, past the depth limit.
		"deep": append(bytes.Repeat([]byte{0x1C}, 100), 0x00),
		// A string declaring 2 GB.
		"long string": {0x48, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x00},
	} {
		p := writeFile(t, dir, strings.ReplaceAll(name, " ", "-")+".parquet", file(footer))
		_, err := Generate(context.Background(), Options{From: p, TempDir: dir}, nil)
		if err == nil || !strings.Contains(err.Error(), "the Parquet footer") {
			t.Errorf("%s: %v, want the footer refused", name, err)
		}
	}
	// Every ordinary file still opens: the walk accepts real metadata.
	var b bytes.Buffer
	calls := genCalls(12, 3000, 50, day0, 100)
	writeParquet(t, &b, calls)
	checkSame(t, generate(t, Options{From: writeFile(t, dir, "ok.parquet", b.Bytes())}), calls)
}

// The metadata budget: a footer whose lists fit its bytes but would decode
// to more than parquetMetadataBudget is refused.
func TestParquetMetadataBudget(t *testing.T) {
	n := int(parquetMetadataBudget/parquetStructSize) + 1
	footer := []byte{0x19, 0xFC}
	footer = binary.AppendUvarint(footer, uint64(n))
	footer = append(footer, make([]byte, n)...) // n empty structs
	footer = append(footer, 0x00)
	err := checkParquetMetadata(footer)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("%d empty structs: %v, want ErrLimit", n, err)
	}
}

// Page headers are walked before parquet-go allocates what they declare:
// a page that claims to inflate 2 GB from 10 bytes, a page longer than its
// column chunk, and a header with a 2 GB string are refused.
func TestParquetHostilePageHeaders(t *testing.T) {
	i32 := func(field byte, v int64) []byte {
		return binary.AppendUvarint([]byte{field<<4 | tI32}, uint64(v<<1)^uint64(v>>63))
	}
	page := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		b = append(b, 0) // stop
		return append(b, make([]byte, 10)...)
	}
	for name, tc := range map[string]struct {
		chunk []byte
		says  string
	}{
		"bomb":        {page(i32(1, 0), i32(1, 1<<31-1), i32(1, 10)), "inflates to"},
		"past chunk":  {page(i32(1, 0), i32(1, 10), i32(1, 1<<31-1)), "past its column chunk"},
		"long string": {page(i32(1, 0), i32(1, 10), i32(1, 10), []byte{0x28, 0xFF, 0xFF, 0xFF, 0xFF, 0x07}), "runs past its end"},
		"no sizes":    {page(i32(1, 0)), "no sizes"},
	} {
		err := checkParquetPages(bytes.NewReader(tc.chunk), int64(len(tc.chunk)), 0, int64(len(tc.chunk)), 100)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %q", name, err, tc.says)
		}
	}
	ok := page(i32(1, 0), i32(1, 10), i32(1, 10))
	if err := checkParquetPages(bytes.NewReader(ok), int64(len(ok)), 0, int64(len(ok)), 100); err != nil {
		t.Errorf("a sound page: %v", err)
	}
}
