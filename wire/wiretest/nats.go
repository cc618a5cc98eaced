package wiretest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// natsStart bounds how long StartNATS waits for the server to accept
// connections (JetStream recovers its store first on a restart).
const natsStart = 10 * time.Second

// NATSConfig says how StartNATS runs the server. The zero value is a
// random loopback port, JetStream in a fresh tb.TempDir(), and no
// authentication.
type NATSConfig struct {
	// Port is the client port; 0 picks a free one.
	Port int
	// StoreDir holds JetStream's files; "" is a new tb.TempDir().
	StoreDir string
	// Users, when not empty, are the only clients admitted (Roles.Users
	// makes the keeper's and a school's).
	Users []*server.NkeyUser
	// MaxPayload is the largest message the server takes; 0 is
	// nats-server's default (1 MiB).
	MaxPayload int32
}

// NATS is an embedded nats-server run for a test.
type NATS struct {
	// Server is the running server.
	Server *server.Server
	// URL is its client URL, nats://127.0.0.1:PORT.
	URL string
	// Config is what it was started with, Port and StoreDir filled in:
	// Restart starts the same server again.
	Config NATSConfig
}

// StartNATS starts nats-server with JetStream on loopback and shuts it
// down when the test ends.
func StartNATS(tb testing.TB, cfg NATSConfig) *NATS {
	tb.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	port := cfg.Port
	if port == 0 {
		port = -1 // the server picks a free port
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: cfg.StoreDir,
		Nkeys: cfg.Users, NoLog: true, NoSigs: true, MaxPayload: cfg.MaxPayload})
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
		return nil
	}
	go ns.Start()
	if !ns.ReadyForConnections(natsStart) {
		ns.Shutdown()
		tb.Fatalf("nats-server did not accept connections within %v", natsStart)
		return nil
	}
	tb.Cleanup(ns.Shutdown)
	addr, ok := ns.Addr().(*net.TCPAddr)
	if !ok {
		ns.Shutdown()
		tb.Fatalf("nats-server listens on %v, not TCP", ns.Addr())
		return nil
	}
	cfg.Port = addr.Port
	return &NATS{Server: ns, URL: ns.ClientURL(), Config: cfg}
}

// Shutdown stops the server; clients see it gone, as when a node dies.
func (n *NATS) Shutdown() { n.Server.Shutdown() }

// Restart shuts the server down if it runs and starts it again on the
// same port with the same store and users: what clients see when a node
// comes back.
func (n *NATS) Restart(tb testing.TB) {
	tb.Helper()
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
	next := StartNATS(tb, n.Config)
	n.Server, n.URL = next.Server, next.URL
}

// Roles are the nkeys of the keeper's NATS roles, made the way the keeper
// makes them in DataDir/nats: the keeper's own user, the schools' user,
// and the control key that signs every switch.
type Roles struct {
	Keeper, School, Control nkeys.KeyPair
	// KeeperSeedFile holds the keeper user's seed.
	KeeperSeedFile string
	// SchoolSeedFile holds the school user's seed with the control key's
	// public half on a wire.KeeperKeyLine, as the keeper writes school.nk:
	// a school given it trusts only switches the control key signed.
	SchoolSeedFile string
}

// NewRoles makes fresh keys and writes their seed files (0600) in a
// tb.TempDir().
func NewRoles(tb testing.TB) *Roles {
	tb.Helper()
	r := &Roles{Keeper: NewKey(tb), School: NewKey(tb), Control: NewKey(tb)}
	r.KeeperSeedFile = SeedFile(tb, r.Keeper, "")
	r.SchoolSeedFile = SeedFile(tb, r.School, PublicKey(tb, r.Control))
	return r
}

// Users are the server's users for the roles: the keeper with every
// permission, the school with school (nil: every permission too; the
// keeper's SchoolPermissions is what production gives it).
func (r *Roles) Users(school *server.Permissions) []*server.NkeyUser {
	return []*server.NkeyUser{
		{Nkey: mustPublic(r.Keeper)},
		{Nkey: mustPublic(r.School), Permissions: school},
	}
}

// NewKey makes an nkey user key pair.
func NewKey(tb testing.TB) nkeys.KeyPair {
	tb.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		tb.Fatalf("nkey: %v", err)
	}
	return kp
}

// PublicKey returns kp's public key.
func PublicKey(tb testing.TB, kp nkeys.KeyPair) string {
	tb.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		tb.Fatalf("nkey public key: %v", err)
	}
	return pub
}

// mustPublic is PublicKey for keys NewKey made, which always have one.
func mustPublic(kp nkeys.KeyPair) string {
	pub, _ := kp.PublicKey()
	return pub
}

// SeedFile writes kp's seed to a new 0600 file in a tb.TempDir() and
// returns its path. A keeperKey that is not empty goes first on a
// wire.KeeperKeyLine, as in the school.nk the keeper writes.
func SeedFile(tb testing.TB, kp nkeys.KeyPair, keeperKey string) string {
	tb.Helper()
	seed, err := kp.Seed()
	if err != nil {
		tb.Fatalf("nkey seed: %v", err)
	}
	var content []byte
	if keeperKey != "" {
		content = fmt.Appendf(content, "# koipond school credentials\n%s%s\n", wire.KeeperKeyLine, keeperKey)
	}
	content = append(append(content, seed...), '\n')
	file := filepath.Join(tb.TempDir(), "user.nk")
	if err := os.WriteFile(file, content, 0o600); err != nil {
		tb.Fatal(err)
	}
	return file
}

// NKeyOption is the connect option for the user in seed file.
func NKeyOption(tb testing.TB, file string) nats.Option {
	tb.Helper()
	o, err := nats.NkeyOptionFromSeed(file)
	if err != nil {
		tb.Fatalf("nkey seed file %s: %v", file, err)
	}
	return o
}

// Connect connects to the server with opts and closes the connection when
// the test ends.
func (n *NATS) Connect(tb testing.TB, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		tb.Fatalf("connecting to %s: %v", n.URL, err)
		return nil
	}
	tb.Cleanup(nc.Close)
	return nc
}
