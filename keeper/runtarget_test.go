package keeper

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// A set that only speaks on its websocket (no api step).
const wsOnlySet = `{"behaviors": {"ping": {"frequency": 1, "steps": [{"request": {"type": "ws", "text": "ping"}}]}}}`

// A run of a set without api steps needs no api_base; one whose set has
// api steps is refused, naming target.api_base, and nothing is stored.
// The websocket subprotocols and headers reach the spec schools get, and
// bad ones are refused naming the field.
func TestRunTargetWebsocketOnly(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	seedRun(t, k, 1) // stores "bg", whose sequences call the api
	if _, err := k.PutBehaviorSet(ctx, "test", "wsonly", []behaviors.File{{Name: "ws.json", Data: []byte(wsOnlySet)}}); err != nil {
		t.Fatal(err)
	}
	target := map[string]any{"websocket_url": "ws://127.0.0.1:1883/mqtt", "websocket_subprotocols": []string{"mqtt", "mqttv3.1"},
		"websocket_headers": map[string]string{"Authorization": "Bearer {{.Token}}", "X-Koi": "koi-{{.Index}}"},
		"token":             "t-{{.Index}}"}
	var created struct {
		ID     string `json:"id"`
		Target struct {
			APIBase               string            `json:"api_base"`
			WebsocketSubprotocols []string          `json:"websocket_subprotocols"`
			WebsocketHeaders      map[string]string `json:"websocket_headers"`
		} `json:"target"`
	}
	if st := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/runs", map[string]any{"name": "mqtt", "behavior_set": "wsonly", "koi": 3, "target": target}, &created); st != 201 {
		t.Fatalf("a websocket-only run without api_base: %d %+v", st, created)
	}
	if created.Target.APIBase != "" || len(created.Target.WebsocketSubprotocols) != 2 || created.Target.WebsocketHeaders["X-Koi"] != "koi-{{.Index}}" {
		t.Errorf("the run's target: %+v", created.Target)
	}
	spec := k.State().Run(nil, created.ID).Spec()
	if spec.APIBase != "" || strings.Join(spec.WebsocketSubprotocols, ",") != "mqtt,mqttv3.1" ||
		spec.WebsocketHeaders["Authorization"] != "Bearer {{.Token}}" || spec.WebsocketURL != "ws://127.0.0.1:1883/mqtt" {
		t.Errorf("the spec schools get: %+v", spec)
	}
	reply := &wire.PollReply{Switch: wire.Control{Epoch: 1, State: wire.Running}, KeeperTime: time.Now(), PollIntervalMS: 1000, LeaseMS: 10000,
		Assignments: []wire.Assignment{{Run: created.ID, Spec: spec, From: 0, To: 3, Ramp: 1}}}
	if err := reply.Validate(); err != nil {
		t.Errorf("the spec is not within the wire bounds: %v", err)
	}

	runsBefore, auditBefore := len(k.State().Runs(nil)), len(k.State().Audit(nil, 0, 1000))
	with := func(edit func(map[string]any)) map[string]any {
		tg := map[string]any{}
		for a, b := range target {
			tg[a] = b
		}
		edit(tg)
		return map[string]any{"name": "bad", "behavior_set": "wsonly", "koi": 1, "target": tg}
	}
	for _, tc := range []struct {
		name        string
		body        map[string]any
		field, want string
	}{
		{"api steps without api_base", map[string]any{"name": "bad", "behavior_set": "bg", "koi": 1, "target": target},
			"target.api_base", "sends api requests: give target.api_base"},
		{"api_base not http", with(func(m map[string]any) { m["api_base"] = "ws://x" }), "target.api_base", "http"},
		{"reserved header", with(func(m map[string]any) { m["websocket_headers"] = map[string]string{"sec-websocket-protocol": "mqtt"} }),
			"target.websocket_headers.sec-websocket-protocol", "set by the websocket handshake itself"},
		{"header name with a space", with(func(m map[string]any) { m["websocket_headers"] = map[string]string{"X Y": "v"} }),
			"target.websocket_headers", "not a header name"},
		{"header value with a line break", with(func(m map[string]any) { m["websocket_headers"] = map[string]string{"X-A": "v\r\nHost: evil"} }),
			"target.websocket_headers.X-A", "no line break"},
		{"header template broken", with(func(m map[string]any) { m["websocket_headers"] = map[string]string{"X-A": "{{.Token"} }),
			"target.websocket_headers.X-A", "bad template"},
		{"header template field unknown", with(func(m map[string]any) { m["websocket_headers"] = map[string]string{"X-A": "{{.Password}}"} }),
			"target.websocket_headers.X-A", "{{.Index}}, {{.Token}} and {{.UserID}}"},
		{"header template that loops", with(func(m map[string]any) {
			m["websocket_headers"] = map[string]string{"X-A": "{{range 100000000000}}{{end}}"}
		}),
			"target.websocket_headers.X-A", "range is not allowed"},
		{"header template with a huge width", with(func(m map[string]any) {
			m["websocket_headers"] = map[string]string{"X-A": `{{printf "%999999999d" .Index}}`}
		}),
			"target.websocket_headers.X-A", "at most 999"},
		{"token template that loops", with(func(m map[string]any) { m["token"] = "{{range 100000000000}}{{end}}" }),
			"target.token", "range is not allowed"},
		{"user id template with a huge width", with(func(m map[string]any) { m["user_id"] = `U{{printf "%0999999999d" .Index}}` }),
			"target.user_id", "at most 999"},
		{"subprotocol with a comma", with(func(m map[string]any) { m["websocket_subprotocols"] = []string{"a,b"} }),
			"target.websocket_subprotocols", "not a subprotocol name"},
		{"empty subprotocol", with(func(m map[string]any) { m["websocket_subprotocols"] = []string{""} }),
			"target.websocket_subprotocols", "not a subprotocol name"},
		{"too many subprotocols", with(func(m map[string]any) { m["websocket_subprotocols"] = make([]string, 33) }),
			"target.websocket_subprotocols", "more than 32"},
		{"websocket url not ws", with(func(m map[string]any) { m["websocket_url"] = "http://x" }), "target.websocket_url", "ws or wss"},
	} {
		var e apiErr
		st := wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "POST", "/api/v1/runs", tc.body, &e)
		if st != 400 || e.Error.Code != CodeInvalid || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("%s: %d %+v, want 400 on %s saying %q", tc.name, st, e.Error, tc.field, tc.want)
		}
	}
	if n := len(k.State().Runs(nil)); n != runsBefore {
		t.Errorf("runs: %d after refusals, want %d", n, runsBefore)
	}
	if n := len(k.State().Audit(nil, 0, 1000)); n != auditBefore {
		t.Errorf("audit grew from %d to %d on refused runs", auditBefore, n)
	}
}

// A formation that sends api requests cannot be launched over a run
// without an API base; one that only speaks on the websocket can.
func TestLaunchNeedsAPIBaseForAPIFormations(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "wsonly", []behaviors.File{{Name: "ws.json", Data: []byte(wsOnlySet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: "ws", BehaviorSet: "wsonly", Koi: 2, Target: state.Target{WebsocketURL: "ws://127.0.0.1:1/ws"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "herd.json", Data: []byte(herd)}); err != nil {
		t.Fatal(err)
	}
	wave := `{"name": "wave", "begin_within_secs": 2, "percent": 50, "sequence": {"steps": [{"request": {"type": "ws", "text": "hi"}}]}}`
	if _, err := k.PutFormation(ctx, "test", behaviors.File{Name: "wave.json", Data: []byte(wave)}); err != nil {
		t.Fatal(err)
	}
	_, err = k.Launch(ctx, "test", LaunchSpec{Formation: "herd", Run: run.ID})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalid || e.Field != "formation" || !strings.Contains(e.Message, "no target.api_base") {
		t.Errorf("an api formation over a run without api_base: %v", err)
	}
	if n := len(k.State().Launches(nil)); n != 0 {
		t.Errorf("%d launches stored after the refusal", n)
	}
	if _, err := k.Launch(ctx, "test", LaunchSpec{Formation: "wave", Run: run.ID}); err != nil {
		t.Errorf("a websocket formation: %v", err)
	}
}
