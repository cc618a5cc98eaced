package behaviors

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// decoderView is what encoding/json's Decoder makes of data: whether its
// first value decodes, and the top-level members when it is an object.
func decoderView(data []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	m, _ := v.(map[string]any)
	return m, true
}

// scanView is what ScanTopLevel makes of data, each member value decoded
// from the raw bytes it reported (the last of a repeated key wins, as in
// a decoder).
func scanView(t testing.TB, data []byte) (map[string]any, bool) {
	var m map[string]any
	isObj := false
	_, err := ScanTopLevel(data, func(k, val []byte) {
		key := string(k)
		if m == nil {
			m = map[string]any{}
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(val))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("member %q: raw value %q does not decode: %v", key, val, err)
		}
		m[key] = v
	})
	if err != nil {
		return nil, false
	}
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		isObj = true
	}
	if isObj && m == nil {
		m = map[string]any{}
	}
	return m, true
}

func TestScanTopLevelAgreesWithDecoder(t *testing.T) {
	cases := []string{
		`{"ok":true,"messages":[{"ts":"1.2","text":"a \"b\" \u00e9"}],"has_more":false}`, // a reply
		`{"ok":false,"error":"channel_not_found"}`,                                       // a refusal
		`{"ok":false,"error":"esc\\aped\n"}`,                                             // an escaped error text
		`{"ok":true,"ok":false}`,                                                         // a repeated key: the last wins
		`{"\u006fk":false}`,                                                              // an escaped key
		`  {"a" : [1, -2.5e+3, 0, true, null, {}] }  `,                                   // spaces everywhere
		`{"a":{"b":{"c":[[[]]]}}}`,                                                       // nesting
		`{"a":1}trailing`,                                                                // what follows the value is ignored
		`[1,2,3]`,                                                                        // not an object
		`"str"`, `12`, `true`, `null`, `12 `,                                             // top-level scalars
		`12x`, `truex`, `"s"x`, // a scalar glued to garbage: the decoder stops after the value too
		``, ` `, `{`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,}`, `[1,]`, `{,}`, `{"a" 1}`, // truncated or broken
		`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":+1}`, // bad numbers
		`{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", `{"a":"open}`, // bad strings
		`{"a":tru}`, `{"a":nul}`, `{"a":fals}`, `{'a':1}`, `{"a":1]`, `[1}`, // bad literals, mismatched brackets
		"{\"a\":\"\xff\xfe\"}", // invalid UTF-8 is accepted (and replaced) by the decoder
		`<html>502 Bad Gateway</html>`,
	}
	for _, c := range cases {
		want, wantOK := decoderView([]byte(c))
		got, gotOK := scanView(t, []byte(c))
		if gotOK != wantOK {
			t.Errorf("%q: scan accepts %v, decoder %v", c, gotOK, wantOK)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: scan members %v, decoder %v", c, got, want)
		}
	}
}

func TestScanTopLevelDepth(t *testing.T) {
	deep := strings.Repeat("[", maxScanDepth) + strings.Repeat("]", maxScanDepth)
	if _, err := ScanTopLevel([]byte(deep), nil); err != nil {
		t.Fatalf("%d levels: %v", maxScanDepth, err)
	}
	deeper := "[" + deep + "]"
	if _, err := ScanTopLevel([]byte(deeper), nil); err == nil {
		t.Fatalf("%d levels accepted", maxScanDepth+1)
	}
	if _, ok := decoderView([]byte(deeper)); ok {
		t.Fatalf("the decoder accepts %d levels: the limits no longer agree", maxScanDepth+1)
	}
}

func FuzzScanTopLevel(f *testing.F) {
	for _, s := range []string{`{"ok":false,"error":"x"}`, `[1,{"a":"b"}]`, `{"a":1}x`, `12 `, `"\u00e9"`, `{"a":[{"b":null}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantOK := decoderView(data)
		got, gotOK := scanView(t, data)
		if gotOK != wantOK {
			t.Fatalf("%q: scan accepts %v, decoder %v", data, gotOK, wantOK)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: scan members %v, decoder %v", data, got, want)
		}
	})
}

func TestReadsData(t *testing.T) {
	p := NewProgram()
	cases := []struct {
		src  string
		want bool
	}{
		{`{{ addMessages (get "channel").ID .messages }}`, true},              // a field of dot
		{`{{ websocketURL .url }}`, true},                                     // another
		{`{{ addChannels . }}`, true},                                         // dot itself
		{`{{ with get "x" }}{{ $.y }}{{ end }}`, true},                        // $ is the data
		{`{{ with get "x" }}{{ .ID }}{{ end }}`, true},                        // a field of with's value counts (on the safe side)
		{`{{ set "n" (add 1 2) }}`, false},                                    // no dot anywhere
		{`{{ $x := get "a" }}{{ if $x }}{{ setKoi "b" $x }}{{ end }}`, false}, // variables are not the data
		{`{{ range $i, $c := userIDs }}{{ $c }}{{ end }}`, false},             // a range over the store
		{`constant`, false},                                                   // a constant
	}
	for _, c := range cases {
		txt, err := p.compile(c.src, "test")
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if got := p.ReadsData(txt); got != c.want {
			t.Errorf("ReadsData(%s) = %v, want %v", c.src, got, c.want)
		}
	}
}

// skipPlain stops exactly where a byte-by-byte scan stops: at the first
// quote, backslash or control character, wherever it lies in a word, after
// any mix of plain bytes (ASCII or not).
func TestSkipPlainStopsWhereBytesDo(t *testing.T) {
	ref := func(data []byte, i int) int {
		for i < len(data) && data[i] >= 0x20 && data[i] != '"' && data[i] != '\\' {
			i++
		}
		return i
	}
	fill := []byte("ab~ é\x7f\xff\x80 z") // plain bytes, some with the high bit set
	for n := 0; n <= 24; n++ {
		base := make([]byte, n)
		for i := range base {
			base[i] = fill[i%len(fill)]
		}
		for from := 0; from <= n; from++ {
			if got, want := skipPlain(base, from), ref(base, from); got != want {
				t.Fatalf("plain %q from %d: %d, want %d", base, from, got, want)
			}
		}
		for p := 0; p < n; p++ {
			for c := 0; c < 256; c++ {
				data := append([]byte(nil), base...)
				data[p] = byte(c)
				for _, from := range []int{0, p} {
					if got, want := skipPlain(data, from), ref(data, from); got != want {
						t.Fatalf("%q from %d (byte %#x at %d): %d, want %d", data, from, c, p, got, want)
					}
				}
			}
		}
	}
}
