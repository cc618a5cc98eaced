package warehouse

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzRowParsers feeds one line to the JSON-lines record parser and, as a
// data row under a header, to the CSV reader. Neither may panic; a JSON
// line the parser accepts must be valid JSON, and a string value it reads
// must equal what encoding/json reads; every failure is a RowError.
func FuzzRowParsers(f *testing.F) {
	for _, s := range []string{
		`{"user":"U1","method":"chat.postMessage","timestamp":"2026-11-01T00:00:00Z","team":"T1"}`,
		`{ "timestamp": 1793491200123, "method": "a.b", "user": 42, "extra": {"x": [1, "}"]} }`,
		`{"USER":"u\"1","Method":"m\u00e9","timestamp":null}`,
		`{"user":"u","method":"m","timestamp":"1793491200","user":"dup"}`,
		`{"user":`, `[]`, `{"a":tru}`, `{"user":"\ud800"}`, `{}`, ` `,
		`U1,chat.postMessage,2026-11-01 00:00:00`,
		`"U,1","m","1793491200"`, `u,m,"2026-11-01T00:00:00+05:30"`, `u,m,"unclosed`, `u,,1`,
		// Hostile: values past the field limit, a line past the line
		// limit, deep nesting, huge numbers, a quote left open across
		// lines, a row of commas, NULs and broken UTF-8.
		`{"user":"` + strings.Repeat("u", 300) + `","method":"m","timestamp":1793491200}`,
		`{"user":"u","method":"m","timestamp":1793491200,"x":"` + strings.Repeat("y", 2000) + `"}`,
		`{"user":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
		`{"user":"u","method":"m","timestamp":` + strings.Repeat("9", 400) + `}`,
		`{"user":"u","method":"m","timestamp":1e999999999}`,
		strings.Repeat("u", 300) + ",m,1793491200",
		"u,m,1793491200,\"" + strings.Repeat("a\n", 800),
		strings.Repeat(",", 3000),
		"u\x00,m\xff\xfe,\x00",
	} {
		f.Add(s)
	}
	names := DefaultColumns.names()
	f.Fuzz(func(t *testing.T, line string) {
		var rec record
		col, msg := parseJSONRecord([]byte(line), &names, &rec)
		if col >= numCols {
			t.Fatalf("column %d out of range", col)
		}
		if msg == "" {
			if !json.Valid([]byte(line)) {
				t.Fatalf("accepted invalid JSON %q", line)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err == nil {
				if v, ok := m["user"].(string); ok && rec.has[colUser] && !strings.Contains(line, `"USER"`) && strings.Count(line, `"user"`) == 1 && rec.vals[colUser] != v {
					t.Fatalf("user = %q, encoding/json reads %q", rec.vals[colUser], v)
				}
			}
			p := rowParser{shape: ShapeRaw, names: names}
			var r row
			_ = p.parse(&rec, &r)
		}
		o := (&Options{SkipBadRows: false}).withDefaults()
		g := &ingest{o: &o, names: names, agg: map[string]*[2]int64{}}
		g.parser = rowParser{names: names}
		g.cnt = newCounter(1<<20, t.TempDir(), 4)
		err := g.readCSV(context.Background(), "fuzz.csv", strings.NewReader("user,method,timestamp\n"+line), ',')
		var re *RowError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("not a RowError: %v", err)
		}
		if re != nil && (re.Object != "fuzz.csv" || re.Row < 1) {
			t.Fatalf("RowError without a place: %+v", re)
		}

		// Under tight limits, both readers stop or skip with a placed
		// error, and no message carries more than a short quote.
		for _, format := range []string{"csv", "jsonl"} {
			o := (&Options{MaxLineBytes: 1 << 10, MaxFieldBytes: 256}).withDefaults()
			g := &ingest{o: &o, names: names, agg: map[string]*[2]int64{}}
			g.parser = rowParser{names: names}
			g.cnt = newCounter(1<<20, t.TempDir(), 4)
			var err error
			if format == "csv" {
				err = g.readCSV(context.Background(), "fuzz.csv", strings.NewReader("user,method,timestamp\n"+line), ',')
			} else {
				err = g.readJSONLines(context.Background(), "fuzz.csv", strings.NewReader(line))
			}
			var re *RowError
			if err != nil && !errors.As(err, &re) {
				t.Fatalf("%s: not a RowError: %v", format, err)
			}
			if re != nil && (re.Object != "fuzz.csv" || re.Row < 1) {
				t.Fatalf("%s: RowError without a place: %+v", format, re)
			}
			if re != nil && re.Reason == ReasonTooLong && !errors.Is(err, ErrLimit) {
				t.Fatalf("%s: too long but not ErrLimit: %v", format, err)
			}
			if err != nil && len(err.Error()) > 400 {
				t.Fatalf("%s: a %d-byte message: %.500s", format, len(err.Error()), err)
			}
		}
	})
}

// FuzzTimestamp checks the hand-written RFC 3339 reader against the
// standard library wherever the latter accepts the input.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{"2026-11-01T12:34:56Z", "2026-11-01T12:34:56.5+05:30", "2000-02-29T00:00:00-00:00",
		"2026-11-01 12:34:56", "1793491200", "1793491200123", "-1", "2199-12-31T23:59:59Z", "2026-11-01T12:34:60Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTimestamp(s, UnitAuto)
		if ok && (got < minSec || got >= maxSec) {
			t.Fatalf("%q: %d out of range", s, got)
		}
		tm, err := time.Parse(time.RFC3339Nano, s)
		// time.Parse is laxer than RFC 3339 (one-digit hours): compare
		// only where the digits sit where RFC 3339 puts them.
		strict := len(s) >= 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':'
		if err != nil || !strict || tm.Unix() < minSec || tm.Unix() >= maxSec || tm.Second() == 60 {
			return
		}
		if !ok || got != tm.Unix() {
			t.Fatalf("%q: %d %v, time.Parse says %d", s, got, ok, tm.Unix())
		}
		if ms, ok := parseTimestampMS(s, UnitAuto); !ok || ms != tm.UnixMilli() {
			t.Fatalf("%q: %d ms %v, time.Parse says %d", s, ms, ok, tm.UnixMilli())
		}
	})
}
