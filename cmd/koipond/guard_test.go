package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
)

func TestParseGuardrailFlag(t *testing.T) {
	r, err := parseGuardrailFlag("api:*=success_rate < 95% for 5m -> pause")
	if err != nil || r.Key != "api:*" || r.When != "success_rate < 95%" || r.For != "5m" || r.Action != "pause" {
		t.Errorf("%+v %v", r, err)
	}
	r, err = parseGuardrailFlag("event:message = p99 > 5s for 1m → shed 50%")
	if err != nil || r.Key != "event:message" || r.When != "p99 > 5s" || r.For != "1m" || r.Action != "shed 50%" {
		t.Errorf("%+v %v", r, err)
	}
	for _, bad := range []string{"p99 > 5s for 1m -> stop", "api:x=p99 > 5s -> stop", "api:x=p99 > 5s for 1m", "api:x=p99 > 5s for 1m -> "} {
		if _, err := parseGuardrailFlag(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The CLI end to end: `run create --guardrail … --threshold … --wait`
// against a pond failing a third of its calls streams the live threshold
// failing and the guardrail's shed, and exits 1; `run shed` restores the
// koi; `guardrails set/show/clear` manage the global rules, refusing a
// bad one with its field.
func TestGuardCommands(t *testing.T) {
	ctx := context.Background()
	k := testKeeper(t)
	p := testPond(t, 100, 5, map[string]pond.Fault{"auth.test": {Error: 0.3}})
	testSchool(t, k, "a", 100)
	base := "http://" + k.HTTPAddr()
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/behavior-sets", map[string]any{"name": "g", "files": []map[string]string{{"name": "g.json", "content": tickSet}}}, nil)

	out, errOut, code := runCmd(t, "run", "create", "--keeper", base, "--name", "guarded", "--behaviors", "g",
		"--api-base", p.URL()+"/api", "--token-template", "xoxp-pond-{{.Index}}", "--koi", "20", "--ramp", "0",
		"--time-scale", "120", "--duration", "6s", "--wait", "--progress-every", "1s", "--threshold-window", "2s",
		"--threshold", "api:auth.test=error_rate < 1%", "--guardrail", "api:auth.test=error_rate > 10% for 2s -> shed 50%")
	t.Logf("exit %d\n--- progress\n%s--- report\n%s", code, errOut, out)
	if code != 1 || !strings.Contains(errOut, "live: api:auth.test error_rate < 1%  FAIL") || !strings.Contains(errOut, "(for ") {
		t.Errorf("no live failure streamed or wrong exit %d", code)
	}
	if !strings.Contains(errOut, `GUARDRAIL "error_rate of api:auth.test > 10% for 2s → shed 50%"`) || !strings.Contains(errOut, "20 → 10 active koi") {
		t.Error("the guardrail's shed was not streamed")
	}
	if !strings.Contains(out, "failed live 1×") {
		t.Error("the report does not say the threshold failed live")
	}
	if !strings.Contains(out, "guardrail actions:") || !strings.Contains(out, "shed at the end: ") {
		t.Error("the report does not list the guardrail's actions")
	}

	// No threshold to fail, but a guardrail acted: --wait still fails the run.
	out, errOut, code = runCmd(t, "run", "create", "--keeper", base, "--name", "guarded-only", "--behaviors", "g",
		"--api-base", p.URL()+"/api", "--token-template", "xoxp-pond-{{.Index}}", "--koi", "20", "--ramp", "0",
		"--time-scale", "120", "--duration", "5s", "--wait", "--guardrail", "api:auth.test=error_rate > 10% for 2s -> shed 50%")
	if code != 1 || !strings.Contains(errOut, " guardrail action on the run; the last: ") {
		t.Errorf("a run a guardrail shed: exit %d\n%s", code, errOut)
	}

	// A capacity search to its max against a clean pond, waited for.
	_ = p.SetFaults(nil)
	out, errOut, code = runCmd(t, "run", "create", "--keeper", base, "--name", "capacity", "--behaviors", "g",
		"--api-base", p.URL()+"/api", "--token-template", "xoxp-pond-{{.Index}}", "--ramp", "0", "--time-scale", "120",
		"--capacity", "start=5,step=5,every=3s,max=10", "--wait")
	t.Logf("capacity: exit %d\n--- progress\n%s--- report\n%s", code, errOut, out)
	if code != 0 || !strings.Contains(out, "capacity: 10 koi sustained (reached max (10 koi))") || !strings.Contains(out, "      5 koi  held") {
		t.Errorf("capacity search: exit %d", code)
	}
	if err := run(ctx, []string{"run", "create", "--keeper", base, "--name", "x", "--behaviors", "g", "--api-base", p.URL() + "/api",
		"--capacity", "start=5,step=5,every=3s,max=1"}, &strings.Builder{}, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "capacity.max") {
		t.Errorf("bad capacity: %v", err)
	}

	// run shed on a fresh always-on run.
	out, errOut, code = runCmd(t, "run", "create", "--keeper", base, "--name", "shed", "--behaviors", "g",
		"--api-base", p.URL()+"/api", "--token-template", "xoxp-pond-{{.Index}}", "--koi", "10", "--ramp", "0")
	if code != 0 {
		t.Fatalf("create: %d %s%s", code, out, errOut)
	}
	id := strings.Fields(out)[1]
	out, errOut, code = runCmd(t, "run", "shed", "--keeper", base, id, "40%")
	if code != 0 || !strings.Contains(out, "shed 40%: 6 of 10 koi active") {
		t.Errorf("shed: %d\n%s%s", code, out, errOut)
	}
	if err := run(ctx, []string{"run", "shed", "--keeper", base, id, "100"}, &strings.Builder{}, &strings.Builder{}); err == nil ||
		!strings.Contains(err.Error(), "percent: 100 is outside") {
		t.Errorf("shed 100: %v", err)
	}
	out, _, code = runCmd(t, "run", "shed", "--keeper", base, id, "0")
	if code != 0 || strings.Contains(out, "koi active") {
		t.Errorf("restore: %d\n%s", code, out)
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`[{"name": "api-health", "key": "api:*", "when": "success_rate < 50%", "for": "1m", "action": "pause"}]`), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"rules": [{"key": "api:*", "when": "success_rate < 50%", "for": "1m", "action": "explode"}]}`), 0o600)
	if out, errOut, code = runCmd(t, "guardrails", "--keeper", base, "set", good); code != 0 || !strings.Contains(out, "api-health: success_rate < 50% of api:* for 1m → pause (min 10 observations)") {
		t.Errorf("set: %d\n%s%s", code, out, errOut)
	}
	if err := run(ctx, []string{"guardrails", "--keeper", base, "set", bad}, &strings.Builder{}, &strings.Builder{}); err == nil ||
		!strings.Contains(err.Error(), "rules[0].action") {
		t.Errorf("bad set: %v", err)
	}
	if out, _, code = runCmd(t, "guardrails", "--keeper", base); code != 0 || !strings.Contains(out, "api-health") {
		t.Errorf("show: %d\n%s", code, out)
	}
	if out, _, code = runCmd(t, "guardrails", "--keeper", base, "clear"); code != 0 || !strings.Contains(out, "no global guardrails") {
		t.Errorf("clear: %d\n%s", code, out)
	}
}
