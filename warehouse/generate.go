package warehouse

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/koipond/koipond/behaviors"
)

// Rows counts what happened to the rows of an export.
type Rows struct {
	Read     int64 `json:"read"`
	Used     int64 `json:"used"`
	Filtered int64 `json:"filtered"`
	Skipped  int64 `json:"skipped"`
	// SkippedBy counts skipped rows by reason (the Reason constants).
	SkippedBy map[string]int64 `json:"skipped_by,omitempty"`
	// FilteredBy counts filtered rows by filter: "team", "client", "time".
	FilteredBy map[string]int64 `json:"filtered_by,omitempty"`
	// Examples holds the first few skipped rows' errors.
	Examples []string `json:"examples,omitempty"`
}

// Method is one method's line of the result.
type Method struct {
	Name string `json:"name"`
	// Frequency is the probability that one user calls the method in a
	// given active minute.
	Frequency float64 `json:"frequency"`
	// UserMinutes is the numerator: user-minutes with at least one call.
	UserMinutes int64 `json:"user_minutes"`
	// Calls is the call volume: rows (raw) or user-minutes (aggregated).
	Calls int64 `json:"calls"`
	// Hourly holds 24 multipliers of Frequency (with Options.Hourly).
	Hourly []float64 `json:"hourly,omitempty"`
	// HasSequence is set when Options.Sequences has a sequence for it.
	HasSequence bool `json:"has_sequence,omitempty"`
}

// Coverage compares the methods with a sequences file.
type Coverage struct {
	File string `json:"file"`
	// Missing lists the written methods without a sequence, most frequent
	// first.
	Missing []string `json:"missing"`
	// Unused lists sequences for methods the export never called.
	Unused []string `json:"unused"`
	// CoveredCalls / TotalCalls is the share of the export's real call
	// volume that the written methods with a sequence represent.
	CoveredCalls int64   `json:"covered_calls"`
	TotalCalls   int64   `json:"total_calls"`
	Share        float64 `json:"share"`
}

// Result is a generated frequency table and how it was made.
type Result struct {
	Source  string `json:"source"`
	Objects int    `json:"objects"`
	// Bytes read from the source (compressed size).
	Bytes int64 `json:"bytes"`
	// Formats counts parts by format and compression ("csv+gzip").
	Formats map[string]int `json:"formats"`
	Shape   Shape          `json:"shape"`
	Rows    Rows           `json:"rows"`
	// First and Last are the earliest and latest used timestamps (raw).
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
	// ActiveUserMinutes is the denominator; Users the distinct users (raw).
	ActiveUserMinutes int64 `json:"active_user_minutes"`
	Users             int64 `json:"users,omitempty"`
	// TotalCalls is the call volume of every method, written or not.
	TotalCalls int64 `json:"total_calls"`
	// Methods written, most frequent first; Dropped by MinFrequency, Top
	// or SequencedOnly.
	Methods []Method `json:"methods"`
	Dropped []string `json:"dropped,omitempty"`
	// DroppedWhy lists the dropped methods by reason (the Drop constants).
	DroppedWhy map[string][]string `json:"dropped_why,omitempty"`
	// DroppedCalls is the call volume of the dropped methods, and
	// DroppedShare its share of TotalCalls: the traffic the output leaves
	// out (background calls such as presence pings are often among it).
	DroppedCalls int64   `json:"dropped_calls,omitempty"`
	DroppedShare float64 `json:"dropped_share,omitempty"`
	// Timezone of the hourly profiles (nil without).
	Timezone *time.Location `json:"-"`
	Coverage *Coverage      `json:"coverage,omitempty"`
	// Sessions is the learned call order (Options.Sessions).
	Sessions *Sessions `json:"sessions,omitempty"`
	// Filters in words, for the header.
	Filters     []string  `json:"filters,omitempty"`
	GeneratedAt time.Time `json:"generated_at"`
	// Tool is Options.Tool: the program and version that made the result.
	Tool    string        `json:"tool,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// SortRuns is how many sorted runs spilled to disk (0: all in memory).
	SortRuns int `json:"sort_runs"`
}

// The reasons a method is dropped, the keys of Result.DroppedWhy.
const (
	DropMinFrequency = "min_frequency" // below Options.MinFrequency
	DropNoSequence   = "no_sequence"   // Options.SequencedOnly and no sequence
	DropTop          = "top"           // past the Options.Top most frequent
)

// ingest is the state of one Generate call while rows stream in.
type ingest struct {
	o       *Options
	names   [numCols]string
	parser  rowParser
	decided bool
	shapeBy string // the object that decided the shape
	cnt     *counter
	// calls sorts every call for Options.Sessions (nil without), and
	// seqSteps holds the sequences file's steps to copy into sessions.
	calls    *callSorter
	seqSteps map[string][]map[string]json.RawMessage
	agg      map[string]*[2]int64 // aggregated: method → user-minutes, active
	aggVol   map[string]int64
	// aggBytes is the length of agg's keys.
	aggBytes int64
	rows     Rows
	minSec   int64
	maxSec   int64
	teams    map[string]bool
	clients  map[string]bool
	since    int64
	until    int64
	// progress
	progress  func(Progress)
	start     time.Time
	nextTick  time.Time
	bytes     int64
	objects   int
	curObject string
	pr        row
	// lineBuf is the CSV line buffer, reused from part to part.
	lineBuf *bufio.Reader
}

func (g *ingest) shapeDecided() bool { return g.decided }

// decideShape fixes the shape on the first part that tells.
func (g *ingest) decideShape(obj string, aggregated bool) error {
	shape := ShapeRaw
	if aggregated {
		shape = ShapeAggregated
	}
	if g.o.Shape != ShapeAuto {
		shape = g.o.Shape
	}
	if !g.decided {
		g.decided, g.shapeBy = true, obj
		g.parser.shape = shape
		if shape == ShapeAggregated && g.o.Sessions {
			return fmt.Errorf("%s: --sessions needs a raw call log (user, method, timestamp per call): this export is pre-aggregated (it has %q and %q), "+
				"so it holds no timestamps and no order of calls to learn sessions from", obj, g.names[colUserMinutes], g.names[colActiveUserMinutes])
		}
		if shape == ShapeAggregated && (g.o.Hourly || !g.o.Since.IsZero() || !g.o.Until.IsZero() || len(g.o.Clients) > 0) {
			return fmt.Errorf("%s: a pre-aggregated export (it has %q and %q) has no timestamps or clients: --hourly, --since, --until and --client need a raw call log",
				obj, g.names[colUserMinutes], g.names[colActiveUserMinutes])
		}
		return nil
	}
	if shape != g.parser.shape {
		return fmt.Errorf("%s: a %s export, but %s was %s: parts must have one shape", obj, shape, g.shapeBy, g.parser.shape)
	}
	return nil
}

// bad handles a bad row: an error, or a count with SkipBadRows.
func (g *ingest) bad(e *RowError) error {
	g.rows.Read++
	if !g.o.SkipBadRows {
		return e
	}
	g.rows.Skipped++
	if g.rows.SkippedBy == nil {
		g.rows.SkippedBy = map[string]int64{}
	}
	g.rows.SkippedBy[e.Reason]++
	if len(g.rows.Examples) < 5 {
		g.rows.Examples = append(g.rows.Examples, e.Error())
	}
	return nil
}

func (g *ingest) filtered(by string) {
	g.rows.Filtered++
	if g.rows.FilteredBy == nil {
		g.rows.FilteredBy = map[string]int64{}
	}
	g.rows.FilteredBy[by]++
}

// row takes one record of a part.
func (g *ingest) row(ctx context.Context, obj string, n, line int64, rec *record) error {
	if g.rows.Read&0xfff == 0 {
		if err := g.tick(ctx, false); err != nil {
			return err
		}
	}
	r := &g.pr
	if e := g.parser.parse(rec, r); e != nil {
		e.Object, e.Row, e.Line = obj, n, line
		return g.bad(e)
	}
	g.rows.Read++
	if !utf8.ValidString(r.method) {
		// As JSON would write it: two spellings must not become two
		// identical keys of the output.
		r.method = strings.ToValidUTF8(r.method, "\uFFFD")
	}
	if g.teams != nil && !g.teams[r.team] {
		g.filtered("team")
		return nil
	}
	if g.clients != nil && !g.clients[r.client] {
		g.filtered("client")
		return nil
	}
	if g.parser.shape == ShapeAggregated {
		a := g.agg[r.method]
		if a == nil {
			if len(g.agg) >= maxMethods {
				return fmt.Errorf("%s: row %d: more than %d distinct methods: is %q the method column?", obj, n, maxMethods, g.names[colMethod])
			}
			if g.aggBytes += int64(len(r.method)); g.aggBytes > maxMethodBytes {
				return fmt.Errorf("%s: row %d: %w: the distinct method names take more than %s: is %q the method column?", obj, n, ErrLimit, byteSize(maxMethodBytes), g.names[colMethod])
			}
			a = new([2]int64)
			g.agg[string([]byte(r.method))] = a
		}
		if a[0] > math.MaxInt64-r.userMinutes || a[1] > math.MaxInt64-r.activeMinutes {
			return &RowError{Object: obj, Row: n, Line: line, Column: g.names[colUserMinutes], Reason: ReasonCount, Msg: "the sum of counts overflows"}
		}
		a[0] += r.userMinutes
		a[1] += r.activeMinutes
		g.rows.Used++
		return nil
	}
	if (g.since != 0 && r.sec < g.since) || (g.until != 0 && r.sec >= g.until) {
		g.filtered("time")
		return nil
	}
	m, err := g.cnt.method(r.method)
	if err != nil {
		return fmt.Errorf("%s: row %d: %w", obj, n, err)
	}
	if err := g.cnt.add(r.user, floorDiv(r.sec, 60), m); err != nil {
		return err
	}
	if g.calls != nil {
		if err := g.calls.add(r.user, r.ms, m, int32(g.objects)); err != nil {
			return err
		}
	}
	if g.rows.Used == 0 || r.sec < g.minSec {
		g.minSec = r.sec
	}
	if g.rows.Used == 0 || r.sec > g.maxSec {
		g.maxSec = r.sec
	}
	g.rows.Used++
	return nil
}

// tick checks for cancellation and reports progress when due.
func (g *ingest) tick(ctx context.Context, force bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	if g.progress == nil || (!force && now.Before(g.nextTick)) {
		return nil
	}
	g.nextTick = now.Add(g.o.ProgressEvery)
	g.report("reading")
	return nil
}

func (g *ingest) report(phase string) {
	if g.progress == nil {
		return
	}
	el := time.Since(g.start)
	g.progress(Progress{Object: g.curObject, Objects: g.objects, Rows: g.rows.Read, Bytes: g.bytes,
		Elapsed: el, RowsPerSec: float64(g.rows.Read) / max(el.Seconds(), 1e-9), Phase: phase})
}

// newIngest is the state of a run with options o (defaults applied).
func newIngest(o *Options, progress func(Progress), tmp string) *ingest {
	g := &ingest{o: o, names: o.Columns.names(), progress: progress, start: time.Now(),
		agg: map[string]*[2]int64{}}
	g.parser = rowParser{names: g.names, unit: o.TimeUnit}
	g.nextTick = g.start.Add(o.ProgressEvery)
	if len(o.Teams) > 0 {
		g.teams = setOf(o.Teams)
	}
	if len(o.Clients) > 0 {
		g.clients = setOf(o.Clients)
	}
	if !o.Since.IsZero() {
		g.since = o.Since.Unix()
	}
	if !o.Until.IsZero() {
		g.until = o.Until.Unix()
	}
	if o.Sessions {
		// The two sorts share the memory budget.
		g.cnt = newCounter(o.MemoryBytes/2, tmp, o.maxFanIn)
		g.calls = newCallSorter(o.MemoryBytes/2, tmp, o.maxFanIn)
		return g
	}
	g.cnt = newCounter(o.MemoryBytes, tmp, o.maxFanIn)
	return g
}

// Generate reads the export of o.From and computes its frequency table.
// progress, when not nil, is called from Generate's goroutine about every
// o.ProgressEvery. Nothing is written: see Result.WriteFile.
func Generate(ctx context.Context, opts Options, progress func(Progress)) (*Result, error) {
	if errs := opts.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("warehouse options: %w", errors.Join(errs...))
	}
	o := opts.withDefaults()
	var seqs map[string]bool
	if o.Sequences != "" {
		var err error
		if seqs, err = loadSequences(o.Sequences); err != nil {
			return nil, err
		}
	}
	tmp := o.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	g := newIngest(&o, progress, tmp)
	defer g.cnt.cleanup()
	if g.calls != nil {
		defer g.calls.cleanup()
		if o.Sequences != "" {
			var err error
			if g.seqSteps, err = loadSequenceSteps(o.Sequences); err != nil {
				return nil, err
			}
		}
	}

	src, err := openSource(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer src.close()
	res := &Result{Source: cmp.Or(o.SourceName, src.String()), Formats: map[string]int{}, Tool: o.Tool}
	err = src.each(ctx, func(obj object) error {
		g.objects++
		g.curObject = obj.name
		kind, err := g.readObject(ctx, obj, tmp)
		if err != nil {
			return err
		}
		res.Formats[kind]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Objects, res.Bytes = g.objects, g.bytes
	if g.objects == 0 {
		return nil, fmt.Errorf("%s: %w: no parts found (files starting with _ or . or README, manifests and .md files are skipped)", src, ErrEmptyExport)
	}
	if g.rows.Used == 0 {
		return nil, fmt.Errorf("%s: %w: %s", src, ErrEmptyExport, g.noRowsReason())
	}
	g.report("merging")
	res.Shape, res.Rows = g.parser.shape, g.rows
	if res.Shape == ShapeAggregated {
		g.aggregatedMethods(res)
	} else if err := g.rawMethods(ctx, res); err != nil {
		return nil, err
	}
	if g.calls != nil && res.Shape == ShapeRaw {
		if err := g.learnSessions(ctx, res); err != nil {
			return nil, err
		}
	}
	g.finishMethods(res, seqs)
	res.Filters = o.filterWords()
	res.GeneratedAt = o.now().UTC()
	res.Elapsed = time.Since(g.start)
	g.report("done")
	return res, nil
}

func (g *ingest) noRowsReason() string {
	r := g.rows
	switch {
	case r.Read == 0:
		return fmt.Sprintf("%d parts and no data rows", g.objects)
	case r.Skipped == r.Read:
		return fmt.Sprintf("all %d rows were bad and skipped (%s); first: %s", r.Read, byReason(r.SkippedBy), first(r.Examples))
	default:
		return fmt.Sprintf("no rows left after the filters: %d read, %d filtered (%s), %d skipped", r.Read, r.Filtered, byReason(r.FilteredBy), r.Skipped)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// readObject reads one part, whatever its compression and format. A
// compressed part is read through an inflateGuard.
func (g *ingest) readObject(ctx context.Context, obj object, tmp string) (string, error) {
	rc, err := obj.open(ctx)
	if err != nil {
		return "", fmt.Errorf("%s: %w", obj.name, err)
	}
	defer rc.Close()
	before := g.bytes
	br := bufio.NewReaderSize(countingReader{rc, &g.bytes}, 256<<10)
	r, comp, closeZ, err := decompress(br, g.o.MaxInflatedBytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", obj.name, err)
	}
	defer closeZ()
	if comp != "" {
		r = &inflateGuard{r: r, in: func() int64 { return g.bytes - before }, ratio: int64(g.o.MaxRatio),
			max: g.o.MaxInflatedBytes, obj: obj.name, kind: comp}
	}
	format := g.o.Format
	if format == FormatAuto {
		var ok bool
		if format, ok = formatByName(obj.name); !ok {
			zb, isBuf := r.(*bufio.Reader)
			if !isBuf {
				zb = bufio.NewReaderSize(r, 64<<10)
				r = zb
			}
			head, _ := zb.Peek(512)
			format = formatBySniff(head)
		}
	}
	kind := string(format)
	if comp != "" {
		kind += "+" + comp
	}
	switch format {
	case FormatCSV:
		comma := g.o.Comma
		if comma == 0 {
			comma = ','
			if isTSV(obj.name) {
				comma = '\t'
			}
		}
		err = g.readCSV(ctx, obj.name, r, comma)
	case FormatJSON:
		err = g.readJSONLines(ctx, obj.name, r)
	case FormatParquet:
		if f, ok := rc.(*os.File); ok && comp == "" {
			// A local file: random access as it is (ReadAt ignores what
			// the sniffing read).
			st, serr := f.Stat()
			if serr != nil {
				return kind, fmt.Errorf("%s: %w", obj.name, serr)
			}
			g.bytes = before + st.Size()
			err = g.readParquet(ctx, obj.name, f, st.Size())
			break
		}
		// Parquet needs random access: spool the part to a temporary file,
		// no bigger than MaxInflatedBytes.
		f, ferr := os.CreateTemp(tmp, "koipond-warehouse-parquet-*")
		if ferr != nil {
			return kind, fmt.Errorf("%s: spooling Parquet: %w", obj.name, ferr)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		size, cerr := io.Copy(f, io.LimitReader(r, g.o.MaxInflatedBytes+1))
		if cerr != nil {
			if errors.Is(cerr, ErrLimit) {
				return kind, cerr
			}
			return kind, fmt.Errorf("%s: spooling Parquet: %w", obj.name, cerr)
		}
		if size > g.o.MaxInflatedBytes {
			return kind, fmt.Errorf("%s: %w: the Parquet part is bigger than the %s limit on one part (MaxInflatedBytes, --max-inflated-bytes)",
				obj.name, ErrLimit, limitWords(g.o.MaxInflatedBytes))
		}
		err = g.readParquet(ctx, obj.name, f, size)
	}
	return kind, err
}

func (g *ingest) rawMethods(ctx context.Context, res *Result) error {
	var hourOf func(int64) int
	if g.o.Hourly {
		if g.maxSec-g.minSec < 86400-60 {
			return fmt.Errorf("%s: --hourly needs at least a day of data: the rows span only %s", res.Source, time.Duration(g.maxSec-g.minSec)*time.Second)
		}
		hc := &hourCache{loc: g.o.Timezone}
		hourOf = hc.hourOf
		res.Timezone = g.o.Timezone
	}
	c, err := g.cnt.finish(ctx, hourOf)
	if err != nil {
		return err
	}
	res.SortRuns = c.runs
	res.First, res.Last = time.Unix(g.minSec, 0).UTC(), time.Unix(g.maxSec, 0).UTC()
	res.ActiveUserMinutes, res.Users = c.active, c.users
	var occ [24]int64
	if hourOf != nil {
		occ = hourOccurrences(floorDiv(g.minSec, 60), floorDiv(g.maxSec, 60), g.o.Timezone)
	}
	for id, name := range g.cnt.methods {
		m := Method{Name: name, UserMinutes: c.userMinutes[id], Calls: g.cnt.calls[id],
			Frequency: float64(c.userMinutes[id]) / float64(c.active)}
		if hourOf != nil {
			m.Hourly = hourlyProfile(c.hourly[id], occ)
		}
		res.Methods = append(res.Methods, m)
		res.TotalCalls += m.Calls
	}
	return nil
}

// hourlyProfile turns per-hour user-minutes into multipliers with mean 1:
// the volume per occurrence of each hour, over the mean of those.
func hourlyProfile(n [24]int64, occ [24]int64) []float64 {
	var rate [24]float64
	sum := 0.0
	for h := range 24 {
		if occ[h] > 0 {
			rate[h] = float64(n[h]) / float64(occ[h])
		}
		sum += rate[h]
	}
	out := make([]float64, 24)
	if sum == 0 {
		for h := range out {
			out[h] = 1
		}
		return out
	}
	for h := range 24 {
		out[h] = rate[h] * 24 / sum
	}
	return out
}

func (g *ingest) aggregatedMethods(res *Result) {
	for name, a := range g.agg {
		f := 0.0
		if a[1] > 0 {
			f = float64(a[0]) / float64(a[1])
		}
		res.Methods = append(res.Methods, Method{Name: name, UserMinutes: a[0], Calls: a[0], Frequency: f})
		res.TotalCalls += a[0]
		res.ActiveUserMinutes = max(res.ActiveUserMinutes, a[1])
	}
}

// finishMethods sorts, filters and compares the methods with sequences.
func (g *ingest) finishMethods(res *Result, seqs map[string]bool) {
	ms := res.Methods
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].Frequency != ms[j].Frequency {
			return ms[i].Frequency > ms[j].Frequency
		}
		return ms[i].Name < ms[j].Name
	})
	var kept []Method
	for _, m := range ms {
		m.HasSequence = seqs[m.Name]
		why := ""
		switch {
		case m.Frequency < g.o.MinFrequency:
			why = DropMinFrequency
		case g.o.SequencedOnly && !m.HasSequence:
			why = DropNoSequence
		case g.o.Top > 0 && len(kept) >= g.o.Top:
			why = DropTop
		}
		if why != "" {
			res.Dropped = append(res.Dropped, m.Name)
			if res.DroppedWhy == nil {
				res.DroppedWhy = map[string][]string{}
			}
			res.DroppedWhy[why] = append(res.DroppedWhy[why], m.Name)
			res.DroppedCalls += m.Calls
			continue
		}
		kept = append(kept, m)
	}
	res.Methods = kept
	if res.TotalCalls > 0 {
		res.DroppedShare = float64(res.DroppedCalls) / float64(res.TotalCalls)
	}
	if seqs == nil {
		return
	}
	cov := &Coverage{File: cmp.Or(g.o.SequencesName, g.o.Sequences), TotalCalls: res.TotalCalls, Missing: []string{}, Unused: []string{}}
	called := map[string]bool{}
	for _, m := range ms {
		called[m.Name] = true
	}
	for _, m := range kept {
		if m.HasSequence {
			cov.CoveredCalls += m.Calls
		} else {
			cov.Missing = append(cov.Missing, m.Name)
		}
	}
	for name := range seqs {
		if !called[name] {
			cov.Unused = append(cov.Unused, name)
		}
	}
	sort.Strings(cov.Unused)
	if cov.TotalCalls > 0 {
		cov.Share = float64(cov.CoveredCalls) / float64(cov.TotalCalls)
	}
	res.Coverage = cov
}

// loadSequences returns the names of the behaviors with steps in a
// behavior file.
func loadSequences(path string) (map[string]bool, error) {
	set, diags := behaviors.Load(path)
	if set == nil {
		return nil, fmt.Errorf("reading the sequences file: %w", errors.New(diags.Error()))
	}
	out := map[string]bool{}
	for _, b := range set.Behaviors {
		if b.Sequence != nil {
			out[b.Name] = true
		}
	}
	return out, nil
}

func setOf(list []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range list {
		m[v] = true
	}
	return m
}

func (o *Options) filterWords() []string {
	var f []string
	if len(o.Teams) > 0 {
		f = append(f, fmt.Sprintf("team in %q", o.Teams))
	}
	if len(o.Clients) > 0 {
		f = append(f, fmt.Sprintf("client in %q", o.Clients))
	}
	if !o.Since.IsZero() {
		f = append(f, "since "+o.Since.UTC().Format(time.RFC3339))
	}
	if !o.Until.IsZero() {
		f = append(f, "until "+o.Until.UTC().Format(time.RFC3339))
	}
	return f
}
