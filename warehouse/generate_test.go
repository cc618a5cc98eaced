package warehouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/klauspost/compress/zstd"
	"github.com/koipond/koipond/behaviors"
)

// Known answer: every active user-minute calls users.getPresence, and each
// other method independently with a known probability, 1 to 3 times at
// random seconds; rows are shuffled across parts. The frequencies must come
// back within 4 standard errors of the truth; counting calls instead of
// user-minutes, or users instead of user-minutes, lands far outside.
func TestKnownAnswer(t *testing.T) {
	truth := map[string]float64{"conversations.history": 0.5, "chat.postMessage": 0.2393,
		"users.info": 0.05, "reactions.add": 0.01, "search.messages": 0.001}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range truth {
			if !yield(k) {
				return
			}
		}
	})
	r := rand.New(rand.NewPCG(7, 7))
	var calls []call
	active := 0
	start := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	for u := range 1500 {
		for m := range 240 {
			if r.Float64() >= 0.3 {
				continue
			}
			active++
			at := func() time.Time {
				return start.Add(time.Duration(m)*time.Minute + time.Duration(r.IntN(60))*time.Second)
			}
			calls = append(calls, call{User: fmt.Sprintf("user-%d", u), Method: "users.getPresence", T: at()})
			for _, name := range names {
				if r.Float64() < truth[name] {
					for range 1 + r.IntN(3) {
						calls = append(calls, call{User: fmt.Sprintf("user-%d", u), Method: name, T: at()})
					}
				}
			}
		}
	}
	r.Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })
	dir := t.TempDir()
	for i, p := range split(calls, 4) {
		writeFile(t, dir, fmt.Sprintf("export/part-%d.csv.gz", i), gz(csvBytes(p, i)))
	}
	res := generate(t, Options{From: filepath.Join(dir, "export"), MemoryBytes: 1 << 20})
	if res.ActiveUserMinutes != int64(active) {
		t.Fatalf("active user-minutes = %d, want %d", res.ActiveUserMinutes, active)
	}
	truth["users.getPresence"] = 1
	for _, m := range res.Methods {
		p, ok := truth[m.Name]
		if !ok {
			t.Errorf("unexpected method %q", m.Name)
			continue
		}
		se := math.Sqrt(p * (1 - p) / float64(active))
		if math.Abs(m.Frequency-p) > 4*se+1e-12 {
			t.Errorf("%s: frequency %.5f, true %.5f: off by %.1f SE", m.Name, m.Frequency, p, math.Abs(m.Frequency-p)/se)
		}
	}
	checkSame(t, res, calls)
}

// Bad input stops the run with an error naming object, row and column.
func TestBadInput(t *testing.T) {
	good := "user,method,timestamp\nu1,a.b,2026-11-01T00:00:00Z\n"
	for _, tc := range []struct {
		name  string
		file  string // under the export folder
		data  string
		opts  func(*Options)
		want  []string // in the error
		row   int64    // RowError.Row, when a RowError
		col   string   // RowError.Column
		empty bool     // errors.Is ErrEmptyExport
	}{
		// The header lacks a required column: named, with the flag to fix it.
		{name: "missing column", file: "a.csv", data: "user,method,time\nu1,a.b,2026-11-01T00:00:00Z\n",
			want: []string{"a.csv", `column "timestamp" not found in the CSV header`, `"time"`, "--timestamp-column"}},
		// A timestamp nobody can read, on the third data row.
		{name: "unparseable timestamp", file: "a.csv", data: good + "u2,a.b,1793491200\nu3,a.b,yesterday\n",
			want: []string{"a.csv", "row 3", "(line 4)", `column "timestamp"`, `"yesterday"`}, row: 3, col: "timestamp"},
		// Milliseconds read as seconds would be the year 58000: refused.
		{name: "timestamp out of range", file: "a.csv", data: "user,method,timestamp\nu1,a.b,1900-01-01T00:00:00Z\n",
			want: []string{"row 1", `column "timestamp"`}, row: 1, col: "timestamp"},
		// A row with a field too many.
		{name: "ragged row", file: "a.csv", data: good + "u2,a.b,2026-11-01T00:00:00Z,extra\n",
			want: []string{"a.csv", "row 2", "4 fields, but the header has 3"}, row: 2},
		// An empty user.
		{name: "empty user", file: "a.csv", data: good + ",a.b,2026-11-01T00:00:00Z\n",
			want: []string{"row 2", `column "user"`, "no value"}, row: 2, col: "user"},
		// A JSON line without the user key.
		{name: "jsonl missing key", file: "a.jsonl", data: `{"user":"u1","method":"m","timestamp":1793491200}` + "\n" + `{"method":"m","timestamp":1793491200}` + "\n",
			want: []string{"a.jsonl", "row 2", `column "user"`}, row: 2, col: "user"},
		// A line that is not JSON.
		{name: "jsonl malformed", file: "a.jsonl", data: `{"user":"u1","method":"m","timestamp":1793491200` + "\n",
			want: []string{"a.jsonl", "row 1"}, row: 1},
		// A structured value where a string belongs.
		{name: "jsonl object value", file: "a.jsonl", data: `{"user":{"id":1},"method":"m","timestamp":1793491200}` + "\n",
			want: []string{"row 1", `column "user"`, "a JSON object"}, row: 1, col: "user"},
		// Pre-aggregated: a negative count.
		{name: "negative count", file: "agg.csv", data: "method,user_minutes,active_user_minutes\na,5,10\nb,-3,10\n",
			want: []string{"agg.csv", "row 2", `column "user_minutes"`, "negative"}, row: 2, col: "user_minutes"},
		// Pre-aggregated: not a number.
		{name: "bad count", file: "agg.csv", data: "method,user_minutes,active_user_minutes\na,5,lots\n",
			want: []string{"row 1", `column "active_user_minutes"`, "not a whole number"}, row: 1, col: "active_user_minutes"},
		// Pre-aggregated: more user-minutes than active ones.
		{name: "count above active", file: "agg.csv", data: "method,user_minutes,active_user_minutes\na,50,10\n",
			want: []string{"row 1", "more than the 10 active"}, row: 1, col: "user_minutes"},
		// A CSV part with a header and nothing else.
		{name: "header only", file: "a.csv", data: "user,method,timestamp\n",
			want: []string{"empty export", "no data rows"}, empty: true},
		// An empty file.
		{name: "empty file", file: "a.csv", data: "", want: []string{"empty export"}, empty: true},
		// Only non-data files.
		{name: "no parts", file: "_SUCCESS", data: "", want: []string{"empty export", "no parts"}, empty: true},
		// Every row filtered out.
		{name: "all filtered", file: "a.csv", data: "user,method,timestamp,team\nu1,a.b,2026-11-01T00:00:00Z,T1\n",
			opts: func(o *Options) { o.Teams = []string{"T9"} }, want: []string{"empty export", "filters", "team: 1"}, empty: true},
		// A team filter on an export without teams.
		{name: "filter without column", file: "a.csv", data: good,
			opts: func(o *Options) { o.Teams = []string{"T1"} }, want: []string{`column "team" not found`, "needed by the team filter"}},
		// Hour-of-day profiles from less than a day.
		{name: "hourly too short", file: "a.csv", data: good,
			opts: func(o *Options) { o.Hourly = true }, want: []string{"--hourly needs at least a day"}},
		// Not Parquet at all, though named so.
		{name: "corrupt parquet", file: "a.parquet", data: "PAR1 this is not parquet",
			want: []string{"a.parquet", "Parquet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "export/"+tc.file, []byte(tc.data))
			o := Options{From: filepath.Join(dir, "export"), TempDir: t.TempDir()}
			if tc.opts != nil {
				tc.opts(&o)
			}
			_, err := Generate(context.Background(), o, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var re *RowError
			if tc.row > 0 {
				if !errors.As(err, &re) {
					t.Fatalf("%v is not a RowError", err)
				}
				if re.Row != tc.row || re.Column != tc.col || !strings.HasSuffix(re.Object, tc.file) {
					t.Errorf("RowError at %s row %d column %q, want %s row %d column %q", re.Object, re.Row, re.Column, tc.file, tc.row, tc.col)
				}
			}
			if errors.Is(err, ErrEmptyExport) != tc.empty {
				t.Errorf("errors.Is(ErrEmptyExport) = %v, want %v", !tc.empty, tc.empty)
			}
		})
	}
}

// A missing Parquet column is named like a missing CSV one.
func TestParquetMissingColumn(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.parquet", parquetBytes(t, genCalls(1, 10, 2, day0, 10)))
	_, err := Generate(context.Background(), Options{From: filepath.Join(dir, "p.parquet"),
		Columns: Columns{Method: "endpoint"}, TempDir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), `column "endpoint" not found in the Parquet schema`) ||
		!strings.Contains(err.Error(), "p.parquet") || !strings.Contains(err.Error(), "--method-column") {
		t.Fatalf("err = %v", err)
	}
}

// With SkipBadRows, bad rows are counted by reason and the rest counted
// exactly as if the bad rows were not there.
func TestSkipBadRows(t *testing.T) {
	calls := genCalls(5, 3000, 40, day0, 300)
	var b bytes.Buffer
	b.Write(csvBytes(calls[:1500], 0))
	b.WriteString("u1,m,not-a-time,T1,desktop\n")    // bad timestamp
	b.WriteString(",m,2026-11-02T00:00:00Z,T1,x\n")  // missing user
	b.WriteString("u1,m,2026-11-02T00:00:00Z\n")     // too few fields
	b.WriteString("u1,m,99999999999999999999,T,x\n") // bad timestamp
	b.Write(csvBytes(calls[1500:], 1)[len("user,method,timestamp,team,client\n"):])
	dir := t.TempDir()
	writeFile(t, dir, "a.csv", b.Bytes())
	res := generate(t, Options{From: filepath.Join(dir, "a.csv"), SkipBadRows: true})
	checkSame(t, res, calls)
	want := map[string]int64{ReasonTimestamp: 2, ReasonMissing: 1, ReasonMalformed: 1}
	if fmt.Sprint(res.Rows.SkippedBy) != fmt.Sprint(want) || res.Rows.Skipped != 4 || res.Rows.Read != 3004 {
		t.Errorf("rows %+v, want skipped by %v", res.Rows, want)
	}
	if len(res.Rows.Examples) == 0 || !strings.Contains(res.Rows.Examples[0], "row 1501") {
		t.Errorf("examples %q", res.Rows.Examples)
	}
	var out bytes.Buffer
	res.Encode(&out)
	var file struct {
		Generated Provenance `json:"generated"`
	}
	if err := json.Unmarshal(out.Bytes(), &file); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if r := file.Generated.Rows; r.Skipped != 4 || fmt.Sprint(r.SkippedBy) != fmt.Sprint(want) || len(r.Examples) != 0 {
		t.Errorf("provenance does not report the skipped rows (without quoting them): %+v", r)
	}
}

// Team, client and time filters keep exactly the rows they should.
func TestFilters(t *testing.T) {
	calls := genCalls(6, 20_000, 90, day0, 3*24*60)
	dir := t.TempDir()
	writeFile(t, dir, "x/a.jsonl", jsonlBytes(calls[:10_000]))
	writeFile(t, dir, "x/b.csv", csvBytes(calls[10_000:], 2))
	since, until := day0.Add(20*time.Hour), day0.Add(50*time.Hour)
	var keep []call
	for _, c := range calls {
		if (c.Team == "T1" || c.Team == "T2") && c.Client == "mobile" && !c.T.Before(since) && c.T.Before(until) {
			keep = append(keep, c)
		}
	}
	res := generate(t, Options{From: filepath.Join(dir, "x"), Teams: []string{"T1", "T2"}, Clients: []string{"mobile"}, Since: since, Until: until})
	checkSame(t, res, keep)
	if res.Rows.Used != int64(len(keep)) || res.Rows.Filtered != int64(len(calls)-len(keep)) {
		t.Errorf("rows %+v, want %d used", res.Rows, len(keep))
	}
	if res.First.Before(since) || !res.Last.Before(until) {
		t.Errorf("time range %v..%v outside the filter", res.First, res.Last)
	}
}

// Pre-aggregated exports: per method, Σ user_minutes / Σ active_user_minutes
// over its rows (here one slice per day), with renamed, upper-cased columns.
func TestAggregated(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "agg/day1.csv", []byte("API_METHOD,UM,AUM\nchat.postMessage,100,1000\nusers.info,10,1000\n"))
	writeFile(t, dir, "agg/day2.jsonl", []byte(`{"api_method":"chat.postMessage","um":300,"aum":3000}`+"\n"+`{"api_method":"users.info","um":"50","aum":3000}`+"\n"))
	res := generate(t, Options{From: filepath.Join(dir, "agg"), Columns: Columns{Method: "api_method", UserMinutes: "um", ActiveUserMinutes: "aum"}})
	if res.Shape != ShapeAggregated {
		t.Fatalf("shape %q", res.Shape)
	}
	want := map[string]float64{"chat.postMessage": 0.1, "users.info": 0.015}
	for _, m := range res.Methods {
		if math.Abs(m.Frequency-want[m.Name]) > 1e-12 {
			t.Errorf("%s: %v, want %v", m.Name, m.Frequency, want[m.Name])
		}
	}
	// A raw part beside aggregated ones is refused.
	writeFile(t, dir, "agg/day3.csv", []byte("user,api_method,timestamp\nu,a,1793491200\n"))
	_, err := Generate(context.Background(), Options{From: filepath.Join(dir, "agg"), Columns: Columns{Method: "api_method", UserMinutes: "um", ActiveUserMinutes: "aum"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "one shape") {
		t.Errorf("mixed shapes: %v", err)
	}
}

// Hour-of-day profiles in a zone with a half-hour offset: method a's volume
// grows with the local hour, b is flat; two whole local days.
func TestHourly(t *testing.T) {
	loc, err := time.LoadLocation("Asia/Kolkata") // time/tzdata is linked in: never missing
	if err != nil {
		t.Fatal(err)
	}
	var calls []call
	for d := range 2 {
		for h := range 24 {
			hour := time.Date(2026, 11, 2+d, h, 0, 0, 0, loc)
			for i := range 10 * (1 + h) {
				calls = append(calls, call{User: fmt.Sprintf("a%d", i), Method: "conversations.history", T: hour.Add(time.Duration(i%60) * time.Minute)})
			}
			for i := range 50 {
				calls = append(calls, call{User: fmt.Sprintf("b%d", i), Method: "chat.postMessage", T: hour.Add(time.Duration(i%60)*time.Minute + 30*time.Second)})
			}
		}
	}
	dir := t.TempDir()
	writeFile(t, dir, "h.csv", csvBytes(calls, 4))
	res := generate(t, Options{From: filepath.Join(dir, "h.csv"), Hourly: true, Timezone: loc, MemoryBytes: 1 << 16})
	checkSame(t, res, calls)
	for _, m := range res.Methods {
		sum := 0.0
		for h, v := range m.Hourly {
			want := 1.0
			if m.Name == "conversations.history" {
				want = float64(1+h) / 12.5
			}
			if math.Abs(v-want) > 1e-9 {
				t.Errorf("%s hour %d: %v, want %v", m.Name, h, v, want)
			}
			sum += v
		}
		if math.Abs(sum/24-1) > 1e-9 {
			t.Errorf("%s: mean %v", m.Name, sum/24)
		}
	}
	// The file loads with its zone and profiles.
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	set := parseWithSlack(t, out.Bytes())
	if set.Timezone.String() != "Asia/Kolkata" {
		t.Errorf("timezone %v", set.Timezone)
	}
	if b := set.Behavior("conversations.history"); b == nil || len(b.Hourly) != 24 || math.Abs(b.Hourly[23]-24/12.5) > 1e-4 {
		t.Errorf("hourly not loaded: %+v", b)
	}
	if len(set.Warnings) > 0 {
		for _, w := range set.Warnings {
			if strings.Contains(w.Msg, "average") {
				t.Errorf("warning: %v", w)
			}
		}
	}
}

func parseWithSlack(t *testing.T, freqs []byte) *behaviors.Set {
	t.Helper()
	seqs, err := os.ReadFile("../examples/slack/sequences.json")
	if err != nil {
		t.Fatal(err)
	}
	set, diags := behaviors.Parse(behaviors.File{Name: "frequencies.json", Data: freqs}, behaviors.File{Name: "sequences.json", Data: seqs})
	if set == nil {
		t.Fatalf("does not load with examples/slack/sequences.json:\n%v\n%s", diags, freqs)
	}
	return set
}

// The output is a behavior file that merges with examples/slack/sequences
// when it covers those methods; coverage, --sequenced-only, --top and
// --min-frequency do what they say.
func TestOutputAndCoverage(t *testing.T) {
	calls := genCalls(8, 20_000, 100, day0, 24*60)
	dir := t.TempDir()
	writeFile(t, dir, "x.csv", csvBytes(calls, 0))
	seqs := "../examples/slack/sequences.json"
	from := filepath.Join(dir, "x.csv")

	res := generate(t, Options{From: from, Sequences: seqs})
	c := res.Coverage
	if c == nil || !slices.Equal(c.Missing, []string{"files.upload", "search.messages"}) && !slices.Equal(c.Missing, []string{"search.messages", "files.upload"}) {
		t.Fatalf("coverage %+v", c)
	}
	var covered, total int64
	for _, x := range calls {
		total++
		if x.Method != "files.upload" && x.Method != "search.messages" {
			covered++
		}
	}
	if c.CoveredCalls != covered || c.TotalCalls != total || !slices.Contains(c.Unused, "ping") {
		t.Errorf("coverage %+v, want %d of %d calls", c, covered, total)
	}

	res = generate(t, Options{From: from, Sequences: seqs, SequencedOnly: true})
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	set := parseWithSlack(t, out.Bytes())
	for _, m := range res.Methods {
		b := set.Behavior(m.Name)
		if b == nil || !b.HasFrequency || math.Abs(b.Frequency-m.Frequency) > 5e-6*m.Frequency {
			t.Errorf("%s: loaded %+v, want frequency %v", m.Name, b, m.Frequency)
		}
	}
	if len(res.Dropped) != 2 || len(res.Coverage.Missing) != 0 || res.Coverage.Share >= 1 {
		t.Errorf("sequenced only: dropped %v, coverage %+v", res.Dropped, res.Coverage)
	}
	for _, w := range []string{`"generated": {`, `"source": `, `"generated_at": `, `"read": 20000`, `"window": {`, `"coverage": {`, `"behaviors": {`,
		`"dropped": {`, `"no_sequence": [`} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	if !slices.Equal(res.DroppedWhy[DropNoSequence], res.Dropped) || res.DroppedCalls != total-covered ||
		math.Abs(res.DroppedShare-float64(total-covered)/float64(total)) > 1e-12 {
		t.Errorf("dropped %v why %v calls %d share %v, want %d calls", res.Dropped, res.DroppedWhy, res.DroppedCalls, res.DroppedShare, total-covered)
	}
	if w := res.DropWords(10); !strings.Contains(w, "2 methods (") || !strings.Contains(w, "% of calls): ") || !strings.Contains(w, "(no sequence)") {
		t.Errorf("drop words %q", w)
	}

	res = generate(t, Options{From: from, Top: 3})
	if len(res.Methods) != 3 || len(res.Dropped) != len(testMethods)-3 {
		t.Errorf("top 3: %d methods, dropped %v", len(res.Methods), res.Dropped)
	}
	all := generate(t, Options{From: from})
	minF := all.Methods[4].Frequency
	res = generate(t, Options{From: from, MinFrequency: minF})
	for _, m := range res.Methods {
		if m.Frequency < minF {
			t.Errorf("%s below --min-frequency", m.Name)
		}
	}
	if len(res.Methods) != 5 {
		t.Errorf("min frequency kept %d methods, want 5", len(res.Methods))
	}
}

// WriteFile replaces the file whole or leaves everything as it was.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "x.csv", csvBytes(genCalls(9, 100, 5, day0, 60), 0))
	res := generate(t, Options{From: filepath.Join(dir, "x.csv")})
	out := filepath.Join(dir, "freq.json")
	os.WriteFile(out, []byte("old"), 0o644)
	if err := res.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !bytes.Contains(b, []byte(`"behaviors"`)) {
		t.Errorf("not replaced: %s", b)
	}
	// A destination that cannot be replaced (a folder): an error, the
	// folder untouched, no temporary file left.
	os.Mkdir(filepath.Join(dir, "taken"), 0o755)
	if err := res.WriteFile(filepath.Join(dir, "taken")); err == nil {
		t.Error("no error writing over a folder")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left %s behind", e.Name())
		}
	}
}

// The counter against a map, with keys spread over decades, many users, a
// tiny budget and a fan-in of 2 (so runs are merged level by level).
func TestCounterExact(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	type key struct {
		u string
		m int64
		x uint16
	}
	want := map[key]bool{}
	c := newCounter(1<<16, t.TempDir(), 2)
	for range 200_000 {
		k := key{fmt.Sprintf("u%d", r.IntN(5000)), int64(r.IntN(1000)), uint16(r.IntN(5))}
		if r.IntN(10) == 0 {
			k.m += int64(r.IntN(3)) * 20_000_000 // decades apart
		}
		want[k] = true
		id, err := c.method(fmt.Sprint("m", k.x))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.add(k.u, k.m, id); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.finish(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	active := map[[2]any]bool{}
	perMethod := map[string]int64{}
	users := map[string]bool{}
	for k := range want {
		active[[2]any{k.u, k.m}] = true
		perMethod[fmt.Sprint("m", k.x)]++
		users[k.u] = true
	}
	if got.keys != int64(len(want)) || got.active != int64(len(active)) || got.users != int64(len(users)) {
		t.Errorf("keys %d active %d users %d, want %d %d %d", got.keys, got.active, got.users, len(want), len(active), len(users))
	}
	for id, name := range c.methods {
		if got.userMinutes[id] != perMethod[name] {
			t.Errorf("%s: %d, want %d", name, got.userMinutes[id], perMethod[name])
		}
	}
	if got.runs < 10 {
		t.Errorf("only %d runs: the budget did not bind", got.runs)
	}
	if left, _ := filepath.Glob(filepath.Join(c.tmpDir, "*")); len(left) > 0 {
		t.Errorf("runs left behind: %v", left)
	}
}

// Timestamps in every accepted spelling.
func TestParseTimestamp(t *testing.T) {
	want := time.Date(2026, 11, 1, 12, 34, 56, 0, time.UTC).Unix()
	for _, s := range []string{"2026-11-01T12:34:56Z", "2026-11-01T12:34:56.789Z", "2026-11-01 12:34:56",
		"2026-11-01T14:34:56+02:00", "2026-11-01T07:04:56-0530", "2026-11-01 12:34:56.123456 UTC", " 2026-11-01T12:34:56z ",
		"1793536496", "1793536496789", "1793536496789123", "1793536496789123456", "1793536496.5"} {
		if got, ok := parseTimestamp(s, UnitAuto); !ok || got != want {
			t.Errorf("%q: %d %v, want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "yesterday", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-01T24:00:00Z",
		"2026-11-01T12:34:56+25:00", "1e9", "12:34", "1969-12-31T23:59:59Z", "-5", "2026-11-01T12:34:56Zjunk"} {
		if got, ok := parseTimestamp(s, UnitAuto); ok {
			t.Errorf("%q: accepted as %d", s, got)
		}
	}
	if got, ok := parseTimestamp("1793536496789", UnitSecond); ok {
		t.Errorf("seconds unit: accepted %d (year 58000)", got)
	}
	if got, _ := parseTimestamp("1793536", UnitMilli); got != 1793 {
		t.Errorf("ms unit: %d", got)
	}
	// Sessions read milliseconds: a fraction's first three digits, floored.
	for s, want := range map[string]int64{
		"2026-11-01T12:34:56.789Z": want*1000 + 789, "2026-11-01 12:34:56.7 UTC": want*1000 + 700, "2026-11-01T12:34:56.123999Z": want*1000 + 123,
		"1793536496.25": want*1000 + 250, "1793536496789": want*1000 + 789, "1793536496789999": want*1000 + 789, "1793536496": want * 1000,
		"2026-11-01T14:34:56.5+02:00": want*1000 + 500,
	} {
		if got, ok := parseTimestampMS(s, UnitAuto); !ok || got != want {
			t.Errorf("%q: %d ms %v, want %d", s, got, ok, want)
		}
	}
}

// Formats and compressions found by name and content: .tsv is
// tab-separated, zstd is recognised by its magic bytes.
func TestDetection(t *testing.T) {
	calls := genCalls(12, 3000, 30, day0, 500)
	parts := split(calls, 3)
	dir := t.TempDir()
	tsv := strings.ReplaceAll(string(csvBytes(parts[0], 0)), ",", "\t")
	writeFile(t, dir, "x/a.tsv", []byte(tsv))
	var zb bytes.Buffer
	zw, err := zstd.NewWriter(&zb)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(jsonlBytes(parts[1]))
	zw.Close()
	writeFile(t, dir, "x/b.data.zst", zb.Bytes())
	writeFile(t, dir, "x/c", parquetBytes(t, parts[2]))
	writeFile(t, dir, "x/.hidden.csv", []byte("garbage"))
	writeFile(t, dir, "x/_SUCCESS", nil)
	writeFile(t, dir, "x/manifest", []byte(`{"entries":[]}`))
	res := generate(t, Options{From: filepath.Join(dir, "x")})
	checkSame(t, res, calls)
	if fmt.Sprint(res.Formats) != "map[csv:1 jsonl+zstd:1 parquet:1]" {
		t.Errorf("formats %v", res.Formats)
	}
	// --format overrides the name.
	writeFile(t, dir, "y/a.parquet", csvBytes(parts[0], 0))
	checkSame(t, generate(t, Options{From: filepath.Join(dir, "y"), Format: FormatCSV}), parts[0])
}

// Progress is reported while reading, and cancellation stops the run.
func TestProgressAndCancel(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "x.csv", csvBytes(genCalls(13, 50_000, 100, day0, 1000), 0))
	var phases []string
	var last Progress
	_, err := Generate(context.Background(), Options{From: filepath.Join(dir, "x.csv"), ProgressEvery: time.Nanosecond, TempDir: t.TempDir()},
		func(p Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
			last = p
		})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(phases) != "[reading merging done]" || last.Rows != 50_000 || last.Bytes == 0 || last.Objects != 1 {
		t.Errorf("phases %v, last %+v", phases, last)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Generate(ctx, Options{From: filepath.Join(dir, "x.csv"), TempDir: t.TempDir()}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// Options.Validate reports every problem at once.
func TestValidate(t *testing.T) {
	o := Options{From: "http://x", Format: "xml", Shape: "cube", MinFrequency: 2, Top: -1,
		Since: day0, Until: day0, SequencedOnly: true}
	errs := o.Validate()
	if len(errs) != 7 {
		t.Errorf("%d problems, want 7: %v", len(errs), errs)
	}
}
