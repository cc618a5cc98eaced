package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
)

// The demo's timed launch posts its announcement to pond as user 0 only
// while the switch runs: after `koipond stop` (or a pause) it sends
// nothing to the target and says why; after a resume it posts and
// launches again.
func TestDemoLaunchHonorsTheSwitch(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k, err := api.Open(ctx, keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	p, err := pond.Open(ctx, pond.Config{Addr: "127.0.0.1:0", Users: 10, Channels: 2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	run, formation, err := demoSetup(ctx, k, p, 2, 10, 60, 0)
	if err != nil {
		t.Fatal(err)
	}
	posts := func() uint64 { return p.Stats().Requests["chat.postMessage"]["200"] }
	for _, st := range []wire.State{wire.Stopped, wire.Paused} {
		if _, err := k.SetSwitch(ctx, "test", st); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := demoLaunch(ctx, &out, k, p, run.ID, formation); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		if n := posts(); n != 0 || !strings.Contains(out.String(), "formation launch skipped: everything is "+string(st)) {
			t.Errorf("%s: %d posts at pond; output %q", st, n, out.String())
		}
	}
	if _, err := k.SetSwitch(ctx, "test", wire.Running); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := demoLaunch(ctx, &out, k, p, run.ID, formation); err != nil {
		t.Fatal(err)
	}
	if n := posts(); n != 1 || !strings.Contains(out.String(), "launched") {
		t.Errorf("running: %d posts at pond; output %q", n, out.String())
	}
}
