package keeper

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// lockedBuffer is a log sink safe for the keeper's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startClusterNode starts node i of a 3-node JetStream cluster whose
// route ports are routes.
func startClusterNode(t *testing.T, i int, client []int, routes []int) *server.Server {
	t.Helper()
	// Ports from freePort were free when asked for; another test may have
	// taken one since, and a node that cannot listen never gets ready
	// (NoLog: it says nothing). Such a node starts again on new ports
	// (the others find it through the routes they share).
	for attempt := 1; ; attempt++ {
		var urls []string
		for j, p := range routes {
			if j != i {
				urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		o := &server.Options{ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: client[i],
			JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "kp", Host: "127.0.0.1", Port: routes[i]},
			Routes:  server.RoutesFromStr(strings.Join(urls, ","))}
		ns, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if ns.ReadyForConnections(30 * time.Second) {
			t.Cleanup(ns.Shutdown)
			return ns
		}
		ns.Shutdown()
		why := cmp.Or(portsTaken(client[i], routes[i]), "its ports are free now")
		if attempt == 3 {
			t.Fatalf("node %d did not start in %d attempts (%s)", i, attempt, why)
		}
		t.Logf("node %d did not start (%s); again on new ports", i, why)
		client[i], routes[i] = freePort(t), freePort(t)
	}
}

// portsTaken says which of ports another listener holds, or "".
func portsTaken(ports ...int) string {
	var taken []string
	for _, p := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			taken = append(taken, fmt.Sprintf("port %d taken: %v", p, err))
			continue
		}
		ln.Close()
	}
	return strings.Join(taken, "; ")
}

// A keeper started beside a NATS cluster that has not yet formed (one
// node of three up: no JetStream meta leader) waits, says so, and opens
// its state once the others join, instead of failing its start.
func TestKeeperWaitsForAClusterToForm(t *testing.T) {
	client := []int{freePort(t), freePort(t), freePort(t)}
	routes := []int{freePort(t), freePort(t), freePort(t)}
	startClusterNode(t, 0, client, routes)

	logs := &lockedBuffer{}
	cfg := Config{HTTP: "127.0.0.1:0", NATS: fmt.Sprintf("nats://127.0.0.1:%d", client[0]), Replicas: 3,
		DataDir: t.TempDir(), PollInterval: testPoll, Lease: testLease, StartupTimeout: 3 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	type opened struct {
		k   *Keeper
		err error
	}
	done := make(chan opened, 1)
	go func() {
		k, err := OpenWithAPI(context.Background(), cfg)
		done <- opened{k, err}
	}()
	wiretest.WaitFor(t, time.Minute, "the keeper to say it waits for JetStream", func() error {
		select {
		case o := <-done:
			done <- o
			return fmt.Errorf("Open returned before the cluster formed (err %v)", o.err)
		default:
		}
		if !strings.Contains(logs.String(), "waiting for JetStream") {
			return fmt.Errorf("no such line yet; logs:\n%s", logs.String())
		}
		return nil
	})
	startClusterNode(t, 1, client, routes)
	startClusterNode(t, 2, client, routes)

	var o opened
	select {
	case o = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("Open did not return after the cluster formed; logs:\n%s", logs.String())
	}
	if o.err != nil {
		t.Fatalf("Open: %v; logs:\n%s", o.err, logs.String())
	}
	t.Cleanup(func() { o.k.Close() })
	seedRun(t, o.k, 10) // the state is writable

	nc := o.k.conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
		t.Fatalf("bucket replicas %d, want 3", r)
	}
}

// A keeper whose NATS never serves JetStream gives up after
// StartupTimeout with an error that says what it waited for.
func TestKeeperStartupTimeoutNamesTheBucket(t *testing.T) {
	client := []int{freePort(t), freePort(t), freePort(t)}
	routes := []int{freePort(t), freePort(t), freePort(t)}
	startClusterNode(t, 0, client, routes)
	cfg := Config{HTTP: "127.0.0.1:0", NATS: fmt.Sprintf("nats://127.0.0.1:%d", client[0]), Replicas: 3,
		DataDir: t.TempDir(), PollInterval: testPoll, Lease: testLease, StartupTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&lockedBuffer{}, nil))}
	k, err := OpenWithAPI(context.Background(), cfg)
	if err == nil {
		k.Close()
		t.Fatal("Open succeeded without a JetStream leader")
	}
	for _, want := range []string{`state bucket "koipond"`, "--startup-timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
