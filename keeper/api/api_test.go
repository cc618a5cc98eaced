package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/wire/wiretest"
)

func TestAPIValidationNothingHalfApplied(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 10)
	goodRun := map[string]any{"name": "r", "behavior_set": "bg", "koi": 5, "target": map[string]any{"api_base": "http://127.0.0.1:9090/api"}}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range goodRun {
			m[a] = b
		}
		m[k] = v
		return m
	}
	before := len(k.State().Audit(nil, 0, 1000))
	runsBefore := len(k.State().Runs(nil))
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
		msg                string // part of the message
	}{
		// Not JSON at all.
		{"syntax", "POST", "/api/v1/runs", `{"name":`, 400, keeper.CodeInvalid, "", "JSON"},
		// Unknown fields are refused, naming the field.
		{"unknown field", "POST", "/api/v1/runs", with("colour", "red"), 400, keeper.CodeInvalid, "colour", "unknown"},
		// Wrong type.
		{"type", "POST", "/api/v1/runs", with("koi", "many"), 400, keeper.CodeInvalid, "koi", "int"},
		// Impossible values.
		{"negative koi", "POST", "/api/v1/runs", with("koi", -1), 400, keeper.CodeInvalid, "koi", "outside"},
		{"bad ramp", "POST", "/api/v1/runs", with("ramp", -3), 400, keeper.CodeInvalid, "ramp", "outside"},
		{"bad target", "POST", "/api/v1/runs", with("target", map[string]any{"api_base": "ftp://x"}), 400, keeper.CodeInvalid, "target.api_base", "http"},
		{"bad token template", "POST", "/api/v1/runs", with("target", map[string]any{"api_base": "http://x", "token": "{{.Nope"}), 400, keeper.CodeInvalid, "target.token", "template"},
		// A reference to nothing.
		{"missing set", "POST", "/api/v1/runs", with("behavior_set", "nope"), 404, keeper.CodeNotFound, "behavior_set", "nope"},
		// Behavior files with errors: every diagnostic, with file:line:col.
		{"bad behaviors", "POST", "/api/v1/behavior-sets", map[string]any{"name": "x", "files": []map[string]string{
			{"name": "f.json", "content": "{\n  \"behaviors\": {\"a\": {\"frequency\": 7}}}"}}}, 400, keeper.CodeInvalid, "files", "f.json:2:"},
		{"no files", "POST", "/api/v1/behavior-sets", map[string]any{"name": "x"}, 400, keeper.CodeInvalid, "files", "at least one"},
		// Formation percent out of range.
		{"bad formation", "POST", "/api/v1/formations", map[string]any{"file": map[string]string{"name": "h.json",
			"content": strings.Replace(herd, `"percent": 10`, `"percent": 120`, 1)}}, 400, keeper.CodeInvalid, "file", "percent"},
		// Launch in the past.
		{"past launch", "POST", "/api/v1/launches", map[string]any{"formation": "x", "run": run.ID, "at": time.Now().Add(-time.Hour).Format(time.RFC3339)}, 400, keeper.CodeInvalid, "at", "past"},
		{"unknown formation", "POST", "/api/v1/launches", map[string]any{"formation": "x", "run": run.ID}, 404, keeper.CodeNotFound, "formation", ""},
		// Bad switch state.
		{"bad switch", "POST", "/api/v1/control", map[string]any{"state": "off"}, 400, keeper.CodeInvalid, "state", "running"},
		// Patch with nothing, and on a missing run.
		{"empty patch", "PATCH", "/api/v1/runs/" + run.ID, map[string]any{}, 400, keeper.CodeInvalid, "", "koi"},
		{"patch missing", "PATCH", "/api/v1/runs/nope", map[string]any{"koi": 3}, 404, keeper.CodeNotFound, "id", ""},
		{"patch too many", "PATCH", "/api/v1/runs/" + run.ID, map[string]any{"koi": keeper.MaxKoi + 1}, 400, keeper.CodeInvalid, "koi", ""},
		// Oversized body.
		{"too large", "POST", "/api/v1/behavior-sets", `{"name": "` + strings.Repeat("x", MaxUploadBody) + `"}`, 413, keeper.CodeTooLarge, "", ""},
		// No such route.
		{"no route", "GET", "/api/v1/nope", nil, 404, keeper.CodeNotFound, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e apiErr
			st := wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, tc.method, tc.path, tc.body, &e)
			if st != tc.status || e.Error.Code != tc.code || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.msg) {
				t.Errorf("got %d %+v, want %d %s field %q message containing %q", st, e.Error, tc.status, tc.code, tc.field, tc.msg)
			}
		})
	}
	if n := len(k.State().Audit(nil, 0, 1000)); n != before {
		t.Errorf("audit grew from %d to %d on failed requests", before, n)
	}
	if n := len(k.State().Runs(nil)); n != runsBefore {
		t.Errorf("runs: %d, want %d", n, runsBefore)
	}
	if r := k.State().Run(nil, run.ID); r.Koi != 10 {
		t.Errorf("run changed: %d koi", r.Koi)
	}
}

func TestAPIHappyPath(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	var bs behaviorSetSummary
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/behavior-sets", map[string]any{"name": "bg",
		"files": []map[string]string{{"name": "bg.json", "content": bgSet}}}, &bs); st != 201 || bs.Version != 1 {
		t.Fatalf("upload: %d %+v", st, bs)
	}
	// Same content again: same set, no new version.
	var again behaviorSetSummary
	wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "POST", "/api/v1/behavior-sets", map[string]any{"name": "bg",
		"files": []map[string]string{{"name": "bg.json", "content": bgSet}}}, &again)
	if again.Hash != bs.Hash || again.Version != 1 {
		t.Errorf("re-upload: %+v", again)
	}
	var run keeper.RunView
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/runs", map[string]any{"name": "r", "behavior_set": bs.Hash, "koi": 5, "ramp": 2,
		"target": map[string]any{"api_base": "http://127.0.0.1:9090/api"}}, &run); st != 201 || run.ID == "" {
		t.Fatalf("create run: %d %+v", st, run)
	}
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "PATCH", "/api/v1/runs/"+run.ID, map[string]any{"koi": 8, "ramp": 4}, &run); st != 200 || run.Koi != 8 || run.Ramp != 4 {
		t.Errorf("patch: %d %+v", st, run.Run)
	}
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/runs/"+run.ID+"/pause", nil, &run); st != 200 || run.State != "paused" {
		t.Errorf("pause: %d %+v", st, run.Run)
	}
	var sw keeper.SwitchView
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/control", map[string]any{"state": "stopped"}, &sw); st != 200 || sw.State != "stopped" || sw.StopCompleteMS != 0 && sw.Stop == nil {
		t.Errorf("switch: %d %+v", st, sw)
	}
	var status keeper.Status
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/api/v1/status", nil, &status); st != 200 || len(status.Runs) != 1 {
		t.Errorf("status: %d %+v", st, status)
	}
	var audit []map[string]any
	wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "GET", "/api/v1/audit?limit=2", nil, &audit)
	if len(audit) != 2 || audit[0]["action"] != "stop everything" {
		t.Errorf("audit: %+v", audit)
	}
	resp, err := http.Get("http://" + k.HTTPAddr() + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %v %v", resp, err)
	}
	resp.Body.Close()
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/healthz", nil, nil); st != 200 {
		t.Errorf("healthz %d", st)
	}
}

func TestUIServedBesideTheAPI(t *testing.T) {
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) {
		c.UI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ui:" + r.URL.Path)) })
		c.Tokens = []keeper.Token{{Name: "ada", Role: keeper.RoleAdmin, Secret: "admin-token-0123456789"}}
	})
	for path, want := range map[string]int{"/": 200, "/app.js": 200, "/api/v1/runs": 401, "/api/v1/nope": 404, "/healthz": 200} {
		resp, err := http.Get("http://" + k.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestAuthRoles(t *testing.T) {
	const (
		viewer   = "viewer-token-0123456789"
		operator = "operator-token-0123456789"
		admin    = "admin-token-0123456789"
	)
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) {
		c.Tokens = []keeper.Token{{Name: "vera", Role: keeper.RoleViewer, Secret: viewer}, {Name: "otto", Role: keeper.RoleOperator, Secret: operator}, {Name: "ada", Role: keeper.RoleAdmin, Secret: admin}}
	})
	run := seedRun(t, k, 3)
	upload := map[string]any{"name": "bg2", "files": []map[string]string{{"name": "bg.json", "content": bgSet + " "}}}
	for _, tc := range []struct {
		name, method, path string
		body               any
		// status per token: none, viewer, operator, admin
		want [4]int
	}{
		{"read runs", "GET", "/api/v1/runs", nil, [4]int{401, 200, 200, 200}},
		{"pause run", "POST", "/api/v1/runs/" + run.ID + "/pause", nil, [4]int{401, 403, 200, 200}},
		{"global pause", "POST", "/api/v1/control", map[string]any{"state": "paused"}, [4]int{401, 403, 200, 200}},
		{"launch", "POST", "/api/v1/launches", map[string]any{"formation": "nope", "run": run.ID}, [4]int{401, 403, 404, 404}},
		{"scale", "PATCH", "/api/v1/runs/" + run.ID, map[string]any{"koi": 4}, [4]int{401, 403, 403, 200}},
		{"upload", "POST", "/api/v1/behavior-sets", upload, [4]int{401, 403, 403, 201}},
		{"create run", "POST", "/api/v1/runs", map[string]any{"name": "x", "behavior_set": "bg", "koi": 1,
			"target": map[string]any{"api_base": "http://x"}}, [4]int{401, 403, 403, 201}},
	} {
		for i, tok := range []string{"", viewer, operator, admin} {
			if st := (wiretest.API{Base: "http://" + k.HTTPAddr(), Token: tok}).Do(t, tc.method, tc.path, tc.body, nil); st != tc.want[i] {
				t.Errorf("%s with token %d: %d, want %d", tc.name, i, st, tc.want[i])
			}
		}
	}
	var me map[string]any
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr(), Token: operator}).Do(t, "GET", "/api/v1/whoami", nil, &me); st != 200 || me["name"] != "otto" || me["role"] != "operator" {
		t.Errorf("whoami: %d %v", st, me)
	}
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr(), Token: "wrong-token-0123456789"}).Do(t, "GET", "/api/v1/runs", nil, nil); st != 401 {
		t.Errorf("unknown token: %d", st)
	}
	// The audit log names who did what.
	var audit []map[string]any
	wiretest.API{Base: "http://" + k.HTTPAddr(), Token: viewer}.Do(t, "GET", "/api/v1/audit", nil, &audit)
	who := map[string]bool{}
	for _, e := range audit {
		who[e["actor"].(string)+" "+e["action"].(string)] = true
	}
	for _, want := range []string{"otto pause run", "otto pause everything", "ada scale run", "ada upload behavior set", "ada create run"} {
		if !who[want] {
			t.Errorf("audit lacks %q: %v", want, who)
		}
	}
}

func TestParseTokens(t *testing.T) {
	ts, err := keeper.ParseTokens("t", []byte("# comment\nada admin 0123456789abcdef\n\nvera viewer fedcba9876543210\n"))
	if err != nil || len(ts) != 2 || ts[0].Role != keeper.RoleAdmin || ts[1].Name != "vera" {
		t.Fatalf("%+v %v", ts, err)
	}
	_, err = keeper.ParseTokens("t", []byte("ada boss 0123456789abcdef\nbob admin short\ncy admin fedcba9876543210\ndi viewer fedcba9876543210\n"))
	if err == nil || !strings.Contains(err.Error(), "t:1:") || !strings.Contains(err.Error(), "t:4: same token as line 3") || !strings.Contains(err.Error(), "t:2:") {
		t.Errorf("errors: %v", err)
	}
	// A name is the actor of every switch its token sets, which travels
	// to schools within the wire's bounds; a line too long to read is an
	// error, not the silent end of the file.
	_, err = keeper.ParseTokens("t", []byte("ada admin 0123456789abcdef\n"+strings.Repeat("n", 201)+" admin fedcba9876543210\n"))
	if err == nil || !strings.Contains(err.Error(), "t:2: name") || !strings.Contains(err.Error(), "at most 200 bytes") || len(err.Error()) > 300 {
		t.Errorf("a 201-byte name: %v", err)
	}
	_, err = keeper.ParseTokens("t", []byte("ada admin 0123456789abcdef\n# "+strings.Repeat("c", 70_000)+"\nvera viewer fedcba9876543210\n"))
	if err == nil || !strings.Contains(err.Error(), "t:2: a line longer than 65536 bytes") {
		t.Errorf("a 70 KB line: %v", err)
	}
}
