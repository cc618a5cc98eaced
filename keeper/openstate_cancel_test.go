package keeper

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"
)

// A keeper waiting for a JetStream that never serves its bucket returns
// from Open soon after its context is cancelled (Ctrl-C during the
// startup wait), long before StartupTimeout, with the cancellation in
// its error. The bound is the wait Open was in when cancelled plus a
// margin derived from how long one attempt took here.
func TestKeeperStartupWaitEndsWithItsContext(t *testing.T) {
	client := []int{freePort(t), freePort(t), freePort(t)}
	routes := []int{freePort(t), freePort(t), freePort(t)}
	startClusterNode(t, 0, client, routes)

	logs := &lockedBuffer{}
	cfg := Config{HTTP: "127.0.0.1:0", NATS: fmt.Sprintf("nats://127.0.0.1:%d", client[0]), Replicas: 3,
		DataDir: t.TempDir(), PollInterval: testPoll, Lease: testLease, StartupTimeout: 10 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	done := make(chan error, 1)
	go func() {
		k, err := OpenWithAPI(ctx, cfg)
		if err == nil {
			k.Close()
		}
		done <- err
	}()
	wiretest.WaitFor(t, 2*time.Minute, "the keeper to wait for JetStream", func() error {
		if n := strings.Count(logs.String(), "waiting for JetStream"); n < 1 {
			return fmt.Errorf("%d waits logged; logs:\n%s", n, logs.String())
		}
		return nil
	})
	waited := time.Since(began) // an attempt: a generous unit of "this machine is slow"
	cancel()
	cancelled := time.Now()
	select {
	case err := <-done:
		took := time.Since(cancelled)
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("Open after cancel: err %v, want the cancellation", err)
		}
		t.Logf("Open returned %v after the cancel (an attempt took %v): %v", took, waited, err)
	case <-time.After(waited + 5*time.Second):
		t.Fatalf("Open still waiting %v after its context was cancelled (StartupTimeout %v); logs:\n%s",
			time.Since(cancelled), cfg.StartupTimeout, logs.String())
	}
}

// A bucket the server refuses outright (three replicas on a NATS that is
// not clustered, here the embedded one) fails Open at once with the
// server's reason: no waiting can change that answer, and "raise
// --startup-timeout" would send the user the wrong way.
func TestKeeperStartupDoesNotWaitOnARefusal(t *testing.T) {
	logs := &lockedBuffer{}
	cfg := Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", Replicas: 3,
		DataDir: t.TempDir(), PollInterval: testPoll, Lease: testLease, StartupTimeout: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	began := time.Now()
	k, err := OpenWithAPI(context.Background(), cfg)
	took := time.Since(began)
	if err == nil {
		k.Close()
		t.Fatal("Open succeeded with three replicas on an unclustered NATS")
	}
	t.Logf("Open failed after %v: %v", took, err)
	if !strings.Contains(err.Error(), "non-clustered") || strings.Contains(err.Error(), "--startup-timeout") {
		t.Errorf("error %q: want the server's refusal, not a timeout", err)
	}
	if n := strings.Count(logs.String(), "waiting for JetStream"); n != 0 {
		t.Errorf("the keeper waited %d times (%v) for an answer that cannot change; logs:\n%s", n, took, logs.String())
	}
}
