package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
)

func TestClientCommandsAgainstKeeper(t *testing.T) {
	dir := t.TempDir()
	k, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	url := "--keeper=http://" + k.HTTPAddr()
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("koipond %s: code %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	out := must("behaviors", "upload", url, "--name", "slack", "../../examples/slack/frequencies.json", "../../examples/slack/sequences.json")
	if !strings.Contains(out, `stored behavior set "slack" version 1`) {
		t.Errorf("upload: %s", out)
	}
	var rn struct {
		ID    string `json:"id"`
		Koi   int    `json:"koi"`
		State string `json:"state"`
	}
	out = must("run", "create", url, "--json", "--name", "bg", "--behaviors", "slack", "--api-base", "http://127.0.0.1:9090/api",
		"--token-template", "xoxp-pond-{{.Index}}", "--koi", "10", "--label", "team=qa")
	if err := json.Unmarshal([]byte(out), &rn); err != nil || rn.ID == "" || rn.Koi != 10 {
		t.Fatalf("run create: %v\n%s", err, out)
	}
	if out = must("run", "list", url); !strings.Contains(out, rn.ID) {
		t.Errorf("run list: %s", out)
	}
	if out = must("run", "scale", url, "--koi", "20", rn.ID); !strings.Contains(out, "20 koi") {
		t.Errorf("run scale: %s", out)
	}
	if out = must("run", "pause", url, rn.ID); !strings.Contains(out, "paused") {
		t.Errorf("run pause: %s", out)
	}
	if out = must("formations", "upload", url, "../../examples/seed/announcement-reaction.formation.json"); !strings.Contains(out, "stored formation") {
		t.Errorf("formations upload: %s", out)
	}
	if out = must("launch", url, "--run", rn.ID, "--at", "+1m", "--param", "channel_id=C1", "../../examples/seed/announcement-reaction.formation.json"); !strings.Contains(out, "launch launch-") {
		t.Errorf("launch: %s", out)
	}
	if out = must("pause", url); !strings.Contains(out, "paused") {
		t.Errorf("pause: %s", out)
	}
	if out = must("status", url); !strings.Contains(out, "switch: paused") || !strings.Contains(out, rn.ID) {
		t.Errorf("status: %s", out)
	}
	// Refusals come back with the keeper's code and field.
	err = run(context.Background(), []string{"run", "scale", url, "--koi", "-5", rn.ID}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "keeper refused (invalid): koi:") {
		t.Errorf("bad scale: %v", err)
	}
	// The emergency stop straight over NATS and the keeper's bucket (here
	// the keeper's embedded server, with the keys in its data directory);
	// a keeper started later keeps it.
	out = must("stop", url, "--nats", k.NATSURL(), "--data", dir, "--json")
	var c struct {
		Epoch uint64 `json:"epoch"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.State != "stopped" || c.Epoch == 0 || c.Epoch > 1000 {
		t.Errorf("stop --nats: %v %s", err, out)
	}
	k.Close()
	k2, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if g := k2.State().Switch(nil); g.State != "stopped" || g.Epoch != c.Epoch {
		t.Errorf("the NATS stop did not survive into the keeper: %+v", g)
	}
}

// A keeper (or whatever answers in its place) sending a huge error body
// that is not the keeper's JSON error: the message shows at most 512
// bytes of it, and a 5xx other than 502/503/504 is a failure (1), not an
// outage (3).
func TestKeeperErrorAnswerIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(strings.Repeat("A", 1<<20)))
	}))
	defer srv.Close()
	var errb strings.Builder
	err := run(context.Background(), []string{"run", "list", "--keeper", srv.URL}, io.Discard, &errb)
	if code := exitCode(err, &errb); code != exitFailed || errb.Len() > 1024 || !strings.Contains(errb.String(), "keeper answered 500 Internal Server Error: AAAA") {
		t.Errorf("exit %d, %d bytes of error:\n%.2000s", code, errb.Len(), errb.String())
	}
}
