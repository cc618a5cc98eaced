package keeper

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

const triggerSecret = "deploy-secret-0123456789"

// deployTrigger starts a run named after the deployed service and version
// and launches the herd on the service's running runs; billing deploys
// launch on billing runs (there are none).
const deployTrigger = `{
  "name": "deploy",
  "secret": "` + triggerSecret + `",
  "actions": [
    {"match": {"service": "search"},
     "run": {"name": "deploy-{{.labels.service}}-{{.labels.version}}", "behavior_set": "bg", "koi": 0,
             "labels": {"team": "core"}, "duration_secs": 600,
             "target": {"api_base": "http://127.0.0.1:9090/api"}}},
    {"match": {"service": "search"},
     "launch": {"formation": "herd", "run_labels": {"service": "{{.labels.service}}"}, "at_secs": 30,
                "params": {"why": "{{.event}} {{.labels.version}}"}}},
    {"match": {"service": "billing"},
     "launch": {"formation": "herd", "run_labels": {"service": "billing"}}}
  ]
}`

// call is one signed trigger call as a deploy pipeline makes it.
type call struct {
	ts   string
	sig  string
	body []byte
}

func signed(secret string, at time.Time, body string) call {
	ts := at.Unix()
	return call{ts: strconv.FormatInt(ts, 10), sig: notify.Sign(secret, ts, []byte(body)), body: []byte(body)}
}

// fire sends a call and decodes the answer into out.
func fire(t testing.TB, k *Keeper, name string, c call, out any) int {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+k.HTTPAddr()+"/api/v1/triggers/"+name, bytes.NewReader(c.body))
	if c.ts != "" {
		req.Header.Set(notify.HeaderTimestamp, c.ts)
	}
	if c.sig != "" {
		req.Header.Set(notify.HeaderSignature, c.sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%d %s: %v", resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func seedTrigger(t testing.TB, k *Keeper) (search *state.Run) {
	t.Helper()
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	search, err := k.CreateRun(ctx, "test", RunSpec{Name: "always-search", BehaviorSet: "bg", Koi: 0,
		Labels: map[string]string{"service": "search"}, Target: state.Target{APIBase: "http://127.0.0.1:9090/api"}})
	if err != nil {
		t.Fatal(err)
	}
	var eb errorBody
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/triggers", deployTrigger, &eb); code != 201 {
		t.Fatalf("storing the trigger: %d %+v", code, eb.Error)
	}
	return search
}

func TestTriggerStartsRunAndLaunchRefusesForgeriesAndReplays(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	rc := newReceiver(t, nil)
	addHook(t, k, WebhookSpec{Name: "ops", URL: rc.srv.URL, Kinds: []string{notify.NoticeTrigger}})
	search := seedTrigger(t, k)

	body := `{"event": "deploy", "labels": {"service": "search", "version": "v42"}, "commit": "abc123"}`
	good := signed(triggerSecret, time.Now(), body)
	var res TriggerResult
	if code := fire(t, k, "deploy", good, &res); code != 200 {
		t.Fatalf("signed call: %d %+v", code, res)
	}
	if len(res.Matched) != 2 || res.Matched[0] != 0 || res.Matched[1] != 1 || len(res.Runs) != 1 || len(res.Launches) != 1 || len(res.Errors) != 0 {
		t.Fatalf("result %+v", res)
	}
	run := k.State().Run(nil, res.Runs[0].ID)
	if run == nil || run.Name != "deploy-search-v42" || res.Runs[0].Name != run.Name || run.State != state.RunRunning ||
		run.Labels["service"] != "search" || run.Labels["version"] != "v42" || run.Labels["team"] != "core" ||
		run.Owner != "trigger:deploy" || run.DurationMS != 600_000 {
		t.Errorf("started run %+v", run)
	}
	l := k.State().Launch(nil, res.Launches[0].ID)
	if l == nil || l.Run != search.ID || l.Name != "herd" || l.Params["why"] != "deploy v42" || l.CreatedBy != "trigger:deploy" ||
		l.Start.Sub(time.Now()) < 25*time.Second || l.Start.Sub(time.Now()) > 31*time.Second {
		t.Errorf("launch %+v (search run %s)", l, search.ID)
	}
	var audit []*state.AuditEntry
	for _, e := range k.State().Audit(nil, 0, 50) {
		if e.Actor == "trigger:deploy" {
			audit = append(audit, e)
		}
	}
	if len(audit) != 3 { // fire, create run, launch
		t.Errorf("audit by trigger:deploy: %d entries", len(audit))
	}
	d := rc.waitKind(t, notify.NoticeTrigger, 5*time.Second)
	if !strings.Contains(string(d.body), "deploy-search-v42") {
		t.Errorf("trigger notice %s", d.body)
	}
	t.Logf("signed call → run %s %q labels %v; launch %s on %s at +%.0fs", run.ID, run.Name, run.Labels, l.ID, l.Run, time.Until(l.Start).Seconds())

	// Nothing matches: 200, empty lists, a note.
	res = TriggerResult{}
	if code := fire(t, k, "deploy", signed(triggerSecret, time.Now(), `{"labels": {"service": "web"}}`), &res); code != 200 ||
		len(res.Matched) != 0 || len(res.Runs) != 0 || res.Runs == nil || res.Note == "" {
		t.Errorf("no match: %d %+v", code, res)
	}
	// An action that cannot be done: 422 with the reason, nothing started.
	res = TriggerResult{}
	runsBefore := len(k.State().Runs(nil))
	if code := fire(t, k, "deploy", signed(triggerSecret, time.Now(), `{"labels": {"service": "billing"}}`), &res); code != 422 ||
		len(res.Errors) != 1 || res.Errors[0].Action != 2 || !strings.Contains(res.Errors[0].Message, "no running run has labels service=billing") {
		t.Errorf("undoable: %d %+v", code, res)
	}
	// A version label missing: the run template cannot render.
	res = TriggerResult{}
	if code := fire(t, k, "deploy", signed(triggerSecret, time.Now(), `{"labels": {"service": "search"}}`), &res); code != 422 ||
		len(res.Errors) != 2 || res.Errors[0].Field != "actions[0].run.name" || len(res.Runs) != 0 || len(res.Launches) != 0 {
		t.Errorf("missing label: %d %+v", code, res)
	}
	if n := len(k.State().Runs(nil)); n != runsBefore {
		t.Errorf("a refused call started runs: %d → %d", runsBefore, n)
	}

	// Refusals, each with its reason.
	refusals := []struct {
		name   string
		c      call
		status int
		reason string
	}{
		{"bad signature", signed("not-the-secret-at-all", time.Now(), body), 401, RefusedBadSignature},
		{"body changed", call{ts: good.ts, sig: good.sig, body: []byte(strings.Replace(body, "v42", "v43", 1))}, 401, RefusedBadSignature},
		{"stale timestamp", signed(triggerSecret, time.Now().Add(-6*time.Minute), body), 401, RefusedStale},
		{"future timestamp", signed(triggerSecret, time.Now().Add(6*time.Minute), body), 401, RefusedStale},
		{"no headers", call{body: []byte(body)}, 401, RefusedNoHeaders},
		{"malformed signature", call{ts: good.ts, sig: "md5=abc", body: []byte(body)}, 401, RefusedMalformed},
		{"replay", good, 409, RefusedReplay},
	}
	for _, r := range refusals {
		var eb errorBody
		code := fire(t, k, "deploy", r.c, &eb)
		if code != r.status || eb.Error == nil || !strings.HasPrefix(eb.Error.Message, r.reason) {
			t.Errorf("%s: %d %+v, want %d %s", r.name, code, eb.Error, r.status, r.reason)
		}
	}
	var eb errorBody
	if code := fire(t, k, "nope", good, &eb); code != 401 || !strings.Contains(eb.Error.Message, "bad_signature") {
		t.Errorf("unknown trigger: %d, want 401 like a bad signature (names are not probed)", code)
	}
	var view TriggerView
	wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "GET", "/api/v1/triggers/deploy", nil, &view)
	want := map[string]uint64{RefusedBadSignature: 2, RefusedStale: 2, RefusedNoHeaders: 1, RefusedMalformed: 1, RefusedReplay: 1}
	for reason, n := range want {
		if view.Refused[reason] != n {
			t.Errorf("refused[%s] = %d, want %d (%v)", reason, view.Refused[reason], n, view.Refused)
		}
	}
	if view.Accepted != 4 {
		t.Errorf("accepted %d, want 4", view.Accepted)
	}
	m := apiText(t, k, "/metrics")
	for _, w := range []string{`koipond_trigger_refused_total{trigger="deploy",reason="replay"} 1`,
		`koipond_trigger_refused_total{trigger="deploy",reason="bad_signature"} 2`,
		`koipond_trigger_refused_total{trigger="(unknown)",reason="unknown_trigger"} 1`} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	raw := apiText(t, k, "/api/v1/triggers")
	if strings.Contains(raw, triggerSecret) {
		t.Error("the trigger list shows the secret")
	}
	t.Logf("refused by reason: %v; accepted %d", view.Refused, view.Accepted)

	// Crash and restart: the trigger and the seen signature survive, and
	// the replay is still refused; nothing was started twice.
	k.ns.Shutdown()
	k.ns.WaitForShutdown()
	k.Close()
	k2 := openKeeper(t, dir)
	if tr := k2.State().Trigger(nil, "deploy"); tr == nil || len(tr.Actions) != 3 || tr.Secret != triggerSecret {
		t.Fatalf("trigger after restart: %+v", tr)
	}
	eb = errorBody{}
	if code := fire(t, k2, "deploy", good, &eb); code != 409 || eb.Error == nil || !strings.HasPrefix(eb.Error.Message, RefusedReplay) {
		t.Errorf("replay after restart: %d %+v", code, eb.Error)
	}
	n := 0
	for _, r := range k2.State().Runs(nil) {
		if r.Name == "deploy-search-v42" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d runs named deploy-search-v42, want 1", n)
	}
	// A fresh signature of the same body is a new call.
	res = TriggerResult{}
	if code := fire(t, k2, "deploy", signed(triggerSecret, time.Now().Add(time.Second), body), &res); code != 200 || len(res.Runs) != 1 {
		t.Errorf("new call after restart: %d %+v", code, res)
	}
}

func TestBadTriggerDefinitions(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := func(spec string) string {
		return `{"name": "t", "secret": "` + triggerSecret + `", "actions": [{"run": ` + spec + `}]}`
	}
	launch := func(spec string) string {
		return `{"name": "t", "secret": "` + triggerSecret + `", "actions": [{"launch": ` + spec + `}]}`
	}
	const okRun = `{"name": "r", "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}}`
	for _, c := range []struct {
		why, body, field string
	}{
		{"name is not a path segment", `{"name": "a b", "secret": "` + triggerSecret + `", "actions": [{"run": ` + okRun + `}]}`, "name"},
		{"no secret", `{"name": "t", "actions": [{"run": ` + okRun + `}]}`, "secret"},
		{"short secret", `{"name": "t", "secret": "short", "actions": [{"run": ` + okRun + `}]}`, "secret"},
		{"no actions", `{"name": "t", "secret": "` + triggerSecret + `", "actions": []}`, "actions"},
		{"both run and launch", `{"name": "t", "secret": "` + triggerSecret + `", "actions": [{"run": ` + okRun + `, "launch": {"formation": "f", "run_labels": {"a": "b"}}}]}`, "actions[0]"},
		{"neither", `{"name": "t", "secret": "` + triggerSecret + `", "actions": [{"match": {"a": "b"}}]}`, "actions[0]"},
		{"unknown action field", `{"name": "t", "secret": "` + triggerSecret + `", "actions": [{"lunch": {}}]}`, "lunch"},
		{"template syntax", run(`{"name": "r-{{.labels.v", "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}}`), "actions[0].run"},
		{"unknown run field", run(`{"name": "r", "koi_count": 3, "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}}`), "actions[0].run.koi_count"},
		{"koi not a number", run(`{"name": "r", "koi": "many", "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}}`), "actions[0].run.koi"},
		{"no behavior set", run(`{"name": "r", "target": {"api_base": "http://127.0.0.1:9090/api"}}`), "actions[0].run.behavior_set"},
		{"templated target not a URL", run(`{"name": "r", "behavior_set": "bg", "target": {"api_base": "ftp://{{.labels.host}}/api"}}`), "actions[0].run.target.api_base"},
		{"negative koi", run(`{"name": "r", "koi": -1, "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}}`), "actions[0].run.koi"},
		{"bad threshold", run(`{"name": "r", "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}, "thresholds": {"api:x": ["p95 300"]}}`), "actions[0].run.thresholds"},
		{"launch without formation", launch(`{"run_labels": {"service": "s"}}`), "actions[0].launch.formation"},
		{"launch without run labels", launch(`{"formation": "herd"}`), "actions[0].launch.run_labels"},
		{"launch in the past", launch(`{"formation": "herd", "run_labels": {"service": "s"}, "at_secs": -5}`), "actions[0].launch.at_secs"},
		{"launch param template", launch(`{"formation": "herd", "run_labels": {"service": "s"}, "params": {"channel": "{{.labels.c"}}`), "actions[0].launch.params.channel"},
		// Templates run on every signed call: bounded, or 45 bytes took 10 s and 4.9 GiB.
		{"range loop", run(`{"name": "{{range 300}}{{printf \"%01000000d\" 0}}{{end}}", "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}}`), "actions[0].run.name"},
		{"wide printf", run(`{"name": "{{printf \"%01000000d\" 0}}", "behavior_set": "bg", "target": {"api_base": "http://127.0.0.1:9090/api"}}`), "actions[0].run.name"},
		{"match label empty key", `{"name": "t", "secret": "` + triggerSecret + `", "actions": [{"match": {"": "x"}, "run": ` + okRun + `}]}`, "actions[0].match"},
	} {
		var eb errorBody
		code := wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "POST", "/api/v1/triggers", c.body, &eb)
		if code != 400 || eb.Error == nil || !strings.HasPrefix(eb.Error.Field, c.field) {
			t.Errorf("%s: %d %+v, want field %q", c.why, code, eb.Error, c.field)
		} else {
			t.Logf("%-28s → %s: %s", c.why, eb.Error.Field, eb.Error.Message)
		}
	}
	// A templated host is fine at store time (checked with placeholders).
	ok := run(`{"name": "r-{{.labels.service}}", "behavior_set": "bg", "target": {"api_base": "http://{{.labels.host}}:9090/api"}}`)
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/triggers", ok, nil); code != 201 {
		t.Errorf("templated run refused: %d", code)
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/triggers", ok, nil); code != 409 {
		t.Errorf("duplicate name: %d", code)
	}
	if len(k.State().Triggers(nil)) != 1 {
		t.Error("a refused definition was stored")
	}
}

func TestWebhooksSurviveRestartAndStillDeliver(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	rc := newReceiver(t, nil)
	addHook(t, k, WebhookSpec{Name: "ops", URL: rc.srv.URL, Format: "json", Kinds: []string{notify.NoticeSwitch}, Secret: ptr("persisted-secret"),
		Labels: map[string]string{"team": "core"}})
	k.ns.Shutdown()
	k.ns.WaitForShutdown()
	k.Close()
	k2 := openKeeper(t, dir)
	w := k2.State().Webhook(nil, "ops")
	if w == nil || w.URL != rc.srv.URL || w.Secret != "persisted-secret" || w.Kinds[0] != notify.NoticeSwitch || w.Labels["team"] != "core" {
		t.Fatalf("after restart: %+v", w)
	}
	if _, err := k2.SetSwitch(context.Background(), "test", wire.Paused); err != nil {
		t.Fatal(err)
	}
	d := rc.waitKind(t, notify.NoticeSwitch, 5*time.Second)
	verify(t, d, "persisted-secret")
	var views []WebhookView
	wiretest.API{Base: "http://" + k2.HTTPAddr()}.Do(t, "GET", "/api/v1/webhooks", nil, &views)
	if len(views) != 1 || views[0].Status.Delivered != 1 {
		t.Errorf("views %+v", views)
	}
}

// With API tokens configured, a trigger call still needs none (its
// signature is the credential), while managing webhooks and triggers needs
// an admin and reading webhooks a viewer.
func TestTriggerCallNeedsNoTokenManagementNeedsAdmin(t *testing.T) {
	const viewer, admin = "viewer-token-0123456789", "admin-token-0123456789"
	k := openKeeper(t, t.TempDir(), func(c *Config) {
		c.Tokens = []Token{{Name: "vera", Role: RoleViewer, Secret: viewer}, {Name: "ada", Role: RoleAdmin, Secret: admin}}
	})
	hook := map[string]any{"name": "h", "url": "http://127.0.0.1:9/"}
	for _, c := range []struct {
		token, method, path string
		body                any
		want                int
	}{
		{"", "GET", "/api/v1/webhooks", nil, 401},
		{viewer, "GET", "/api/v1/webhooks", nil, 200},
		{viewer, "POST", "/api/v1/webhooks", hook, 403},
		{admin, "POST", "/api/v1/webhooks", hook, 201},
		{viewer, "POST", "/api/v1/webhooks/h/test", nil, 403},
		{viewer, "DELETE", "/api/v1/webhooks/h", nil, 403},
		{viewer, "GET", "/api/v1/triggers", nil, 403},
		{admin, "POST", "/api/v1/triggers", deployTrigger, 201},
		{viewer, "DELETE", "/api/v1/triggers/deploy", nil, 403},
	} {
		if code := (wiretest.API{Base: "http://" + k.HTTPAddr(), Token: c.token}).Do(t, c.method, c.path, c.body, nil); code != c.want {
			t.Errorf("%s %s as %q: %d, want %d", c.method, c.path, c.token, code, c.want)
		}
	}
	var res TriggerResult
	if code := fire(t, k, "deploy", signed(triggerSecret, time.Now(), `{"labels": {"service": "web"}}`), &res); code != 200 || res.Note == "" {
		t.Errorf("signed call without a token: %d %+v", code, res)
	}
	if e := k.State().Audit(nil, 0, 1)[0]; e.Actor != "trigger:deploy" || e.Action != "fire trigger" {
		t.Errorf("last audit entry %+v", e)
	}
}

// Deleting a trigger and storing it again (same secret) within the replay
// window must not open the window again: the accepted signatures stay.
func TestTriggerReplayRefusedAfterDeleteAndRecreate(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	seedTrigger(t, k)
	c := signed(triggerSecret, time.Now(), `{"labels": {"service": "web"}}`)
	var res TriggerResult
	if code := fire(t, k, "deploy", c, &res); code != 200 {
		t.Fatalf("first call: %d %+v", code, res)
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "DELETE", "/api/v1/triggers/deploy", nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/triggers", deployTrigger, nil); code != 201 {
		t.Fatalf("re-create: %d", code)
	}
	var eb errorBody
	if code := fire(t, k, "deploy", c, &eb); code != 409 || eb.Error == nil || !strings.Contains(eb.Error.Message, "replay") {
		t.Errorf("replay after delete and re-create: %d %+v", code, eb.Error)
	}
}

// A call whose matched actions cannot all be done starts none of them,
// whichever action fails and whatever CreateRun or Launch would refuse it
// for (a formation's required parameter, a run's or a launch's missing
// api_base), and the error names the trigger's full field path.
func TestTriggerCallStartsNothingWhenOneActionCannotBeDone(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	seedTrigger(t, k)
	ctx := context.Background()
	needs := `{"name": "needs", "begin_within_secs": 2, "percent": 10,
	  "params": [{"name": "channel_id", "required": true}],
	  "sequence": {"steps": [{"request": {"type": "api", "method": "chat.postMessage"}}]}}`
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "needs.json", Data: []byte(needs)}); err != nil {
		t.Fatal(err)
	}
	// A running run without api_base (its set only speaks on the
	// websocket): herd's api requests cannot be launched over it.
	if _, err := k.PutBehaviorSet(ctx, "test", "wsonly", []behaviors.File{{Name: "ws.json", Data: []byte(wsOnlySet)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.CreateRun(ctx, "test", RunSpec{Name: "ws", BehaviorSet: "wsonly", Koi: 0,
		Labels: map[string]string{"service": "chat"}, Target: state.Target{WebsocketURL: "ws://127.0.0.1:1/ws"}}); err != nil {
		t.Fatal(err)
	}
	const okRun = `{"run": {"name": "first-run", "behavior_set": "bg", "koi": 0, "target": {"api_base": "http://127.0.0.1:9090/api"}}}`
	const okLaunch = `{"launch": {"formation": "herd", "run_labels": {"service": "search"}}}`
	for _, c := range []struct {
		why, second, field, says string
	}{
		// the formation declares channel_id required; the action gives none
		{"missing required parameter", `{"launch": {"formation": "needs", "run_labels": {"service": "search"}}}`,
			"actions[1].launch.params.channel_id", "missing required parameter channel_id"},
		// a parameter the formation does not declare
		{"undeclared parameter", `{"launch": {"formation": "needs", "run_labels": {"service": "search"}, "params": {"channel_id": "C1", "chanel": "x"}}}`,
			"actions[1].launch.params.chanel", "unknown parameter chanel"},
		// bg sends api requests: a run of it needs target.api_base
		{"run without api_base", `{"run": {"name": "no-base", "behavior_set": "bg", "koi": 0}}`,
			"actions[1].run.target.api_base", "sends api requests"},
		// herd sends api requests; the chat run has no api_base
		{"launch over a run without api_base", `{"launch": {"formation": "herd", "run_labels": {"service": "chat"}}}`,
			"actions[1].launch.formation", "no target.api_base"},
	} {
		for _, first := range []string{okRun, okLaunch} {
			name := fmt.Sprintf("t%d", len(k.State().Triggers(nil)))
			tr := `{"name": "` + name + `", "secret": "` + triggerSecret + `", "actions": [` + first + `, ` + c.second + `]}`
			var eb errorBody
			if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/triggers", tr, &eb); code != 201 {
				t.Fatalf("%s: storing the trigger: %d %+v", c.why, code, eb.Error)
			}
			runs, launches := len(k.State().Runs(nil)), len(k.State().Launches(nil))
			var res TriggerResult
			code := fire(t, k, name, signed(triggerSecret, time.Now(), `{"labels": {}}`), &res)
			if code != 422 || len(res.Errors) != 1 || res.Errors[0].Action != 1 || res.Errors[0].Field != c.field ||
				!strings.Contains(res.Errors[0].Message, c.says) || len(res.Runs) != 0 || len(res.Launches) != 0 {
				t.Errorf("%s after %s: %d, runs %+v, launches %+v, errors %+v; want 422, nothing started, one error on %s saying %q",
					c.why, first, code, res.Runs, res.Launches, res.Errors, c.field, c.says)
			}
			if r, l := len(k.State().Runs(nil)), len(k.State().Launches(nil)); r != runs || l != launches {
				t.Errorf("%s after %s: runs %d → %d, launches %d → %d; want none started", c.why, first, runs, r, launches, l)
			}
		}
	}
	// The same two good actions together do both, in one call.
	tr := `{"name": "both", "secret": "` + triggerSecret + `", "actions": [` + okRun + `, ` + okLaunch + `]}`
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/triggers", tr, nil); code != 201 {
		t.Fatalf("storing the trigger: %d", code)
	}
	var res TriggerResult
	if code := fire(t, k, "both", signed(triggerSecret, time.Now(), `{"labels": {}}`), &res); code != 200 || len(res.Runs) != 1 || len(res.Launches) != 1 {
		t.Errorf("good actions: %d %+v", code, res)
	}
}
