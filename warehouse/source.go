package warehouse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// object is one part of an export.
type object struct {
	name string // file path or s3:// URL, for messages
	size int64
	open func(ctx context.Context) (io.ReadCloser, error)
}

// source lists an export's parts, in order, without holding the whole list
// when the store pages it.
type source interface {
	each(ctx context.Context, fn func(obj object) error) error
	String() string
	close()
}

// skipName reports whether a part's base name marks it as not data:
// _SUCCESS and other _-files, hidden and .crc files, manifests, and a
// README (README, README.md, README.txt) or any .md file documenting the
// export beside its parts.
func skipName(base string) bool {
	lb := strings.ToLower(base)
	return base == "" || strings.HasPrefix(base, "_") || strings.HasPrefix(base, ".") ||
		strings.HasSuffix(lb, ".crc") || strings.HasSuffix(lb, "manifest") || strings.HasSuffix(lb, "manifest.json") ||
		strings.HasPrefix(lb, "readme") || strings.HasSuffix(lb, ".md")
}

func openSource(ctx context.Context, o *Options) (source, error) {
	if strings.HasPrefix(o.From, "s3://") {
		return newS3Source(ctx, o)
	}
	if o.Root != "" {
		return openRootSource(o)
	}
	st, err := os.Stat(o.From)
	if err != nil {
		return nil, fmt.Errorf("reading the export: %w", err)
	}
	return &localSource{root: o.From, dir: st.IsDir()}, nil
}

type localSource struct {
	root string
	dir  bool
	// in, when set, confines every open to a folder; root is then a
	// slash-separated path inside it.
	in   *os.Root
	name string // in's folder, for messages; "" with Options.SourceName
}

// folder names the confining folder in messages.
func (s *localSource) folder() string {
	if s.name == "" {
		return "the export folder"
	}
	return s.name
}

// openRootSource opens o.From inside o.Root through os.Root: nothing
// outside the folder is opened, whatever symlinks it holds.
func openRootSource(o *Options) (*localSource, error) {
	// With a SourceName, parts are named by their path inside the folder
	// alone: the folder (the keeper's, or an upload's spool) stays out of
	// every name and message.
	src := &localSource{name: o.Root}
	if o.SourceName != "" {
		src.name = ""
	}
	in, err := os.OpenRoot(o.Root)
	if err != nil {
		return nil, fmt.Errorf("opening the folder %s: %w", src.folder(), err)
	}
	p := path.Clean(filepath.ToSlash(o.From))
	st, err := in.Stat(p)
	if err != nil {
		in.Close()
		return nil, rootError(o.From, src.folder(), err)
	}
	src.root, src.dir, src.in = p, st.IsDir(), in
	return src, nil
}

// rootError says why a path inside a confined folder could not be opened,
// quoting nothing of any file.
func rootError(p, root string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("reading the export: %q does not exist in %s: %w", p, root, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("reading the export: %q in %s: permission denied: %w", p, root, err)
	}
	return fmt.Errorf("reading the export: %q cannot be opened inside %s: a path may not leave the folder (no symlink out of it, no \"..\", no absolute path): %w", p, root, err)
}

func (s *localSource) close() {
	if s.in != nil {
		s.in.Close()
	}
}

func (s *localSource) String() string {
	if s.in != nil {
		return filepath.Join(s.name, filepath.FromSlash(s.root))
	}
	return s.root
}

func (s *localSource) each(ctx context.Context, fn func(object) error) error {
	local := func(p string, size int64) object {
		if s.in != nil {
			name := filepath.Join(s.name, filepath.FromSlash(p))
			return object{name: name, size: size, open: func(context.Context) (io.ReadCloser, error) {
				f, err := s.in.Open(p)
				if err != nil {
					return nil, rootError(p, s.folder(), err)
				}
				return f, nil
			}}
		}
		return object{name: p, size: size, open: func(context.Context) (io.ReadCloser, error) { return os.Open(p) }}
	}
	if !s.dir {
		var st fs.FileInfo
		var err error
		if s.in != nil {
			st, err = s.in.Stat(s.root)
		} else {
			st, err = os.Stat(s.root)
		}
		if err != nil {
			return err
		}
		return fn(local(s.root, st.Size()))
	}
	type part struct {
		path string
		size int64
	}
	var parts []part
	walk := func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != s.root && skipName(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil // folders are walked; symlinks and devices are not parts
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		parts = append(parts, part{p, info.Size()})
		return nil
	}
	var err error
	if s.in != nil {
		err = fs.WalkDir(s.in.FS(), s.root, walk)
	} else {
		err = filepath.WalkDir(s.root, walk)
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", s, err)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].path < parts[j].path })
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(local(p.path, p.size)); err != nil {
			return err
		}
	}
	return nil
}

// countingReader counts bytes read from the source.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// Compression recognised by magic bytes.
var (
	magicGzip    = []byte{0x1f, 0x8b}
	magicZstd    = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicParquet = []byte("PAR1")
)

// zstdMaxWindow bounds the window a zstd frame may ask for (its memory):
// zstd up to level 22 uses at most 128 MiB, the default levels 8 MiB.
const zstdMaxWindow = 128 << 20

// decompress wraps r by its magic bytes; kind is "gzip", "zstd" or "".
// maxOut bounds what a zstd frame may declare it inflates to.
func decompress(r *bufio.Reader, maxOut int64) (io.Reader, string, func(), error) {
	head, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(head, magicGzip):
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, "", nil, fmt.Errorf("gzip: %w", err)
		}
		return z, "gzip", func() { z.Close() }, nil
	case bytes.HasPrefix(head, magicZstd):
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(uint64(max(maxOut, 1))))
		if err != nil {
			return nil, "", nil, fmt.Errorf("zstd: %w", err)
		}
		return z, "zstd", z.Close, nil
	}
	return r, "", func() {}, nil
}

// formatByName guesses a format from a part's extension, under any
// compression suffix.
func formatByName(name string) (Format, bool) {
	base := strings.ToLower(path.Base(filepath.ToSlash(name)))
	for _, z := range []string{".gz", ".gzip", ".zst", ".zstd"} {
		base = strings.TrimSuffix(base, z)
	}
	switch path.Ext(base) {
	case ".csv", ".tsv", ".txt":
		return FormatCSV, true
	case ".json", ".jsonl", ".ndjson":
		return FormatJSON, true
	case ".parquet", ".pq":
		return FormatParquet, true
	}
	return FormatAuto, false
}

// formatBySniff guesses a format from the first (decompressed) bytes.
func formatBySniff(head []byte) Format {
	if bytes.HasPrefix(head, magicParquet) {
		return FormatParquet
	}
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	head = bytes.TrimLeft(head, " \t\r\n")
	if len(head) > 0 && head[0] == '{' {
		return FormatJSON
	}
	return FormatCSV
}

func isTSV(name string) bool {
	base := strings.ToLower(path.Base(filepath.ToSlash(name)))
	for _, z := range []string{".gz", ".gzip", ".zst", ".zstd"} {
		base = strings.TrimSuffix(base, z)
	}
	return strings.HasSuffix(base, ".tsv")
}
