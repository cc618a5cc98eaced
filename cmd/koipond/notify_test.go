package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/wire/wiretest"
)

// The notification and trigger commands against a real keeper and a real
// receiver on 127.0.0.1: webhook add/list/test/rm, trigger add/list/fire
// (signed by the CLI, verified by the keeper) and a forged fire refused.
func TestWebhookAndTriggerCommands(t *testing.T) {
	k, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	t.Setenv("KOIPOND_KEEPER", "http://"+k.HTTPAddr())
	var mu sync.Mutex
	var kinds []string
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		kinds = append(kinds, r.Header.Get("X-Koipond-Event"))
		mu.Unlock()
	}))
	defer rc.Close()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hookSecret := write("hook.secret", "hook-secret-123\n")
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}
	out := must("webhook", "add", "ops", rc.URL+"/in", "--kinds", "run.*,trigger.fired", "--secret-file", hookSecret, "--label", "team=core")
	if !strings.Contains(out, "webhook ops: json") || !strings.Contains(out, "signed true") {
		t.Errorf("webhook add: %s", out)
	}
	// fail runs a command expected to fail and returns its error.
	fail := func(args ...string) error {
		t.Helper()
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil {
			t.Fatalf("%v succeeded", args)
		}
		return err
	}
	if err := fail("webhook", "add", "bad", rc.URL, "--kinds", "runs.started"); !strings.Contains(err.Error(), "kinds[0]") {
		t.Errorf("bad kinds: %v", err)
	}
	out = must("webhook", "test", "ops")
	if !strings.Contains(out, "delivered: HTTP 200") {
		t.Errorf("webhook test: %s", out)
	}
	out = must("webhook", "list")
	if !strings.Contains(out, "LAST ERROR") || !strings.Contains(out, "ops") || !strings.Contains(out, "run.*,trigger.fired") {
		t.Errorf("webhook list:\n%s", out)
	}
	t.Logf("webhook list:\n%s", out)

	// A trigger starting a templated run; the CLI signs the call.
	set := `{"behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`
	must("behaviors", "upload", write("bg.json", set))
	spec := write("deploy.json", `{"actions": [{"match": {"service": "search"}, "run": {
	  "name": "deploy-{{.labels.service}}-{{.labels.version}}", "behavior_set": "bg", "koi": 0,
	  "labels": {"team": "core"}, "target": {"api_base": "http://127.0.0.1:9/api"}}}]}`)
	trigSecret := write("trigger.secret", "trigger-secret-0123456789")
	out = must("trigger", "add", "deploy", "--file", spec, "--secret-file", trigSecret)
	if !strings.Contains(out, "/api/v1/triggers/deploy") {
		t.Errorf("trigger add: %s", out)
	}
	out = must("trigger", "fire", "deploy", "--secret-file", trigSecret, "--label", "service=search", "--label", "version=v7")
	if !strings.Contains(out, `started run run-`) || !strings.Contains(out, `"deploy-search-v7"`) {
		t.Errorf("trigger fire: %s", out)
	}
	t.Logf("trigger fire:\n%s", out)
	forged := write("forged.secret", "not-the-trigger-secret")
	if err := fail("trigger", "fire", "deploy", "--secret-file", forged, "--label", "service=search", "--label", "version=v8"); !strings.Contains(err.Error(), "bad_signature") {
		t.Errorf("forged fire: %v", err)
	}
	out = must("trigger", "list")
	if !strings.Contains(out, "bad_signature=1") {
		t.Errorf("trigger list:\n%s", out)
	}
	// The run started by the trigger carries team=core: the webhook hears
	// of it, and of the trigger.
	wiretest.WaitFor(t, 5*time.Second, "the webhook to hear of the run and the trigger", func() error {
		mu.Lock()
		got := strings.Join(kinds, " ")
		mu.Unlock()
		if strings.Contains(got, "run.started") && strings.Contains(got, "trigger.fired") {
			return nil
		}
		return fmt.Errorf("receiver got %q", got)
	})
	must("trigger", "rm", "deploy")
	must("webhook", "rm", "ops")
	if out := must("webhook", "list"); strings.Contains(out, "ops") {
		t.Errorf("after rm:\n%s", out)
	}
}
