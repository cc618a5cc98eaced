package behaviors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

// Hostile shapes are refused by the shape scan with a positioned error
// naming the limit, before any recursive parser runs: 3 MB of '[' once
// overflowed the stack of the HuJSON parser (a fatal error, not a panic).
func TestHostileShapesRefused(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string // in the one diagnostic
	}{
		// the reported attack: megabytes of '['
		{"3 MB of [", bytes.Repeat([]byte("["), 3<<20), "h.json:1:65: invalid JSON: nested deeper than 64 levels"},
		// objects nest too, and the depth counts across both
		{"deep objects", []byte(strings.Repeat(`{"a":[`, 40) + "1"), "h.json:1:193: invalid JSON: nested deeper than 64 levels"},
		// brackets in strings and comments do not count
		{"deep after a string", []byte(`{"s": "[[[[", /* [[[[ */ "behaviors": ` + strings.Repeat("[", 70)), "h.json:1:102: invalid JSON: nested deeper than 64 levels"},
		// a flat array of millions of values would build a huge tree
		{"too many values", []byte("[" + strings.Repeat("0,", MaxValues+1) + "0]"), fmt.Sprintf("invalid JSON: more than %d JSON values", MaxValues)},
		// a number of a megabyte
		{"huge number", []byte(`{"behaviors": {"a": {"frequency": 1` + strings.Repeat("0", 1<<20) + `}}}`), "h.json:1:35: invalid JSON: a literal of 1048577 bytes"},
		{"unterminated comment", []byte("{\n /* no end"), "h.json:2:2: invalid JSON: unterminated /* comment"},
		{"unterminated string", []byte(`{"behaviors": "abc`), "h.json:1:15: invalid JSON: unterminated string"},
		{"lone slash", []byte(`{"behaviors": / }`), "h.json:1:15: invalid JSON: invalid character '/'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, diags := Parse(File{Name: "h.json", Data: tt.data})
			if set != nil || len(diags) != 1 {
				t.Fatalf("set=%v, %d diagnostics: %.2000v", set != nil, len(diags), diags)
			}
			if got := diags[0].String(); !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// The 3 MB of '[' costs little memory: the scan stops at depth 65 and
// allocates nothing (it used to take 461 MB at 400 KB).
func TestDeepNestingCheap(t *testing.T) {
	data := bytes.Repeat([]byte("["), 3<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	Parse(File{Name: "h.json", Data: data})
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	if got > 1<<20 {
		t.Errorf("refusing 3 MB of [ allocated %d bytes", got)
	}
	t.Logf("refusing 3 MB of [ allocated %d bytes", got)
}

// HuJSON still loads: comments and trailing commas, at the right positions.
func TestHuJSONStandardized(t *testing.T) {
	src := "// a set\n{ \"behaviors\": { /* one */ \"a\": { \"frequency\": 0.5, \"steps\": [ { \"delay_after_ms\": 1, }, ], }, },\n}\n"
	set, diags := Parse(File{Name: "h.json", Data: []byte(src)})
	if set == nil {
		t.Fatalf("HuJSON refused: %v", diags)
	}
	if b := set.Behavior("a"); b == nil || b.Frequency != 0.5 || len(b.Sequence.Steps) != 1 {
		t.Errorf("loaded %+v", b)
	}
	// a comma with no value before it is still an error
	for _, bad := range []string{`{"behaviors": [,]}`, `{"behaviors": {"a":,}}`, `[1,,]`} {
		if set, _ := Parse(File{Name: "h.json", Data: []byte(bad)}); set != nil {
			t.Errorf("%s loaded", bad)
		}
	}
}

// Errors quote at most MaxQuote bytes of the input, cut on a UTF-8
// boundary: a 10 MB key or name is not echoed back.
func TestErrorsQuoteLittle(t *testing.T) {
	long := strings.Repeat("é", 5<<20) // 10 MB, two bytes a rune
	tests := []struct{ name, src string }{
		{"unknown field", `{"behaviors": {"a": {"frequency": 0.1, "` + long + `": 1}}}`},
		{"behavior name", `{"behaviors": {"` + long + `": {"frequency": 2}}}`},
		{"duplicate key", `{"` + long + `": 1, "` + long + `": 2}`},
		{"request type", `{"behaviors": {"a": {"steps": [{"request": {"type": "` + long + `"}}]}}}`},
		{"template", `{"behaviors": {"a": {"steps": [{"pre_actions": ["{{ ` + strings.Repeat("x", 1<<20) + ` }}"]}]}}}`},
		{"timezone", `{"timezone": "` + long + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse(File{Name: "h.json", Data: []byte(tt.src)})
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			msg := diags.Error()
			if len(msg) > 4*MaxQuote+600 {
				t.Errorf("error of %d bytes: %.300s…", len(msg), msg)
			}
			if !utf8.ValidString(msg) {
				t.Errorf("error cut inside a rune: %q", msg)
			}
		})
	}
}

func TestCheckJSONShape(t *testing.T) {
	if err := CheckJSONShape([]byte(`{"files": [{"name": "a", "content": "[[[[[["}]}`), 3, 100); err != nil {
		t.Errorf("a shallow body refused: %v", err)
	}
	err := CheckJSONShape(bytes.Repeat([]byte("["), 1000), 10, 100)
	var se *ShapeError
	if !errors.As(err, &se) || se.Off != 10 {
		t.Errorf("deep body: %v", err)
	}
}

// FuzzParseMatchesEncodingJSON: on standard JSON within the shape limits,
// the loader's parser accepts exactly what encoding/json accepts and reads
// the same values (duplicate keys aside, which it refuses on purpose).
func FuzzParseMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, -2.5e+3, true, false, null, "x\u00e9\n"]}`, `"\ud83d\ude00"`, `[1,]`, `{"a":1}x`,
		"\"\xff\"", `01`, `-`, `1.`, `1e`, `[tru]`, `{"a" 1}`, `{"a":1,}`, ` [ ] `, `"\x"`, `"\u12"`, "\"a\tb\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		std, err := standardize(data, MaxDepth, MaxValues)
		if err != nil || !bytes.Equal(std, data) {
			return // HuJSON or over a limit: not comparable
		}
		n, perr := parseFile(data)
		var want any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		jerr := dec.Decode(&want)
		if jerr == nil && dec.More() {
			jerr = errors.New("trailing data")
		}
		if jerr == nil {
			if _, err := dec.Token(); err != io.EOF {
				jerr = errors.New("trailing data")
			}
		}
		if perr != nil && strings.Contains(perr.Error(), "duplicate key") {
			return
		}
		if (perr == nil) != (jerr == nil) {
			t.Fatalf("%q: loader err %v, encoding/json err %v", data, perr, jerr)
		}
		if perr == nil && !reflect.DeepEqual(n.toAny(), want) {
			t.Fatalf("%q: loader read %#v, encoding/json %#v", data, n.toAny(), want)
		}
	})
}

// A file with a hundred thousand bad fields gets MaxDiagnostics messages and
// a count, not an error of megabytes.
func TestDiagnosticsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"behaviors": {"a": {"frequency": 0.5`)
	for i := range 100_000 {
		fmt.Fprintf(&b, `, "x%d": 1`, i)
	}
	b.WriteString(`}}}`)
	set, diags := Parse(File{Name: "h.json", Data: []byte(b.String())})
	// the file's hundred, the count, and the set-level "no steps"
	if set != nil || len(diags) != MaxDiagnostics+2 {
		t.Fatalf("set=%v, %d diagnostics", set != nil, len(diags))
	}
	if count := diags[MaxDiagnostics].String(); count != "h.json: 99900 more problems (99900 errors) not shown" {
		t.Errorf("the count: %s", count)
	}
	if n := len(diags.Error()); n > 20_000 {
		t.Errorf("error of %d bytes", n)
	}
}
