package behaviors

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadSet: no input makes the loader panic, and a set either loads with
// no errors or is refused with at least one.
func FuzzLoadSet(f *testing.F) {
	for _, glob := range []string{"testdata/bad/*.json", "../examples/*/*.json"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"behaviors":{"a":{"frequency":1,"steps":[{"request":{"type":"ws","json":[1,{"a":"{{ . }}"}],"await":{"event":"x"}}}]}}}`))
	// the request fields of correlated awaits, binary frames, error
	// declarations and keys
	f.Add([]byte(`{"behaviors":{"a":{"frequency":1,"steps":[{"request":{"type":"ws","key":"k.1","binary":"{{ get \"b\" }}","encoding":"hex","await":{"type":"{{ get \"t\" }}","match":"id={{ get \"id\" }}","fields":{"a.0.b":"{{ get \"id\" }}","n":1},"when":"{{ eq .id 1 }}","timeout_ms":5},"error":{"event":"error","fields":{"id":true}}}}]}}}`))
	f.Add([]byte(`{"behaviors":{"a":{"frequency":1,"steps":[{"request":{"type":"ws","binary":"AAE","error":{"match":"^ERR","within_ms":10}}},{"request":{"type":"connect","key":"c"}}]}}}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`))
	// hostile shapes: deep nesting (also inside a valid prefix), huge and
	// long numbers, long keys and names, unterminated comments and strings,
	// template bombs
	f.Add(bytes.Repeat([]byte("["), 2_000))
	f.Add([]byte(`{"behaviors": {"a": ` + strings.Repeat(`{"a": [`, 40) + `}}`))
	f.Add([]byte(`{"behaviors": {"a": {"frequency": 1e999999999, "hourly": [` + strings.Repeat("1e308,", 23) + `-1e-400]}}}`))
	f.Add([]byte(`{"behaviors": {"a": {"frequency": 0.` + strings.Repeat("1", 200) + `}}}`))
	f.Add([]byte(`{"behaviors": {"` + strings.Repeat("é", 2_000) + `": {"frequency": 0.5}}}`))
	f.Add([]byte("{/* never closed"))
	f.Add([]byte(`{"behaviors": {"a": {"steps": [{"pre_actions": ["{{ $x := repeat 10000 (repeat 10000 (repeat 10000 \"x\")) }}"]}]}}}`))
	f.Add([]byte(`{"behaviors": {"a": {"steps": [{"pre_actions": ["{{ $s := get \"x\" }}` + strings.Repeat(`{{ $s = print $s $s }}`, 12) + `"]}]}}}`))
	f.Add([]byte(`{"behaviors": {"a": {"steps": [{"pre_actions": ["{{ $l := list 1 }}` + strings.Repeat(`{{ $l = list $l $l }}`, 40) + `{{ $l }}"]}]}}}`))
	f.Add([]byte(`{"behaviors": {"a": {"steps": [{"pre_actions": ["{{ $d := dict }}{{ $_ := dictSet $d \"d\" $d }}{{ $d }}"]}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, diags := Parse(File{Name: "fuzz.json", Data: data})
		if (set == nil) != diags.HasErrors() {
			t.Fatalf("set=%v but errors=%v: %v", set != nil, diags.HasErrors(), diags)
		}
		for _, d := range diags {
			_ = d.String()
		}
		if set == nil {
			return
		}
		// A loaded set's templates run without panicking on an empty koi.
		env := &Env{Store: NewStore(Identity{})}
		for _, b := range set.Behaviors {
			if b.Sequence == nil {
				continue
			}
			for _, st := range b.Sequence.Steps {
				for _, a := range st.Pre {
					_ = set.Prog.Run(context.Background(), env, a, nil)
				}
			}
		}
		if _, err := NewSchedule(freqsOf(set)); err != nil {
			t.Fatalf("a loaded set has a bad frequency: %v", err)
		}
	})
}

func freqsOf(s *Set) []float64 {
	var out []float64
	for _, b := range s.Behaviors {
		if b.HasFrequency {
			out = append(out, b.Frequency)
		}
	}
	return out
}
