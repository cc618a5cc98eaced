package pond

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strconv"
)

// errBadArgs is wrapped by argument-decoding errors.
var errBadArgs = errors.New("invalid arguments")

// maxArgs bounds the number of arguments one request may carry.
const maxArgs = 64

// parseArgs decodes API arguments from the query string and a body of the
// given content type (form-urlencoded or a JSON object). Body arguments win
// over query ones. JSON numbers and booleans become their literal text;
// arrays and objects their compact JSON. It never panics.
func parseArgs(contentType, rawQuery string, body []byte) (map[string]string, error) {
	args := map[string]string{}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", errBadArgs)
	}
	for k, v := range q {
		if len(v) > 0 {
			args[k] = v[0]
		}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return checkCount(args)
	}
	mt := ""
	if contentType != "" {
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, fmt.Errorf("content type %q: %w", contentType, errBadArgs)
		}
	}
	switch {
	case mt == "application/json" || (mt == "" && body[0] == '{'):
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, fmt.Errorf("json body: %w", errBadArgs)
		}
		for k, raw := range obj {
			v, err := jsonArg(raw)
			if err != nil {
				return nil, fmt.Errorf("json argument %q: %w", k, err)
			}
			if v != nil {
				args[k] = *v
			}
		}
	case mt == "application/x-www-form-urlencoded" || mt == "" || mt == "text/plain":
		f, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("form body: %w", errBadArgs)
		}
		for k, v := range f {
			if len(v) > 0 {
				args[k] = v[0]
			}
		}
	default:
		return nil, fmt.Errorf("unsupported content type %q: %w", mt, errBadArgs)
	}
	return checkCount(args)
}

func checkCount(args map[string]string) (map[string]string, error) {
	if len(args) > maxArgs {
		return nil, fmt.Errorf("%d arguments, at most %d: %w", len(args), maxArgs, errBadArgs)
	}
	return args, nil
}

// jsonArg renders one JSON value as an argument string; nil for null.
func jsonArg(raw json.RawMessage) (*string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errBadArgs
	}
	var s string
	switch raw[0] {
	case 'n':
		return nil, nil
	case '"':
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errBadArgs
		}
	case '[', '{':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, errBadArgs
		}
		s = buf.String()
	default: // number, true, false: keep the literal
		s = string(raw)
	}
	return &s, nil
}

// intArg reads an optional integer argument within [lo, hi]; def when absent.
func intArg(args map[string]string, name string, def, lo, hi int) (int, bool) {
	v, ok := args[name]
	if !ok || v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64) // JSON numbers like 42.0
		if ferr != nil || f != float64(int(f)) {
			return 0, false
		}
		n = int(f)
	}
	if n < lo {
		n = lo
	}
	if n > hi {
		n = hi
	}
	return n, true
}

// boolArg reads an optional boolean ("true", "1", "false", "0").
func boolArg(args map[string]string, name string) (bool, bool) {
	switch args[name] {
	case "", "false", "0":
		return false, true
	case "true", "1":
		return true, true
	}
	return false, false
}
