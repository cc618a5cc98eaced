package keeper

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats-server/v2/server"
)

// fitReply leaves out the largest assignments first, as many as the
// excess needs, then the launches that start last; what it returns fits,
// decodes and is within the wire's bounds.
func TestFitReplyDropsTheLargestFirst(t *testing.T) {
	spec := func(kb int) wire.RunSpec {
		tokens := make([]string, kb)
		for i := range tokens {
			tokens[i] = strings.Repeat("t", 1021) // 1 KiB with quotes and comma
		}
		return wire.RunSpec{Name: "r", Tokens: tokens}
	}
	now := time.Now()
	rep := &wire.PollReply{Switch: wire.Control{State: wire.Running, Epoch: 1}, KeeperTime: now, PollIntervalMS: 1000, LeaseMS: 5000,
		Assignments: []wire.Assignment{
			{Run: "small", Spec: spec(1), From: 0, To: 1},
			{Run: "big", Spec: spec(600), From: 0, To: 1},
			{Run: "mid", Spec: spec(300), From: 0, To: 1},
		},
		Launches: []wire.Launch{
			{ID: "late", Run: "small", Formation: "f", Name: "n", Start: now.Add(time.Hour), Count: 1, Params: map[string]string{"p": strings.Repeat("v", 4000)}},
			{ID: "soon", Run: "small", Formation: "f", Name: "n", Start: now.Add(time.Second), Count: 1, Params: map[string]string{"p": strings.Repeat("v", 4000)}},
		}}
	var dropped []string
	data, err := fitReply(rep, 700<<10, func(cause, id string) { dropped = append(dropped, id) })
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 700<<10 || fmt.Sprint(dropped) != "[big]" {
		t.Errorf("%d bytes, dropped %v; want at most %d with only the largest run dropped", len(data), dropped, 700<<10)
	}
	var back wire.PollReply
	if err := wire.Decode(data, &back); err != nil || back.Validate() != nil || len(back.Assignments) != 2 || len(back.Launches) != 2 {
		t.Errorf("decoded %d assignments, %d launches: %v / %v", len(back.Assignments), len(back.Launches), err, back.Validate())
	}
	// Past every assignment, the launches that start last go.
	dropped = nil
	data, err = fitReply(rep, 6<<10, func(cause, id string) { dropped = append(dropped, cause+" "+id) })
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 6<<10 || !strings.Contains(fmt.Sprint(dropped), "launch over the payload limit late") || strings.Contains(fmt.Sprint(dropped), "soon") {
		t.Errorf("%d bytes, dropped %v; want the late launch out, the soon one kept", len(data), dropped)
	}
	if _, err := fitReply(&wire.PollReply{Error: strings.Repeat("e", 100)}, 50, func(string, string) {}); err == nil {
		t.Error("a reply that cannot fit was encoded")
	}
}

// Against a NATS of 1 MiB payloads (nats-server's default), a school
// assigned two runs whose token lists together overfill a payload, and a
// small run, keeps getting poll replies: the bigger run is left out of
// them and counted, the other two runs' koi connect and none pauses.
// Before, the reply was never delivered, and the school's lease paused
// all three.
func TestPollReplyFitsTheNATSPayload(t *testing.T) {
	port := freePort(t)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	k, err := OpenWithAPI(context.Background(), Config{HTTP: "127.0.0.1:0", NATS: fmt.Sprintf("nats://127.0.0.1:%d", port), DataDir: t.TempDir(),
		PollInterval: testPoll, Lease: testLease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if mp := k.conn().MaxPayload(); mp != 1<<20 {
		t.Fatalf("max payload %d, want nats-server's default 1 MiB", mp)
	}
	p := openPond(t, nil)
	openSchool(t, k, k.NATSURL(), "s1", 100)
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "pond", []behaviors.File{{Name: "pond.json", Data: []byte(pondSet)}}); err != nil {
		t.Fatal(err)
	}
	create := func(name string, tokens []string) *state.Run {
		t.Helper()
		target := state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}
		if tokens != nil {
			target = state.Target{APIBase: p.URL() + "/api", Tokens: tokens}
		}
		run, err := k.CreateRun(ctx, "test", RunSpec{Name: name, BehaviorSet: "pond", Koi: 2, TimeScale: 60, Target: target})
		if err != nil {
			t.Fatal(err)
		}
		return run
	}
	// Two runs whose token lists fit the API's body limit and the KV,
	// 640 and 470 KB of spec, are too much for one reply together.
	tokens := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("xoxp-pond-%d-%s", i, strings.Repeat("x", 64))[:64]
		}
		out[0], out[1] = "xoxp-pond-0", "xoxp-pond-1"
		return out
	}
	big := create("big", tokens(9_500))
	kept := []*state.Run{create("mid", tokens(7_000)), create("small", nil)}
	for _, run := range kept {
		wiretest.WaitFor(t, 20*time.Second, "the kept runs' koi connected", func() error {
			if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != 2 {
				return fmt.Errorf("%s: %+v", run.Name, v.KoiNow)
			}
			return nil
		})
	}
	until := time.Now().Add(3 * testLease)
	for time.Now().Before(until) {
		for _, run := range kept {
			if v := k.RunView(k.State(), run.ID); v.KoiNow.Paused > 0 || v.KoiNow.Connected != 2 {
				t.Fatalf("%s: koi paused or lost: %+v", run.Name, v.KoiNow)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := k.Rejections()["poll reply: run over the payload limit"]; n == 0 {
		t.Errorf("the big run left out of the replies was not counted: %v", k.Rejections())
	}
	if v := k.RunView(k.State(), big.ID); v.KoiNow.Connected != 0 {
		t.Errorf("the big run's koi: %+v, want none (its assignment never fits)", v.KoiNow)
	}
}
