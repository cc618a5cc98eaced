package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/wire/wiretest"
)

// openKeeperAt opens a keeper on addr ("127.0.0.1:0" for any port) with
// its state in dir, closed when the test ends.
func openKeeperAt(t *testing.T, addr, dir string) *keeper.Keeper {
	t.Helper()
	k, err := api.Open(context.Background(), keeper.Config{HTTP: addr, NATSListen: "127.0.0.1:-1", DataDir: dir,
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// waitCommand runs args in the background; the returned channel gets its
// error when it ends.
func waitCommand(args ...string) (stdout, stderr *syncBuffer, done chan error) {
	stdout, stderr, done = &syncBuffer{}, &syncBuffer{}, make(chan error, 1)
	go func() { done <- run(context.Background(), args, stdout, stderr) }()
	return stdout, stderr, done
}

// TestWaitRidesOutKeeperRestart: run create --wait keeps waiting while the
// keeper restarts on the same address with the same data, says so, and
// ends with the run's verdict (a threshold on a key with no data fails:
// exit 1, not the 3 of an outage). With the keeper gone for longer than
// --wait-unavailable it gives up with errUnavailable (exit 3).
func TestWaitRidesOutKeeperRestart(t *testing.T) {
	dir := t.TempDir()
	k := openKeeperAt(t, "127.0.0.1:0", dir)
	addr := k.HTTPAddr()
	url := "--keeper=http://" + addr
	if _, errOut, code := runCmd(t, "behaviors", "upload", url, "--name", "slack", "../../examples/slack/frequencies.json", "../../examples/slack/sequences.json"); code != 0 {
		t.Fatalf("upload: %s", errOut)
	}
	create := func(dur, unavailable string) (*syncBuffer, *syncBuffer, chan error) {
		return waitCommand("run", "create", url, "--name", "ci", "--behaviors", "slack", "--api-base", "http://127.0.0.1:9/api",
			"--koi", "5", "--duration", dur, "--wait", "--wait-unavailable", unavailable, "--progress-every", "1s",
			"--threshold", "api:auth.test=p95 < 300ms")
	}
	stdout, stderr, done := create("6s", "2m")
	wiretest.Until(t, 30*time.Second, "progress from the first keeper", func() bool { return strings.Contains(stderr.String(), "koi connected  ") })
	k.Close()
	wiretest.Until(t, 30*time.Second, "the wait saying the keeper is unreachable", func() bool {
		return strings.Contains(stderr.String(), "keeper unreachable for")
	})
	k2 := openKeeperAt(t, addr, dir)
	select {
	case err := <-done:
		if code := exitCode(err, stderr); code != exitFailed {
			t.Errorf("exit %d (%v), want 1: the threshold had no data\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the wait did not end after the keeper came back\n%s", stderr)
	}
	if !strings.Contains(stdout.String(), "THRESHOLDS FAILED") || !strings.Contains(stdout.String(), "report of run") {
		t.Errorf("no final report after the restart:\n%s", stdout)
	}
	if n := strings.Count(stdout.String(), "report of run"); n != 1 {
		t.Errorf("the final report printed %d times", n)
	}

	// Gone for good: give up after --wait-unavailable with errUnavailable.
	_, stderr, done = create("1m", "1s")
	wiretest.Until(t, 30*time.Second, "progress from the second keeper", func() bool { return strings.Contains(stderr.String(), "koi connected  ") })
	k2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, errUnavailable) {
			t.Errorf("giving up: %v, want an error wrapping errUnavailable\n%s", err, stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the wait did not give up with the keeper gone\n%s", stderr)
	}
}
