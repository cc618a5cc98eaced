package warehouse

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"unsafe"

	"github.com/parquet-go/parquet-go/format"
)

// parquet-go decodes a file's metadata (Thrift, compact protocol) by
// allocating each list at the size it declares: a 26-byte file declaring
// 2^31 schema elements ends the process with "out of memory", which no
// recover catches. checkParquetMetadata walks the footer first and refuses
// one whose lists cannot be there or would take more than
// parquetMetadataBudget bytes once decoded.

// parquetMetadataBudget bounds the estimated decoded size of a footer.
const parquetMetadataBudget = 256 << 20

// parquetMaxDepth bounds nesting in a footer (real ones are under 10 deep).
const parquetMaxDepth = 64

// parquetStructSize is the largest Go struct a footer list element decodes
// to: the estimate for any list of structs.
var parquetStructSize = int64(max(unsafe.Sizeof(format.SchemaElement{}), unsafe.Sizeof(format.RowGroup{}),
	unsafe.Sizeof(format.ColumnChunk{}), unsafe.Sizeof(format.ColumnMetaData{}), unsafe.Sizeof(format.KeyValue{}),
	unsafe.Sizeof(format.SortingColumn{}), unsafe.Sizeof(format.PageEncodingStats{}), unsafe.Sizeof(format.ColumnOrder{}),
	unsafe.Sizeof(format.LogicalType{}), unsafe.Sizeof(format.Statistics{}), unsafe.Sizeof(format.SizeStatistics{})))

var (
	errFooter = errors.New("malformed metadata")
	// errShort is a walk that ran out of bytes: a longer window may do.
	errShort = fmt.Errorf("%w: it runs past its end", errFooter)
)

// Thrift compact protocol types.
const (
	tBoolTrue  = 1
	tBoolFalse = 2
	tByte      = 3
	tI16       = 4
	tI32       = 5
	tI64       = 6
	tDouble    = 7
	tBinary    = 8
	tList      = 9
	tSet       = 10
	tMap       = 11
	tStruct    = 12
)

type footerWalk struct {
	b    []byte
	i    int
	cost int64 // estimated decoded bytes
	// field, when set, sees the top-level integer fields (id, value).
	field func(id int16, v int64)
}

// checkParquetMetadata walks a footer (FileMetaData, Thrift compact).
func checkParquetMetadata(footer []byte) error {
	w := footerWalk{b: footer}
	if err := w.value(tStruct, 0); err != nil {
		return err
	}
	if w.cost > parquetMetadataBudget {
		return fmt.Errorf("%w: the metadata would take about %s decoded, past %s", ErrLimit, byteSize(w.cost), byteSize(parquetMetadataBudget))
	}
	return nil
}

func (w *footerWalk) byte() (byte, error) {
	if w.i >= len(w.b) {
		return 0, errShort
	}
	c := w.b[w.i]
	w.i++
	return c, nil
}

func (w *footerWalk) uvarint() (uint64, error) {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c, err := w.byte()
		if err != nil {
			return 0, err
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errFooter
}

// elements checks a declared count against the bytes left (every element
// takes at least one) and adds its estimated cost.
func (w *footerWalk) elements(n uint64, size int64) error {
	if n > uint64(len(w.b)-w.i) {
		return fmt.Errorf("%w: a list declares %d elements in %d bytes", errShort, n, len(w.b)-w.i)
	}
	w.cost += int64(n) * size
	if w.cost > parquetMetadataBudget {
		return fmt.Errorf("%w: the metadata would take more than %s decoded", ErrLimit, byteSize(parquetMetadataBudget))
	}
	return nil
}

func elemSize(t byte) int64 {
	switch t {
	case tStruct:
		return parquetStructSize
	case tBinary, tList, tSet, tMap:
		return 24
	}
	return 8
}

func (w *footerWalk) value(t byte, depth int) error {
	if depth > parquetMaxDepth {
		return fmt.Errorf("%w: nested more than %d deep", errFooter, parquetMaxDepth)
	}
	switch t {
	case tBoolTrue, tBoolFalse, tByte:
		_, err := w.byte()
		return err
	case tI16, tI32, tI64:
		_, err := w.uvarint()
		return err
	case tDouble:
		if len(w.b)-w.i < 8 {
			return errShort
		}
		w.i += 8
		return nil
	case tBinary:
		n, err := w.uvarint()
		if err != nil {
			return err
		}
		if n > uint64(len(w.b)-w.i) {
			return fmt.Errorf("%w: a string declares %d bytes in %d", errShort, n, len(w.b)-w.i)
		}
		w.i += int(n)
		w.cost += int64(n)
		return nil
	case tList, tSet:
		h, err := w.byte()
		if err != nil {
			return err
		}
		n, et := uint64(h>>4), h&0x0f
		if n == 0x0f {
			if n, err = w.uvarint(); err != nil {
				return err
			}
		}
		if err := w.elements(n, elemSize(et)); err != nil {
			return err
		}
		for range n {
			if err := w.value(et, depth+1); err != nil {
				return err
			}
		}
		return nil
	case tMap:
		n, err := w.uvarint()
		if err != nil || n == 0 {
			return err
		}
		kv, err := w.byte()
		if err != nil {
			return err
		}
		if err := w.elements(2*n, elemSize(kv>>4)+elemSize(kv&0x0f)); err != nil {
			return err
		}
		for range n {
			if err := w.value(kv>>4, depth+1); err != nil {
				return err
			}
			if err := w.value(kv&0x0f, depth+1); err != nil {
				return err
			}
		}
		return nil
	case tStruct:
		id := int16(0)
		for {
			h, err := w.byte()
			if err != nil {
				return err
			}
			if h == 0 {
				return nil // stop
			}
			if h>>4 == 0 {
				u, err := w.uvarint() // a long field id
				if err != nil {
					return err
				}
				id = int16(unzigzag(u))
			} else {
				id += int16(h >> 4)
			}
			switch ft := h & 0x0f; ft {
			case tBoolTrue, tBoolFalse:
				// the value is in the header
			case tI16, tI32, tI64:
				u, err := w.uvarint()
				if err != nil {
					return err
				}
				if depth == 0 && w.field != nil {
					w.field(id, unzigzag(u))
				}
			default:
				if err := w.value(ft, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return fmt.Errorf("%w: unknown type %d", errFooter, t)
}

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// pageHeaderWindow is the first read of a page header; it doubles up to
// maxPageHeader when the header is longer.
const (
	pageHeaderWindow = 8 << 10
	maxPageHeader    = 8 << 20
)

// checkParquetPages walks the page headers of one column chunk (from
// start, size bytes) before parquet-go reads it: parquet-go allocates each
// page at the sizes its header declares. A header's lists and strings must
// fit it, each page must fit the chunk, and inflate within ratio × its
// compressed size plus inflateFloor.
func checkParquetPages(r io.ReaderAt, fileSize, start, size int64, ratio int64) error {
	if start < 0 || size < 0 || start > fileSize || size > fileSize-start {
		return fmt.Errorf("%w: the column chunk (%d bytes at %d) is not inside the %d-byte file", errFooter, size, start, fileSize)
	}
	end := start + size
	buf := make([]byte, 0, pageHeaderWindow)
	for pos := start; pos < end; {
		window := int64(pageHeaderWindow)
		for {
			n := min(window, end-pos)
			buf = slices.Grow(buf[:0], int(n))[:n]
			if _, err := r.ReadAt(buf, pos); err != nil && !(errors.Is(err, io.EOF) && len(buf) == int(n)) {
				return err
			}
			var compressed, uncompressed int64 = -1, -1
			w := footerWalk{b: buf, field: func(id int16, v int64) {
				switch id {
				case 2:
					uncompressed = v
				case 3:
					compressed = v
				}
			}}
			err := w.value(tStruct, 0)
			if errors.Is(err, errShort) && n < end-pos && window < maxPageHeader {
				window *= 4
				continue
			}
			if err != nil {
				return fmt.Errorf("a page header at byte %d: %w", pos, err)
			}
			pos += int64(w.i)
			switch {
			case compressed < 0 || uncompressed < 0:
				return fmt.Errorf("%w: a page header at byte %d has no sizes", errFooter, pos)
			case compressed > end-pos:
				return fmt.Errorf("%w: a page at byte %d claims %s, past its column chunk", errFooter, pos, byteSize(compressed))
			case uncompressed > ratio*compressed+inflateFloor:
				return fmt.Errorf("%w: a page at byte %d inflates to %s from %s, past %d× plus %s (MaxRatio, --max-ratio)",
					ErrLimit, pos, byteSize(uncompressed), byteSize(compressed), ratio, byteSize(inflateFloor))
			}
			pos += compressed
			break
		}
	}
	return nil
}
