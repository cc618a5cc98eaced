package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/koipond/koipond/wire/wiretest"
)

// FuzzAPIBodies posts hostile bodies (deep nesting, huge numbers, long
// strings, invalid UTF-8) to the API's JSON routes of one real keeper:
// every answer is a success or a 4xx with a bounded, valid message, and
// the keeper keeps serving.
func FuzzAPIBodies(f *testing.F) {
	long := strings.Repeat("A", 300<<10)
	for _, seed := range []string{
		``,
		`{}`,
		`null`,
		`[` + strings.Repeat(`[`, 20000),
		`{"a":` + strings.Repeat(`{"a":`, 20000),
		`{"koi": 18446744073709551616, "ramp": -1e309}`,
		`{"koi": 1e400}`,
		`{"name": "` + long + `"}`,
		`{"` + long + `": 1}`,
		`{"state": "\xff\xfe"}`,
		`{"formation": "x", "run": "` + long + `", "params": {"` + long[:1000] + `": "v"}}`,
		`{"name": "s", "files": [{"name": "f.json", "content": "` + strings.Repeat(`[`, 1000) + `"}]}`,
		`{"file": {"name": "` + long[:5000] + `", "content": "{}"}}`,
		`{"rules": [{"name": "` + long[:5000] + `"}]}`,
		`{} {}`,
	} {
		f.Add([]byte(seed))
	}
	k := openKeeper(f, f.TempDir())
	routes := []struct{ method, path string }{
		{"POST", "/api/v1/runs"},
		{"POST", "/api/v1/control"},
		{"POST", "/api/v1/launches"},
		{"POST", "/api/v1/behavior-sets"},
		{"POST", "/api/v1/formations"},
		{"PUT", "/api/v1/guardrails"},
		{"PATCH", "/api/v1/runs/nope"},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, r := range routes {
			req, _ := http.NewRequest(r.method, "http://"+k.HTTPAddr()+r.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", r.method, r.path, err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("%s %s: %d %.300s", r.method, r.path, resp.StatusCode, data)
			}
			if resp.StatusCode < 400 {
				continue
			}
			var e apiErr
			if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" {
				t.Fatalf("%s %s: %d, not an API error: %.300s", r.method, r.path, resp.StatusCode, data)
			}
			checkClipped(t, e.Error.Message)
			if len(e.Error.Field) > maxQuote {
				t.Fatalf("%s %s: field of %d bytes", r.method, r.path, len(e.Error.Field))
			}
		}
		if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/healthz", nil, nil); st != 200 {
			t.Fatalf("healthz %d", st)
		}
	})
}

// FuzzClipMessage: whatever an error says, what leaves the keeper is valid
// UTF-8 in at most maxErrorLines+1 lines of bounded length.
func FuzzClipMessage(f *testing.F) {
	for _, seed := range []string{"", "x", strings.Repeat("é", 1000), strings.Repeat("a\n", 100), "\xff" + strings.Repeat("b", 400), strings.Repeat("\n", 60)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		checkClipped(t, clipMessage(msg))
	})
}

// checkClipped fails t unless msg is within clipMessage's bounds.
func checkClipped(t testing.TB, msg string) {
	t.Helper()
	lines := strings.Split(msg, "\n")
	if !utf8.ValidString(msg) || len(lines) > maxErrorLines+1 {
		t.Fatalf("message of %d lines (valid UTF-8 %v): %.300q", len(lines), utf8.ValidString(msg), msg)
	}
	for _, l := range lines {
		// A cut line ends in "… (N bytes cut)".
		if len(l) > maxErrorLine+40 {
			t.Fatalf("line of %d bytes: %.300q", len(l), l)
		}
	}
}
