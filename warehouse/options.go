package warehouse

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Format is the file format of an export's parts.
type Format string

// The formats read. FormatAuto picks one per part, by extension and then by
// the first bytes.
const (
	FormatAuto    Format = ""
	FormatCSV     Format = "csv"
	FormatJSON    Format = "jsonl"
	FormatParquet Format = "parquet"
)

// Shape says what one row of an export is.
type Shape string

// The shapes read. ShapeAuto picks aggregated when the user-minutes columns
// are present (CSV header, Parquet schema, or the first JSON row), else raw.
const (
	ShapeAuto       Shape = ""
	ShapeRaw        Shape = "raw"        // one row per call: user, method, timestamp
	ShapeAggregated Shape = "aggregated" // one row per method: user_minutes, active_user_minutes
)

// TimeUnit is the unit of numeric (epoch) timestamps.
type TimeUnit string

// The epoch units. UnitAuto tells them apart by magnitude: below 1e11 is
// seconds, below 1e14 milliseconds, below 1e17 microseconds, else
// nanoseconds (1e11 seconds is the year 5138).
const (
	UnitAuto   TimeUnit = ""
	UnitSecond TimeUnit = "s"
	UnitMilli  TimeUnit = "ms"
	UnitMicro  TimeUnit = "us"
	UnitNano   TimeUnit = "ns"
)

// Columns maps the logical columns to the export's column (or JSON key)
// names. Empty fields take the defaults of DefaultColumns.
type Columns struct {
	User, Method, Timestamp, Team, Client string
	UserMinutes, ActiveUserMinutes        string
}

// DefaultColumns are the column names of ARCHITECTURE.md.
var DefaultColumns = Columns{
	User: "user", Method: "method", Timestamp: "timestamp", Team: "team", Client: "client",
	UserMinutes: "user_minutes", ActiveUserMinutes: "active_user_minutes",
}

func (c Columns) withDefaults() Columns {
	d := DefaultColumns
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&d.User, c.User)
	set(&d.Method, c.Method)
	set(&d.Timestamp, c.Timestamp)
	set(&d.Team, c.Team)
	set(&d.Client, c.Client)
	set(&d.UserMinutes, c.UserMinutes)
	set(&d.ActiveUserMinutes, c.ActiveUserMinutes)
	return d
}

// Options configure Generate. The zero value plus From is a valid
// configuration.
type Options struct {
	// From is a local file, a local folder of parts, or s3://bucket/prefix.
	From string
	// Format overrides format detection for every part.
	Format Format
	// Shape overrides shape detection.
	Shape Shape
	// Columns maps column names (defaults: DefaultColumns).
	Columns Columns
	// Comma is the CSV field separator (default ',', or '\t' for .tsv).
	Comma rune
	// TimeUnit is the unit of numeric timestamps (default: by magnitude).
	TimeUnit TimeUnit

	// Teams, when not empty, keeps only rows whose team is one of these.
	Teams []string
	// Clients, when not empty, keeps only rows whose client is one of
	// these (for example "desktop", "mobile").
	Clients []string
	// Since and Until, when not zero, keep rows with Since ≤ t < Until.
	Since, Until time.Time

	// Hourly adds 24 hour-of-day multipliers per method, counted in
	// Timezone (default UTC).
	Hourly   bool
	Timezone *time.Location

	// MinFrequency drops methods below it; Top, when > 0, keeps the Top
	// most frequent methods.
	MinFrequency float64
	Top          int
	// Sequences, when set, is a behavior file with the sequences the
	// frequencies will be merged with: the Result gets a Coverage report.
	Sequences string
	// SequencedOnly drops methods that have no sequence in Sequences, so
	// the output merges with it cleanly.
	SequencedOnly bool

	// Sessions learns call order from a raw export: each user's calls are
	// split into sessions at silences of SessionGap (default
	// DefaultSessionGap), and the Result gets Sessions, its output
	// sequences built from the learned transitions. DropTransitions
	// leaves out transitions, each written "from>to" (a method name may
	// hold '>': each split that names an observed transition matches).
	Sessions        bool
	SessionGap      time.Duration
	DropTransitions []string

	// SkipBadRows skips (and counts) bad rows instead of failing.
	SkipBadRows bool

	// Region and EndpointURL configure S3 (defaults: the standard AWS
	// configuration chain; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for the
	// endpoint). With an endpoint, requests are path-style unless
	// VirtualHosted is set.
	Region        string
	EndpointURL   string
	VirtualHosted bool

	// SourceName, when set, is how the output names the export instead of
	// From (the keeper names an uploaded file by its own name, never by
	// the temporary path it was spooled to).
	SourceName string
	// SequencesName, when set, is how the output names the sequences
	// file instead of Sequences.
	SequencesName string
	// Tool names the program and version writing the output, for the
	// provenance ("koipond v1.2.3").
	Tool string

	// Root, when set, confines local reads to this folder: From is a path
	// inside it, and every part and folder is opened through os.Root, so
	// nothing outside it is opened (a symlink leading out, "..", an
	// absolute path are refused). The keeper's --warehouse-dir.
	Root string

	// MaxLineBytes bounds one line of a CSV or JSON-lines part, and one
	// CSV row whose quoted fields span lines (default 1 MiB). A longer one
	// stops the run: memory stays bounded whatever the part holds.
	MaxLineBytes int
	// MaxFieldBytes bounds one value of a column that is read (user,
	// method, timestamp, team, client, the counts) in every format
	// (default 64 KiB). Other columns are bounded only by MaxLineBytes.
	MaxFieldBytes int
	// MaxRatio bounds decompression (gzip, zstd, Parquet column chunks): a
	// part may not inflate to more than MaxRatio × its compressed bytes
	// read so far plus 1 MiB (default 100).
	MaxRatio int
	// MaxInflatedBytes bounds the decompressed size of one compressed part
	// (default 32 GiB).
	MaxInflatedBytes int64

	// MemoryBytes bounds the in-memory chunk of the external sort
	// (default 128 MiB; see the package doc).
	MemoryBytes int64
	// TempDir holds the sort's runs and spooled Parquet parts (default
	// os.TempDir()).
	TempDir string
	// ProgressEvery is how often progress is reported (default 1 s).
	ProgressEvery time.Duration

	// now is the clock for GeneratedAt (tests).
	now func() time.Time
	// listPageSize is the S3 listing page size (default 1000, S3's maximum).
	listPageSize int32
	// maxFanIn is the merge fan-in (default 64; tests lower it).
	maxFanIn int
}

// DefaultMemoryBytes is the default Options.MemoryBytes.
const DefaultMemoryBytes = 128 << 20

// The defaults of the reading limits (see Options).
const (
	DefaultMaxLineBytes     = 1 << 20
	DefaultMaxFieldBytes    = 64 << 10
	DefaultMaxRatio         = 100
	DefaultMaxInflatedBytes = 32 << 30
	// inflateFloor is what any compressed part may inflate to before
	// MaxRatio applies.
	inflateFloor = 1 << 20
)

// Validate returns every problem with the options, each naming its field.
func (o *Options) Validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.From == "" {
		bad("from: give a file, a folder or s3://bucket/prefix")
	} else if strings.HasPrefix(o.From, "s3://") {
		if b, _ := splitS3(o.From); b == "" {
			bad("from: %q has no bucket (want s3://bucket/prefix)", o.From)
		}
	} else if strings.Contains(o.From, "://") {
		bad("from: %q: only local paths and s3:// are read", o.From)
	}
	switch o.Format {
	case FormatAuto, FormatCSV, FormatJSON, FormatParquet:
	default:
		bad("format: %q is not csv, jsonl or parquet", o.Format)
	}
	switch o.Shape {
	case ShapeAuto, ShapeRaw, ShapeAggregated:
	default:
		bad("shape: %q is not raw or aggregated", o.Shape)
	}
	switch o.TimeUnit {
	case UnitAuto, UnitSecond, UnitMilli, UnitMicro, UnitNano:
	default:
		bad("time unit: %q is not s, ms, us or ns", o.TimeUnit)
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && !o.Since.Before(o.Until) {
		bad("since/until: since %s is not before until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339))
	}
	if o.MinFrequency < 0 || o.MinFrequency > 1 {
		bad("min frequency: %g is outside [0, 1]", o.MinFrequency)
	}
	if o.Top < 0 {
		bad("top: %d is negative", o.Top)
	}
	if o.SequencedOnly && o.Sequences == "" {
		bad("sequenced only: needs a sequences file")
	}
	if o.MemoryBytes != 0 && o.MemoryBytes < 1<<16 {
		bad("memory: %d bytes is below the 64 KiB minimum", o.MemoryBytes)
	}
	if o.MaxLineBytes != 0 && o.MaxLineBytes < 1<<10 {
		bad("max line bytes: %d is below the 1 KiB minimum", o.MaxLineBytes)
	}
	if line := cmp.Or(o.MaxLineBytes, DefaultMaxLineBytes); o.MaxFieldBytes != 0 && (o.MaxFieldBytes < 64 || o.MaxFieldBytes > line) {
		bad("max field bytes: %d is below 64 or above the %d-byte line limit", o.MaxFieldBytes, line)
	}
	if o.MaxRatio < 0 {
		bad("max ratio: %d is negative", o.MaxRatio)
	}
	if o.MaxInflatedBytes < 0 {
		bad("max inflated bytes: %d is negative", o.MaxInflatedBytes)
	}
	if o.Root != "" && !strings.HasPrefix(o.From, "s3://") {
		if filepath.IsAbs(o.From) || !filepath.IsLocal(filepath.Clean(o.From)) && filepath.Clean(o.From) != "." {
			bad("from: %q is not a path inside the folder %s (no absolute paths, no \"..\")", o.From, o.Root)
		}
	}
	if o.Comma == '"' || o.Comma == '\n' || o.Comma == '\r' {
		bad("comma: %q cannot separate CSV fields", o.Comma)
	}
	if o.SessionGap < 0 || (o.SessionGap > 0 && o.SessionGap < MinSessionGap) {
		bad("session gap: %v is below the 1-minute minimum (sessions must begin in distinct minutes for their entry frequencies)", o.SessionGap)
	}
	if o.SessionGap > MaxSessionGap {
		bad("session gap: %v is over %v: a session's delays could be longer than the longest pause a behavior holds (delay_after_ms, one week)", o.SessionGap, MaxSessionGap)
	}
	if !o.Sessions && (o.SessionGap != 0 || len(o.DropTransitions) > 0) {
		bad("session gap, drop transitions: they need sessions (--sessions)")
	}
	for _, d := range o.DropTransitions {
		if _, _, ok := parseDrop(d); !ok {
			bad("drop transition: %s is not written from>to (e.g. conversations.history>chat.postMessage)", clip(d))
		}
	}
	if o.Sessions && o.Shape == ShapeAggregated {
		bad("sessions: a pre-aggregated export has no timestamps or call order: --sessions needs a raw call log")
	}
	if o.Shape == ShapeAggregated && (o.Hourly || !o.Since.IsZero() || !o.Until.IsZero() || len(o.Clients) > 0) {
		bad("shape: a pre-aggregated export has no timestamps or clients: --hourly, --since, --until and --client need a raw call log")
	}
	return errs
}

func (o *Options) withDefaults() Options {
	c := *o
	c.Columns = c.Columns.withDefaults()
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	if c.MaxFieldBytes == 0 {
		c.MaxFieldBytes = min(DefaultMaxFieldBytes, c.MaxLineBytes)
	}
	if c.MaxRatio == 0 {
		c.MaxRatio = DefaultMaxRatio
	}
	if c.MaxInflatedBytes == 0 {
		c.MaxInflatedBytes = DefaultMaxInflatedBytes
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	if c.Timezone == nil {
		c.Timezone = time.UTC
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.listPageSize == 0 {
		c.listPageSize = 1000
	}
	if c.maxFanIn == 0 {
		c.maxFanIn = 64
	}
	return c
}

// ErrEmptyExport is returned (wrapped) when an export has no rows to count.
var ErrEmptyExport = errors.New("empty export")

// Progress is reported while an export is read.
type Progress struct {
	// Object is the part being read, Objects how many were started.
	Object  string
	Objects int
	// Rows read so far, and bytes read from the source (compressed).
	Rows  int64
	Bytes int64
	// Elapsed since the start; RowsPerSec over the whole run.
	Elapsed    time.Duration
	RowsPerSec float64
	// Phase is "reading", "merging", "sessions" or "done".
	Phase string
}

func (p Progress) String() string {
	return fmt.Sprintf("%s: %s rows (%s rows/s), %s read, %d objects, at %s",
		p.Phase, commas(p.Rows), commas(int64(p.RowsPerSec)), byteSize(p.Bytes), p.Objects, p.Object)
}
