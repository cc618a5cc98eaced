package warehouse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

// parquetTime says how a Parquet timestamp column is stored.
type parquetTime struct {
	unit  time.Duration // TIMESTAMP logical or converted type; 0: plain
	int96 bool
}

// readParquet reads one Parquet part from random-access storage.
func (g *ingest) readParquet(ctx context.Context, obj string, r io.ReaderAt, size int64) (err error) {
	defer func() {
		// parquet-go panics on some corrupt files: an error naming the
		// object is better than a crash.
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: corrupt Parquet file: %s", obj, short(fmt.Sprint(p)))
		}
	}()
	if err := checkParquetFooter(obj, r, size); err != nil {
		return err
	}
	// The page index and bloom filters are not used: not reading them
	// leaves less metadata for a hostile file to play with.
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return fmt.Errorf("%s: opening Parquet: %w", obj, err)
	}
	schema := f.Schema()
	paths := schema.Columns()
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.Join(p, ".")
	}
	idx, err := g.resolveColumns(obj, names, "Parquet schema")
	if err != nil {
		return err
	}
	// leafCol maps a leaf column index back to a logical column.
	leafCol := make([]int, len(paths))
	for i := range leafCol {
		leafCol[i] = -1
	}
	var pt parquetTime
	for c := range numCols {
		i := idx[c]
		if i < 0 {
			continue
		}
		leaf, ok := schema.Lookup(paths[i]...)
		if !ok {
			continue
		}
		leafCol[leaf.ColumnIndex] = c
		if c == colTimestamp {
			typ := leaf.Node.Type()
			if lt := typ.LogicalType(); lt != nil {
				if ts, ok := lt.Value.(*format.TimestampType); ok && ts.Unit.Value != nil {
					pt.unit = ts.Unit.Value.Duration()
				}
			}
			if ct := typ.ConvertedType(); ct != nil && pt.unit == 0 {
				switch *ct {
				case deprecated.TimestampMillis:
					pt.unit = time.Millisecond
				case deprecated.TimestampMicros:
					pt.unit = time.Microsecond
				}
			}
			pt.int96 = typ.Kind() == parquet.Int96
		}
	}
	if err := g.checkParquetChunks(obj, r, size, f, idx, paths, names); err != nil {
		return err
	}
	var rec record
	var scratch [numCols][]byte
	maxField := g.o.MaxFieldBytes
	buf := make([]parquet.Row, 512)
	n := int64(0)
	for _, rg := range f.RowGroups() {
		rows := rg.Rows()
		for {
			k, rerr := rows.ReadRows(buf)
			for _, prow := range buf[:k] {
				n++
				rec.reset()
				over := -1 // a column over MaxFieldBytes: only byte arrays can be
				for _, v := range prow {
					c := -1
					if col := v.Column(); col >= 0 && col < len(leafCol) {
						c = leafCol[col]
					}
					if c < 0 || v.IsNull() {
						continue
					}
					if c == colTimestamp && (pt.int96 || pt.unit > 0) {
						if pt.int96 {
							rec.tsNanos = int96Nanos(v.Int96())
						} else {
							rec.tsNanos = v.Int64() * int64(pt.unit)
						}
						rec.tsTyped, rec.has[c] = true, true
						if s := floorDiv(rec.tsNanos, 1e9); s < minSec || s >= maxSec {
							rec.tsTyped = false
							rec.vals[c] = time.Unix(0, rec.tsNanos).UTC().Format(time.RFC3339)
						}
						continue
					}
					var s string
					switch v.Kind() {
					case parquet.ByteArray, parquet.FixedLenByteArray:
						b := v.ByteArray()
						s = unsafe.String(unsafe.SliceData(b), len(b))
						if len(b) > maxField {
							over = c
						}
					case parquet.Int32:
						scratch[c] = strconv.AppendInt(scratch[c][:0], int64(v.Int32()), 10)
						s = unsafe.String(unsafe.SliceData(scratch[c]), len(scratch[c]))
					case parquet.Int64:
						scratch[c] = strconv.AppendInt(scratch[c][:0], v.Int64(), 10)
						s = unsafe.String(unsafe.SliceData(scratch[c]), len(scratch[c]))
					case parquet.Float, parquet.Double:
						f := v.Double()
						if v.Kind() == parquet.Float {
							f = float64(v.Float())
						}
						if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
							scratch[c] = strconv.AppendInt(scratch[c][:0], int64(f), 10)
						} else {
							scratch[c] = strconv.AppendFloat(scratch[c][:0], f, 'f', -1, 64)
						}
						s = unsafe.String(unsafe.SliceData(scratch[c]), len(scratch[c]))
					case parquet.Boolean:
						s = strconv.FormatBool(v.Boolean())
					default:
						s = v.String()
					}
					rec.vals[c], rec.has[c] = s, true
				}
				if c := over; c >= 0 {
					if err := g.bad(g.fieldTooLong(obj, n, 0, names[idx[c]], len(rec.vals[c]))); err != nil {
						rows.Close()
						return err
					}
					continue
				}
				if err := g.row(ctx, obj, n, 0, &rec); err != nil {
					rows.Close()
					return err
				}
			}
			if rerr != nil {
				rows.Close()
				if errors.Is(rerr, io.EOF) {
					break
				}
				return fmt.Errorf("%s: reading Parquet rows near row %d: %w", obj, n+1, rerr)
			}
		}
	}
	return nil
}

// maxParquetFooter bounds a Parquet footer (its metadata): parquet-go
// allocates what the file's last bytes declare before reading it.
const maxParquetFooter = 64 << 20

// checkParquetFooter refuses a footer length that the file cannot hold or
// that is past maxParquetFooter, and metadata that would decode past
// parquetMetadataBudget (see checkParquetMetadata).
func checkParquetFooter(obj string, r io.ReaderAt, size int64) error {
	var tail [8]byte
	if size < 12 {
		return fmt.Errorf("%s: not a Parquet file: %d bytes", obj, size)
	}
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return fmt.Errorf("%s: reading the Parquet footer: %w", obj, err)
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n > size-12 || n > maxParquetFooter {
		return fmt.Errorf("%s: %w: the Parquet footer claims %s in a %s file (at most %s is read): corrupt or hostile",
			obj, ErrLimit, byteSize(n), byteSize(size), byteSize(maxParquetFooter))
	}
	if string(tail[4:]) != "PAR1" {
		return nil // not plain Parquet: parquet-go says what it is
	}
	footer := make([]byte, n)
	if _, err := r.ReadAt(footer, size-8-n); err != nil {
		return fmt.Errorf("%s: reading the Parquet footer: %w", obj, err)
	}
	if err := checkParquetMetadata(footer); err != nil {
		return fmt.Errorf("%s: the Parquet footer: %w", obj, err)
	}
	return nil
}

// checkParquetChunks checks, from the metadata, that the column chunks read
// inflate within MaxRatio (plus the floor) and MaxInflatedBytes, and then
// each of their page headers (checkParquetPages).
func (g *ingest) checkParquetChunks(obj string, r io.ReaderAt, size int64, f *parquet.File, idx [numCols]int, paths [][]string, names []string) error {
	md, rd := f.Metadata(), r
	for c := range numCols {
		i := idx[c]
		if i < 0 {
			continue
		}
		leaf, ok := f.Schema().Lookup(paths[i]...)
		if !ok {
			continue
		}
		for r, rg := range md.RowGroups {
			if leaf.ColumnIndex >= len(rg.Columns) {
				continue
			}
			m := rg.Columns[leaf.ColumnIndex].MetaData
			in, out := max(m.TotalCompressedSize, 0), m.TotalUncompressedSize
			if out > int64(g.o.MaxRatio)*in+inflateFloor || out > g.o.MaxInflatedBytes {
				return fmt.Errorf("%s: %w: row group %d, column %q: %s of pages from %s compressed, past %d× plus %s (MaxRatio, --max-ratio) or %s (MaxInflatedBytes)",
					obj, ErrLimit, r+1, short(names[i]), byteSize(out), byteSize(in), g.o.MaxRatio, byteSize(inflateFloor), byteSize(g.o.MaxInflatedBytes))
			}
			start := m.DataPageOffset
			if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
				start = m.DictionaryPageOffset
			}
			if err := checkParquetPages(rd, size, start, in, int64(g.o.MaxRatio)); err != nil {
				return fmt.Errorf("%s: row group %d, column %q: %w", obj, r+1, short(names[i]), err)
			}
		}
	}
	return nil
}

// int96Nanos converts a legacy INT96 timestamp (Impala, Spark, Athena):
// nanoseconds of the day, then the Julian day.
func int96Nanos(i deprecated.Int96) int64 {
	nanos := int64(i[1])<<32 | int64(i[0])
	day := int64(i[2])
	return (day-2440588)*86400*1e9 + nanos
}
