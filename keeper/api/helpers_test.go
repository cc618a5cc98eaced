package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// Fast clocks for tests: schools poll every 100 ms, leases last 1 s.
const (
	testPoll  = 100 * time.Millisecond
	testLease = time.Second
)

// openKeeper starts a keeper with embedded NATS on random ports and its
// API on a random loopback port, its data in dir.
func openKeeper(t testing.TB, dir string, mut ...func(*keeper.Config)) *keeper.Keeper {
	t.Helper()
	cfg := keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dir,
		PollInterval: testPoll, Lease: testLease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mut {
		m(&cfg)
	}
	k, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

const bgSet = `{"behaviors": {"api.test": {"frequency": 0.5, "steps": [
  {"request": {"type": "api", "method": "api.test"}}]}}}`

const herd = `{"name": "herd", "begin_within_secs": 2, "percent": 10,
  "sequence": {"steps": [{"request": {"type": "api", "method": "chat.postMessage"}}]}}`

// seedRun stores a behavior set and an always-on run of koi koi.
func seedRun(t testing.TB, k *keeper.Keeper, koi int) *state.Run {
	t.Helper()
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", keeper.RunSpec{Name: "always", BehaviorSet: "bg", Koi: koi, Ramp: 100,
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api", Token: "xoxp-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

type apiErr struct {
	Error struct {
		Code, Message, Field string
	} `json:"error"`
}

// apiTextAs GETs path with a token and returns the body.
func apiTextAs(t testing.TB, k *keeper.Keeper, token, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+k.HTTPAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// switchState is the global switch's position.
func switchState(k *keeper.Keeper) wire.State {
	if st := k.State().Switch(nil).State; st != "" {
		return st
	}
	return wire.Running
}
