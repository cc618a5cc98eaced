package behaviors

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/koipond/koipond/metrics"
)

// Names and URLs of any length (and any JSON string content) give metric
// keys a keeper accepts, distinct per behavior and request; short ones
// are kept as written.
func TestMetricKeysFitTheirBounds(t *testing.T) {
	longName := "behavior " + strings.Repeat("n", 2000)
	url := "http://127.0.0.1:9090/api/" + strings.Repeat("u", 3000)
	method := "admin." + strings.Repeat("m", 1000)
	behaviorsJSON := map[string]any{
		longName: map[string]any{"frequency": 0.1, "steps": []any{
			map[string]any{"request": map[string]any{"type": "http", "url": url}},
			map[string]any{"request": map[string]any{"type": "http", "url": url + "2"}},
		}},
		longName + "2": map[string]any{"frequency": 0.1, "steps": []any{
			map[string]any{"request": map[string]any{"type": "api", "method": method}},
		}},
		"line\nbreak": map[string]any{"frequency": 0.1, "steps": []any{
			map[string]any{"request": map[string]any{"type": "api", "method": "chat.postMessage"}},
		}},
	}
	data, err := json.Marshal(map[string]any{"behaviors": behaviorsJSON})
	if err != nil {
		t.Fatal(err)
	}
	set, diags := Parse(File{Name: "long.json", Data: data})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	seen := map[string]string{}
	check := func(what, key string) {
		t.Helper()
		if p := metrics.KeyProblem(key); p != "" {
			t.Errorf("%s: key %.40q…: %s", what, key, p)
		}
		if prev, ok := seen[key]; ok {
			t.Errorf("%s and %s share the key %.40q…", what, prev, key)
		}
		seen[key] = what
	}
	for _, b := range set.Behaviors {
		check("behavior "+b.Name[:10], b.Key)
		for i, st := range b.Sequence.Steps {
			if st.Request != nil && !strings.HasPrefix(st.Request.Key, "api:chat.") {
				check("a request of "+b.Name[:10]+" step "+string(rune('1'+i)), st.Request.Key)
			}
		}
	}
	if len(seen) != 6 {
		t.Errorf("%d distinct keys, want 6: %q", len(seen), seen)
	}
	if b := set.Behavior(longName); b == nil || !strings.HasPrefix(b.Key, "behavior:"+longName[:300]) {
		t.Errorf("the long behavior's key does not start with its name")
	}
	if b := set.Behavior("line\nbreak"); b == nil || !strings.HasPrefix(b.Key, "behavior:line?break~") {
		t.Errorf("the line break behavior's key: %+v", b)
	}
	if b := set.Behavior("line\nbreak"); b.Sequence.Steps[0].Request.Key != "api:chat.postMessage" {
		t.Errorf("a short key changed: %q", b.Sequence.Steps[0].Request.Key)
	}
}
