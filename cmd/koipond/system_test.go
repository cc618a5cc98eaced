package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
)

// The commands' tests run against a real system on loopback: a keeper
// with embedded NATS (short poll and lease), ponds and schools; each is
// closed when the test ends.

// tickSet boots each koi onto pond's websocket and has it call auth.test
// once a behavior minute.
const tickSet = `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
	  "behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`

func testKeeper(t *testing.T) *keeper.Keeper {
	t.Helper()
	k, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// testPond starts a pond of users without rate limits, faults given.
func testPond(t *testing.T, users, channels int, inject map[string]pond.Fault) *pond.Server {
	t.Helper()
	p, err := pond.Open(context.Background(), pond.Config{Users: users, Channels: channels, DisableRateLimits: true, Inject: inject})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testSchool(t *testing.T, k *keeper.Keeper, id string, capacity int) *school.School {
	t.Helper()
	s, err := school.Open(context.Background(), school.Config{ID: id, NATSURL: k.NATSURL(), NATSNKeySeedFile: k.SchoolNKeyFile(), Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
