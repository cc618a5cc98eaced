package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Hostile behavior and formation files sent to the HTTP API are refused
// with a short, positioned 400, and the keeper keeps serving: 3 MB of '['
// used to overflow the HuJSON parser's stack (a fatal error that killed the
// keeper), a template bomb used to pass validation, and error messages
// echoed whole keys back.
func TestUploadHostileFiles(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	post := func(path string, body any) (int, []byte) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", "http://"+k.HTTPAddr()+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	set := func(content string) any {
		return map[string]any{"name": "x", "files": []map[string]string{{"name": "f.json", "content": content}}}
	}
	formation := func(content string) any {
		return map[string]any{"file": map[string]string{"name": "f.json", "content": content}}
	}
	deep := strings.Repeat("[", 3<<20)
	long := strings.Repeat("k", 8<<20)
	tests := []struct {
		name, path string
		body       any
		want       string
	}{
		{"3 MB of [ as a behavior set", "/api/v1/behavior-sets", set(deep), "f.json:1:65: invalid JSON: nested deeper than 64 levels"},
		{"3 MB of [ as a formation", "/api/v1/formations", formation(deep), "f.json:1:65: invalid JSON: nested deeper than 64 levels"},
		{"template bomb", "/api/v1/behavior-sets", set(`{"behaviors": {"a": {"frequency": 0.1, "steps": [{"pre_actions": ["{{ $x := repeat 10000 (repeat 10000 (repeat 10000 \"x\")) }}"]}]}}}`),
			"repeat would produce 100.0 MB, over the 1 MiB template budget"},
		{"an 8 MB key", "/api/v1/behavior-sets", set(`{"behaviors": {"a": {"frequency": 0.1, "` + long + `": 1}}}`), `unknown field \"kkkk`}, // as JSON escapes it
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(tt.path, tt.body)
			if code != http.StatusBadRequest || !strings.Contains(string(body), tt.want) {
				t.Errorf("%d %.500s; want 400 with %q", code, body, tt.want)
			}
			if len(body) > 2048 {
				t.Errorf("the error is %d bytes long: it echoes the input", len(body))
			}
			resp, err := http.Get("http://" + k.HTTPAddr() + "/healthz")
			if err != nil {
				t.Fatalf("keeper gone: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("healthz %d", resp.StatusCode)
			}
		})
	}
}
