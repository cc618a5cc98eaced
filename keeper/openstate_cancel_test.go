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
