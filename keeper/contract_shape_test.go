package keeper

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire/wiretest"
)

// updateShapes rewrites testdata/api_shapes.golden from what the API
// answers now: go test ./keeper/ -run TestAPIShapes -update-shapes.
var updateShapes = flag.Bool("update-shapes", false, "rewrite testdata/api_shapes.golden")

// The JSON every GET of the API answers is the CLI's and the UI's
// contract: a real keeper with a real school and pond, holding runs,
// reports, a comparison, a launch, a formation, a webhook, a trigger and
// guardrails, answers every GET; the shape of each reply (every key
// path and the JSON type found there; ids, hashes and values normalized)
// must match testdata/api_shapes.golden. Renaming a stored field, or the
// Go type behind a view, must not change a byte clients see.
func TestAPIShapes(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	p := openPond(t, nil)
	openSchool(t, k, k.NATSURL(), "s1", 100)
	hook := newReceiver(t, nil)
	addHook(t, k, WebhookSpec{Name: "team", URL: hook.srv.URL + "/koipond", Secret: ptr("a webhook secret of some length")})
	c := wiretest.API{Base: "http://" + k.HTTPAddr()}
	c.Call(t, "POST", "/api/v1/triggers", deployTrigger, nil)
	if _, err := k.SetGuardrails(ctx, "test", []state.GuardrailRule{{Name: "health", Key: "api:*", When: "error_rate >= 50%", For: "10s", Action: "pause"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.PutBehaviorSet(ctx, "test", "pond", []behaviors.File{{Name: "pond.json", Data: []byte(pondSet)}}); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) *state.Run {
		run, err := k.CreateRun(ctx, "test", RunSpec{Name: name, BehaviorSet: "pond", Koi: 10, TimeScale: 60, DurationSecs: 3,
			Target:     state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"},
			Thresholds: map[string][]string{"api:auth.test": {"p95 < 10s"}},
			Guardrails: []state.GuardrailRule{{Name: "slow", Key: "api:*", When: "p99 > 30s", For: "10s", Action: "pause"}}})
		if err != nil {
			t.Fatal(err)
		}
		return run
	}
	base, run := mk("base"), mk("run")
	finalReport(t, k, base.ID, 30*time.Second)
	finalReport(t, k, run.ID, 30*time.Second)
	always := seedRun(t, k, 5)
	l, err := k.Launch(ctx, "test", LaunchSpec{Formation: "herd", Run: always.ID, At: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 10*time.Second, "the always-on run assigned", func() error {
		if v := k.RunView(k.State(), always.ID); v.Assigned != 5 {
			return fmt.Errorf("%d of 5 koi assigned", v.Assigned)
		}
		return nil
	})
	var sets []struct {
		Hash string `json:"hash"`
	}
	c.Call(t, "GET", "/api/v1/behavior-sets", nil, &sets)
	var forms []struct {
		Hash string `json:"hash"`
	}
	c.Call(t, "GET", "/api/v1/formations", nil, &forms)
	if len(sets) == 0 || len(forms) == 0 {
		t.Fatalf("%d behavior sets, %d formations", len(sets), len(forms))
	}

	var got strings.Builder
	for _, path := range []string{
		"/healthz",
		"/api/v1/status",
		"/api/v1/whoami",
		"/api/v1/behavior-sets",
		"/api/v1/behavior-sets/" + sets[0].Hash,
		"/api/v1/formations",
		"/api/v1/formations/" + forms[0].Hash,
		"/api/v1/runs",
		"/api/v1/runs/" + run.ID,
		"/api/v1/runs/" + always.ID,
		"/api/v1/runs/" + run.ID + "/metrics",
		"/api/v1/runs/" + run.ID + "/report",
		"/api/v1/runs/" + run.ID + "/report?baseline=" + base.ID,
		"/api/v1/guardrails",
		"/api/v1/launches",
		"/api/v1/launches/" + l.ID,
		"/api/v1/schools",
		"/api/v1/control",
		"/api/v1/audit",
		"/api/v1/webhooks",
		"/api/v1/webhooks/team",
		"/api/v1/triggers",
		"/api/v1/triggers/deploy",
	} {
		var v any
		c.Call(t, "GET", path, nil, &v)
		name := idPattern.ReplaceAllString(path, "<id>")
		name = hashPattern.ReplaceAllString(name, "<hash>")
		for _, line := range shapeOf(v) {
			fmt.Fprintf(&got, "%s %s\n", name, line)
		}
	}
	golden := filepath.Join("testdata", "api_shapes.golden")
	if *updateShapes {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (write it with -update-shapes)", err)
	}
	if got.String() != string(want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for _, l := range wl {
			if !slices.Contains(gl, l) {
				t.Errorf("gone: %s", l)
			}
		}
		for _, l := range gl {
			if !slices.Contains(wl, l) {
				t.Errorf("new:  %s", l)
			}
		}
	}
}

var (
	idPattern   = regexp.MustCompile(`\b(run|launch|school|audit)-[0-9a-f]{12}\b`)
	hashPattern = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
)

// shapeOf returns v's shape: one "path type" line for every key path of
// the JSON value v, sorted. Arrays are the union of their elements
// (path[]); map keys that are ids, hashes or outcomes are normalized; a path seen
// both as null and as a value is the value's type.
func shapeOf(v any) []string {
	types := map[string]map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		kind := ""
		switch x := v.(type) {
		case nil:
			kind = "null"
		case bool:
			kind = "bool"
		case float64:
			kind = "number"
		case string:
			kind = "string"
		case []any:
			kind = "array"
			for _, e := range x {
				walk(path+"[]", e)
			}
		case map[string]any:
			kind = "object"
			for key, e := range x {
				key = idPattern.ReplaceAllString(key, "<id>")
				key = hashPattern.ReplaceAllString(key, "<hash>")
				if strings.HasSuffix(path, ".outcomes") {
					key = "<outcome>" // which outcomes a run saw is data (a stop mid-request adds canceled)
				}
				walk(path+"."+key, e)
			}
		}
		if types[path] == nil {
			types[path] = map[string]bool{}
		}
		types[path][kind] = true
	}
	walk("$", v)
	var out []string
	for path, kinds := range types {
		if len(kinds) > 1 {
			delete(kinds, "null")
		}
		var ks []string
		for k := range kinds {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		out = append(out, path+" "+strings.Join(ks, "|"))
	}
	sort.Strings(out)
	return out
}
