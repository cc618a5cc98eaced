package api

import (
	"bufio"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper"
)

// getLines GETs url with an optional bearer token and returns the status
// and the body's lines.
func getLines(t *testing.T, url, token string) (int, []string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return resp.StatusCode, lines
}

// The keeper's /metrics says how much Go memory it holds, so a soak can
// tell a run's metrics from the runtime's headroom.
func TestMetricsShowGoMemory(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	// The collector's target in force is said, whatever it is.
	defer debug.SetGCPercent(debug.SetGCPercent(73))
	runtime.GC() // the keeper runs in this process: its live heap is known after a collection
	st, lines := getLines(t, "http://"+k.HTTPAddr()+"/metrics", "")
	if st != 200 {
		t.Fatalf("/metrics: HTTP %d", st)
	}
	got := map[string]float64{}
	for _, l := range lines {
		if name, v, ok := strings.Cut(l, " "); ok && strings.HasPrefix(name, "koipond_keeper_go_") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			got[name] = f
		}
	}
	objects, goal, total := got["koipond_keeper_go_heap_objects_bytes"], got["koipond_keeper_go_heap_goal_bytes"], got["koipond_keeper_go_memory_bytes"]
	// A keeper with an embedded NATS server holds a few MB of objects;
	// the runtime maps more than the objects take.
	if objects < 1<<20 || goal < objects/2 || total < objects {
		t.Errorf("Go memory figures: objects %.0f, goal %.0f, total %.0f (%v)", objects, goal, total, got)
	}
	// What the heap holds beside its objects: every class is there, and
	// together with the objects they are part of the total.
	var heap float64
	for _, name := range []string{"koipond_keeper_go_heap_unused_bytes", "koipond_keeper_go_heap_free_bytes", "koipond_keeper_go_heap_released_bytes"} {
		v, ok := got[name]
		if !ok || v < 0 {
			t.Errorf("%s: %v, %v", name, v, ok)
		}
		heap += v
	}
	if objects+heap > total {
		t.Errorf("heap classes %.0f and objects %.0f exceed the total %.0f", heap, objects, total)
	}
	if v := got["koipond_keeper_go_gc_percent"]; v != 73 {
		t.Errorf("koipond_keeper_go_gc_percent %v, want 73", v)
	}
	// The live heap is what the last collection kept: a part of the
	// total, and the embedded NATS server alone keeps some.
	if live, ok := got["koipond_keeper_go_heap_live_bytes"]; !ok || live < 1<<20 || live > total {
		t.Errorf("live heap %.0f (present %v), total %.0f", live, ok, total)
	}
}

// Profiling is off unless asked for, and then only an admin may use it.
func TestPprofNeedsTheFlagAndAnAdmin(t *testing.T) {
	const viewer, admin = "viewer-token-0123456789", "admin-token-0123456789"
	tokens := []keeper.Token{{Name: "vera", Role: keeper.RoleViewer, Secret: viewer}, {Name: "ada", Role: keeper.RoleAdmin, Secret: admin}}
	off := openKeeper(t, t.TempDir(), func(c *keeper.Config) { c.Tokens = tokens })
	if st, _ := getLines(t, "http://"+off.HTTPAddr()+"/debug/pprof/heap", admin); st != 404 {
		t.Errorf("without --pprof: GET /debug/pprof/heap as admin: HTTP %d, want 404", st)
	}
	on := openKeeper(t, t.TempDir(), func(c *keeper.Config) { c.Tokens, c.Pprof = tokens, true })
	base := "http://" + on.HTTPAddr()
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {viewer, 403}, {admin, 200}} {
		if st, _ := getLines(t, base+"/debug/pprof/heap?debug=1", tc.token); st != tc.want {
			t.Errorf("--pprof: GET /debug/pprof/heap with token %q: HTTP %d, want %d", tc.token, st, tc.want)
		}
	}
	st, lines := getLines(t, base+"/debug/pprof/heap?debug=1", admin)
	if st != 200 || len(lines) == 0 || !strings.HasPrefix(lines[0], "heap profile:") {
		t.Errorf("--pprof: the heap profile as admin: HTTP %d, first line %q", st, strings.Join(lines[:min(1, len(lines))], ""))
	}
	if st, lines := getLines(t, base+"/debug/pprof/", admin); st != 200 || !strings.Contains(strings.Join(lines, "\n"), "goroutine") {
		t.Errorf("--pprof: the index as admin: HTTP %d", st)
	}
}
