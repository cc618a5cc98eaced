package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
)

// CI gating end to end: keeper, one school and two ponds over real
// sockets. A run against a pond failing half its auth.test calls fails its
// "error_rate < 1%" threshold and `run create --wait` exits 1 with a
// readable summary; the same run against a clean pond exits 0. Both
// reports are then served by `koipond report`.
func TestRunCreateWaitGatesOnThresholds(t *testing.T) {
	ctx := context.Background()
	k := testKeeper(t)
	faulty := testPond(t, 100, 5, map[string]pond.Fault{"auth.test": {Error: 0.5}})
	clean := testPond(t, 100, 5, nil)
	testSchool(t, k, "a", 100)
	base := "http://" + k.HTTPAddr()
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/behavior-sets", map[string]any{"name": "gate", "files": []map[string]string{{"name": "gate.json", "content": tickSet}}}, nil)

	type result struct {
		out, errOut string
		code        int
	}
	results := map[string]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, p := range map[string]*pond.Server{"faulty": faulty, "clean": clean} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errOut, code := runCmd(t, "run", "create", "--keeper", base, "--name", name, "--behaviors", "gate",
				"--api-base", p.URL()+"/api", "--token-template", "xoxp-pond-{{.Index}}", "--koi", "20", "--ramp", "0",
				"--time-scale", "60", "--duration", "3s", "--wait",
				"--threshold", "api:auth.test=error_rate < 1%", "--threshold", "api:auth.test=p99 < 5s")
			mu.Lock()
			results[name] = result{out, errOut, code}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name, r := range results {
		t.Logf("%s run: exit %d\n--- progress\n%s--- report\n%s", name, r.code, r.errOut, r.out)
	}
	f, c := results["faulty"], results["clean"]
	if f.code != 1 || !strings.Contains(f.out, "FAIL  api:auth.test: error_rate < 1%") || !strings.Contains(f.out, "THRESHOLDS FAILED") {
		t.Errorf("faulty run: exit %d, want 1 with the failed threshold\n%s%s", f.code, f.out, f.errOut)
	}
	if c.code != 0 || !strings.Contains(c.out, "all thresholds passed") {
		t.Errorf("clean run: exit %d, want 0\n%s%s", c.code, c.out, c.errOut)
	}
	if !strings.Contains(f.errOut, "connected") || !strings.Contains(f.errOut, "req/s") {
		t.Errorf("no progress streamed:\n%s", f.errOut)
	}

	// The final reports stay: text, CSV and JSON through `koipond report`.
	var runs []struct{ ID, Name string }
	wiretest.API{Base: base + "/api/v1"}.Call(t, "GET", "/runs", nil, &runs)
	for _, r := range runs {
		out, errOut, code := runCmd(t, "report", "--keeper", base, r.ID)
		want := map[string]int{"faulty": 1, "clean": 0}[r.Name]
		if code != want || !strings.Contains(out, "api:auth.test") || !strings.Contains(out, "final") {
			t.Errorf("report %s: exit %d, want %d\n%s%s", r.Name, code, want, out, errOut)
		}
		out, _, _ = runCmd(t, "report", "--keeper", base, "--format", "csv", r.ID)
		if !strings.HasPrefix(out, "run,key,count") || !strings.Contains(out, r.ID+",api:auth.test,") {
			t.Errorf("CSV report %s:\n%s", r.Name, out)
		}
		out, _, _ = runCmd(t, "report", "--keeper", base, "--format", "json", r.ID)
		if !strings.Contains(out, `"final": true`) || !strings.Contains(out, `"thresholds"`) {
			t.Errorf("JSON report %s:\n%s", r.Name, out)
		}
	}
	// The faulty run against the clean one: its error rate and its
	// threshold regressed; information (exit 0) unless --fail-on-regression.
	ids := map[string]string{}
	for _, r := range runs {
		ids[r.Name] = r.ID
	}
	out, errOut, code := runCmd(t, "report", "--keeper", base, "--baseline", ids["clean"], "--no-color", ids["faulty"])
	t.Logf("comparison:\n%s", out)
	if code != 0 || !regexp.MustCompile(`(?m)^!\s+api:auth\.test\s+error_rate\s.*\sregressed$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^!\s+api:auth\.test\s+threshold error_rate < 1%\s+pass\s+FAIL\s.*regressed$`).MatchString(out) ||
		strings.Contains(out, "\x1b[") {
		t.Errorf("comparison: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := runCmd(t, "report", "--keeper", base, "--baseline", ids["clean"], "--fail-on-regression", ids["faulty"]); code != 1 {
		t.Errorf("--fail-on-regression with a regression: exit %d, want 1", code)
	}
	if out, _, code := runCmd(t, "report", "--keeper", base, "--baseline", ids["clean"], "--fail-on-regression", ids["clean"]); code != 0 || strings.Contains(out, "\n!") {
		t.Errorf("a run against itself: exit %d\n%s", code, out)
	}
	if out, _, _ := runCmd(t, "report", "--keeper", base, "--baseline", ids["clean"], "--format", "csv", ids["faulty"]); !strings.HasPrefix(out, "run,baseline,key,stat,") {
		t.Errorf("comparison CSV:\n%s", out)
	}
	if _, errOut, code := runCmd(t, "report", "--keeper", base, "--baseline", ids["clean"], "--tolerance", "lots", ids["faulty"]); code != 2 || !strings.Contains(errOut, "--tolerance") {
		t.Errorf("bad tolerance: exit %d\n%s", code, errOut)
	}
	if err := run(ctx, []string{"report", "--keeper", base, "--baseline", "run-nope", ids["faulty"]}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "not_found") || !strings.Contains(err.Error(), "baseline: no run") {
		t.Errorf("unknown baseline: %v", err)
	}
	if _, errOut, code := runCmd(t, "report", "--keeper", base, "--format", "xml", "run-x"); code != 2 {
		t.Errorf("bad format: exit %d\n%s", code, errOut)
	}
}
