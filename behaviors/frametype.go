package behaviors

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// ClassifyType names a text frame the way Classify does, but without
// decoding it when it can: when the frame is JSON and every JSON rule is a
// field (any depth), prefix or match rule without a sent_at template, the
// type and the send time come from a scan of the raw bytes and Value is
// left nil (call DecodeFrame when something reads the frame). It reports
// false, having done nothing, when the frame or the classifier needs
// Classify (binary or non-JSON frames, template rules).
//
// Most frames a busy koi gets (messages fanned out to thousands of
// members, typing, presence) are read by nothing but the type counter, so
// the koi's reader builds no tree for them.
func (c *Classifier) ClassifyType(binary bool, raw []byte, timeField string) (Classified, bool) {
	if binary || !c.scannable() {
		return Classified{}, false
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return Classified{}, false
	}
	end, err := ScanTopLevel(trimmed, nil)
	if err != nil || !jsonEndsAt(trimmed, end) {
		return Classified{}, false
	}
	if c.TimeField != "" {
		timeField = c.TimeField
	}
	out := Classified{Kind: FrameJSON}
	for i := range c.JSON {
		r := &c.JSON[i]
		var typ string
		switch {
		case r.Field != nil:
			typ = scalarText(rawFieldAt(trimmed, r.Field))
		case r.Match != nil:
			var env *Env
			typ = c.apply(context.Background(), r, &env, nil, raw, nil) // a match rule renders nothing
		case r.Prefix != nil:
			if bytes.HasPrefix(raw, r.Prefix) {
				typ = r.Type
			}
		}
		if typ != "" && ValidTypeName(typ) {
			out.Type = typ
			break
		}
	}
	if timeField != "" {
		if s := scalarText(rawFieldAt(trimmed, []string{timeField})); s != "" {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				out.SentAt = unixMillis(f)
			}
		}
	}
	return out, true
}

// DecodeFrame decodes a JSON frame's value as Classify does (numbers as
// json.Number), for a frame ClassifyType named without decoding.
func DecodeFrame(raw []byte) any {
	v, _ := decodeJSONFrame(raw)
	return v
}

// scannable reports whether every JSON rule can be applied to raw bytes.
func (c *Classifier) scannable() bool {
	for i := range c.JSON {
		r := &c.JSON[i]
		if r.HasTemplate || r.HasSentAt || (r.Field == nil && r.Match == nil && r.Prefix == nil) {
			return false
		}
	}
	return true
}

// jsonEndsAt reports whether what follows a JSON value ending at end is
// what decodeJSONFrame accepts: nothing, or (encoding/json's More) a
// closing bracket.
func jsonEndsAt(data []byte, end int) bool {
	rest := bytes.TrimLeft(data[end:], " \t\r\n")
	return len(rest) == 0 || rest[0] == '}' || rest[0] == ']'
}

// rawFieldAt follows a dotted path of object keys through raw JSON and
// returns the raw value there (nil when absent or not an object on the
// way). The last of a repeated key wins, as in a decoder.
func rawFieldAt(data []byte, path []string) []byte {
	v := data
	for _, p := range path {
		if len(v) == 0 || v[0] != '{' {
			return nil
		}
		var found []byte
		if _, err := ScanTopLevel(v, func(key, val []byte) {
			if string(key) == p {
				found = val
			}
		}); err != nil {
			return nil
		}
		v = found
	}
	return v
}

// scalarText is typeOf for a raw value: a string's text, a number as
// written, "" for anything else.
func scalarText(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	switch c := v[0]; {
	case c == '"':
		if bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
			return string(v[1 : len(v)-1])
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return ""
		}
		return s
	case c == '-' || c >= '0' && c <= '9':
		return string(v)
	}
	return ""
}
