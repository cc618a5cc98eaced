package keeper

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// asyncErrs collects a connection's asynchronous errors (permission
// violations arrive so).
type asyncErrs struct {
	mu   sync.Mutex
	errs []string
}

func (a *asyncErrs) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		a.mu.Lock()
		a.errs = append(a.errs, err.Error())
		a.mu.Unlock()
	})
}

func (a *asyncErrs) has(sub string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.errs {
		if strings.Contains(e, sub) {
			return nil
		}
	}
	return errors.New("no error mentioning " + sub + " yet; have " + strings.Join(a.errs, "; "))
}

// No credentials, unknown keys and tokens are all refused: with auth on,
// no one reaches a koipond subject without the keys in the data dir.
func TestNATSRefusesClientsWithoutCredentials(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	stranger, _ := nkeys.CreateUser()
	seed, _ := stranger.Seed()
	path := filepath.Join(t.TempDir(), "stranger.nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	strangerOpt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]nats.Option{
		"no credentials": nil,
		"a token":        {nats.Token("guess")},
		"a user":         {nats.UserInfo("keeper", "keeper")},
		"an unknown key": {strangerOpt},
	} {
		nc, err := nats.Connect(k.NATSURL(), opts...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}
}

// A school's credentials publish polls, blobs and metrics and hear the
// switch; they cannot publish the switch, listen to polls or other
// replies, nor reach JetStream.
func TestSchoolCredentialsArePermittedOnlyTheirSubjects(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	observer := keeperConn(t, k)
	defer observer.Close()
	seen := make(chan *nats.Msg, 16)
	for _, subj := range []string{wire.SubjectControl, wire.SubjectMetrics} {
		if _, err := observer.ChanSubscribe(subj, seen); err != nil {
			t.Fatal(err)
		}
	}
	observer.Flush()

	var errs asyncErrs
	sc := schoolConn(t, k, errs.handler())
	defer sc.Close()
	forged, _ := wire.Encode(&wire.Control{Epoch: math.MaxUint64, State: wire.Stopped, By: "mallory", At: time.Now()})
	if err := sc.Publish(wire.SubjectControl, forged); err != nil {
		t.Fatal(err)
	}
	// A metrics report after it: the server keeps one client's order, so
	// once the observer has the report, the forged switch would have come.
	sentinel, _ := wire.Encode(&wire.MetricsReport{School: "sentinel"})
	if err := sc.Publish(wire.SubjectMetrics, sentinel); err != nil {
		t.Fatal(err)
	}
	sc.Flush()
	select {
	case m := <-seen:
		if m.Subject != wire.SubjectMetrics {
			t.Fatalf("a school published on %s", m.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the metrics sentinel never arrived")
	}
	eavesdrop, err := sc.SubscribeSync(wire.SubjectPoll)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.SubscribeSync("_INBOX.>"); err != nil {
		t.Fatal(err)
	}
	wiretest.WaitFor(t, 5*time.Second, "the permission violations in the server log", func() error {
		for _, want := range []string{`Publish to "koipond.control"`, `Subscription to "koipond.poll"`, `Subscription to "_INBOX.>"`} {
			if err := errs.has(want); err != nil {
				return err
			}
		}
		return nil
	})
	// Polls still work, and are answered by the keeper alone, signed.
	rep := newFakeSchool(t, k, "a", 10).poll()
	if rep == nil || rep.Error != "" || rep.KeeperKey != k.KeeperKey() {
		t.Fatalf("poll with school credentials: %+v", rep)
	}
	kp, _ := nkeys.FromPublicKey(rep.KeeperKey)
	if err := kp.Verify(rep.Switch.SigningBytes(), rep.Switch.Sig); err != nil {
		t.Errorf("poll reply's switch signature: %v", err)
	}
	if n, _, _ := eavesdrop.Pending(); n != 0 {
		t.Errorf("a school overheard %d polls", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	js, _ := jetstream.New(sc)
	if _, err := js.KeyValue(ctx, DefaultBucket); err == nil {
		t.Error("a school opened the state bucket")
	}
	if k.store.Epoch() != 0 || k.State().Switch(nil).State == wire.Stopped {
		t.Errorf("the keeper took a school's switch: %+v", k.State().Switch(nil))
	}
}

// The keeper adopts a switch published around it only with its own
// signature and a sane epoch; an unsigned or wrongly signed one is counted,
// and its actor never reaches the audit log.
func TestKeeperAdoptsOnlyItsOwnSignedSwitch(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	nc := keeperConn(t, k) // even the keeper's NATS credentials do not forge
	defer nc.Close()
	other, _ := nkeys.CreateUser()
	sign := func(kp nkeys.KeyPair, c wire.Control) wire.Control {
		c.Sig, _ = kp.Sign(c.SigningBytes())
		return c
	}
	now := time.Now()
	for _, tc := range []struct {
		c     wire.Control
		cause string
	}{
		// The attack: a stop with the largest epoch, unsigned.
		{wire.Control{Epoch: math.MaxUint64, State: wire.Stopped, By: "mallory", At: now}, "control: out of bounds"},
		{wire.Control{Epoch: 5, State: wire.Stopped, By: "mallory", At: now}, "control: unsigned"},
		{sign(other, wire.Control{Epoch: 6, State: wire.Stopped, By: "mallory", At: now}), "control: bad signature"},
		// Signed, then altered: the signature covers the actor.
		{func() wire.Control {
			c := sign(k.creds.control, wire.Control{Epoch: 7, State: wire.Stopped, By: "op", At: now})
			c.By = "mallory"
			return c
		}(), "control: bad signature"},
		// The keeper's own key, yet an absurd jump.
		{sign(k.creds.control, wire.Control{Epoch: wire.MaxEpoch, State: wire.Stopped, By: "mallory", At: now}), "control: epoch jump"},
	} {
		data, _ := wire.Encode(&tc.c)
		if err := nc.Publish(wire.SubjectControl, data); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		wiretest.WaitFor(t, 5*time.Second, "a rejection", func() error {
			if k.Rejections()[tc.cause] == 0 {
				return errors.New("no rejection " + tc.cause)
			}
			return nil
		})
	}
	if g := k.State().Switch(nil); g.State == wire.Stopped || k.store.Epoch() != 0 {
		t.Fatalf("a forged switch was adopted: %+v, epoch %d", g, k.store.Epoch())
	}
	for _, a := range k.State().Audit(nil, 0, 100) {
		if a.Actor == "mallory" {
			t.Errorf("a forged actor in the audit log: %+v", a)
		}
	}
	// The keeper's own switches carry on from its own epoch.
	g, err := k.SetSwitch(context.Background(), "op", wire.Stopped)
	if err != nil || g.Epoch != 1 {
		t.Fatalf("stop after the forgeries: %+v %v", g, err)
	}
}

// Credentials are made once and reused: a restart keeps every key, the
// files are private, and a damaged file stops the keeper instead of being
// replaced.
func TestNATSCredentialsSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	key, schoolFile := k.KeeperKey(), k.SchoolNKeyFile()
	before := map[string][]byte{}
	for _, name := range []string{keeperSeedFile, schoolSeedFile, controlSeedFile} {
		p := filepath.Join(dir, natsCredsDir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
		before[name], _ = os.ReadFile(p)
	}
	if fi, _ := os.Stat(filepath.Join(dir, natsCredsDir)); fi.Mode().Perm() != 0o700 {
		t.Errorf("credentials folder: mode %v, want 0700", fi.Mode().Perm())
	}
	if b := before[schoolSeedFile]; !strings.Contains(string(b), wire.KeeperKeyLine+key+"\n") {
		t.Errorf("school.nk does not carry the keeper key:\n%s", b)
	}
	k.Close()

	k2 := openKeeper(t, dir)
	if k2.KeeperKey() != key || k2.SchoolNKeyFile() != schoolFile {
		t.Errorf("after a restart: key %s file %s, want %s %s", k2.KeeperKey(), k2.SchoolNKeyFile(), key, schoolFile)
	}
	for name, b := range before {
		if now, _ := os.ReadFile(filepath.Join(dir, natsCredsDir, name)); string(now) != string(b) {
			t.Errorf("%s changed across a restart", name)
		}
	}
	// A school started with the file before the restart still connects.
	schoolConn(t, k2).Close()
	k2.Close()

	damaged := filepath.Join(dir, natsCredsDir, controlSeedFile)
	if err := os.WriteFile(damaged, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), controlSeedFile) {
		t.Errorf("a damaged key file: %v, want an error naming it", err)
	}
	if b, _ := os.ReadFile(damaged); string(b) != "not a seed\n" {
		t.Error("the damaged key file was replaced")
	}
}

// Opting out is explicit, and refused where it would expose the switch.
func TestNATSInsecureOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{NATSListen: "0.0.0.0:4222", NATSAuth: NATSAuth{Insecure: true}}, "beyond loopback"},
		{Config{NATS: "nats://127.0.0.1:4222", NATSAuth: NATSAuth{Insecure: true}}, "only for the embedded server"},
		{Config{NATSToken: "t"}, "only for an external NATS"},
		{Config{NATS: "nats://x:4222", NATSAuth: NATSAuth{User: "k"}}, "give both or neither"},
	} {
		errs := tc.cfg.Validate()
		if !strings.Contains(errors.Join(errs...).Error()+" ", tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, errs, tc.want)
		}
	}
	if errs := (Config{NATSListen: "0.0.0.0:4222"}).Validate(); len(errs) != 0 {
		t.Errorf("authenticated NATS beyond loopback: %v", errs)
	}
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.NATSAuth.Insecure = true })
	nc, err := nats.Connect(k.NATSURL())
	if err != nil {
		t.Fatalf("insecure NATS refuses a client: %v", err)
	}
	nc.Close()
	if k.SchoolNKeyFile() != "" || k.KeeperKey() == "" {
		t.Errorf("insecure: school file %q, keeper key %q", k.SchoolNKeyFile(), k.KeeperKey())
	}
}

// Forged switches on the control subject, with NATS authentication off
// so the attacker can publish at all: forged switches (the largest epoch,
// unsigned; another key; the keeper's key on a tampered message) are
// ignored by the keeper and by a real school, whose koi keep loading
// pond; a real stop afterwards still takes pond to zero requests.
func TestForgedSwitchesIgnoredAndTheRealStopStops(t *testing.T) {
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.NATSAuth.Insecure = true })
	p := openPond(t, nil)
	const koi = 10
	pondRun(t, k, p, "forged", koi, 0)
	s := openSchool(t, k, k.NATSURL(), "s1", 100)
	wiretest.WaitFor(t, 15*time.Second, "the school to open every websocket", func() error {
		if st := s.Status(); st.WebsocketsOpen != koi {
			return fmt.Errorf("school holds %d websockets, want %d", st.WebsocketsOpen, koi)
		}
		return nil
	})
	attacker, err := nats.Connect(k.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	other, _ := nkeys.CreateUser()
	tampered := wire.Control{Epoch: 3, State: wire.Running, By: "op", At: time.Now()}
	k.signControl(&tampered)
	tampered.State, tampered.By = wire.Stopped, "mallory"
	forged := []wire.Control{
		{Epoch: math.MaxUint64, State: wire.Stopped, By: "mallory", At: time.Now()},
		{Epoch: wire.MaxEpoch, State: wire.Paused, By: "mallory", At: time.Now()},
		{Epoch: 1 << 40, State: wire.Stopped, Run: "", By: "mallory", At: time.Now()},
		tampered,
	}
	forged[2].Sig, _ = other.Sign(forged[2].SigningBytes())
	bad0, e0 := s.Status().BadMessages, k.store.Epoch()
	for _, c := range forged {
		data, _ := wire.Encode(&c)
		if err := attacker.Publish(wire.SubjectControl, data); err != nil {
			t.Fatal(err)
		}
	}
	attacker.Flush()
	wiretest.WaitFor(t, 5*time.Second, "the school to count the forged messages", func() error {
		if n := s.Status().BadMessages - bad0; n < len(forged) {
			return fmt.Errorf("school counted %d bad messages, want %d", n, len(forged))
		}
		r := k.Rejections()
		if r["control: out of bounds"] == 0 || r["control: unsigned"] == 0 || r["control: bad signature"] < 2 {
			return fmt.Errorf("keeper rejections %v", r)
		}
		return nil
	})
	if st := s.Status(); st.Switch != wire.Running || st.Epoch != 0 || st.WebsocketsOpen != koi {
		t.Fatalf("the school followed a forged switch: %+v", st)
	}
	if g := k.State().Switch(nil); g.State == wire.Stopped || g.State == wire.Paused || k.store.Epoch() != e0 {
		t.Fatalf("the keeper followed a forged switch: %+v, epoch %d (was %d)", g, k.store.Epoch(), e0)
	}
	for _, a := range k.State().Audit(nil, 0, 100) {
		if a.Actor == "mallory" {
			t.Errorf("a forged actor in the audit log: %+v", a)
		}
	}
	if r0 := p.Stats().RequestsTotal; r0 == 0 {
		t.Fatal("pond saw no request before the stop")
	}

	g, err := k.SetSwitch(context.Background(), "op", wire.Stopped)
	if err != nil || g.Epoch != e0+1 {
		t.Fatalf("the real stop: %+v %v, want epoch %d", g, err, e0+1)
	}
	wiretest.WaitFor(t, 5*time.Second, "the school to stop", func() error {
		if st := s.Status(); st.Switch != wire.Stopped || st.KoiRunning != 0 || st.WebsocketsOpen != 0 {
			return fmt.Errorf("school after the stop: %+v", st)
		}
		if ps := p.Stats(); ps.WebsocketsOpen != 0 {
			return fmt.Errorf("pond holds %d websockets", ps.WebsocketsOpen)
		}
		return nil
	})
	// Zero requests from then on: over a window longer than a behavior
	// interval at this time scale (a koi calls about once a second here).
	r1 := p.Stats().RequestsTotal
	time.Sleep(1500 * time.Millisecond)
	if r2 := p.Stats().RequestsTotal; r2 != r1 {
		t.Errorf("pond received %d requests after the stop", r2-r1)
	}
}

// BenchmarkSignPollReply: what signing costs the keeper per poll reply
// (the global switch and five runs' switches).
//
//	go test ./keeper -run '^$' -bench SignPollReply
func BenchmarkSignPollReply(b *testing.B) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	k := &Keeper{creds: &natsCreds{control: kp, controlPub: pub}}
	rep := &wire.PollReply{Switch: wire.Control{Epoch: 42, State: wire.Running, At: time.Now()}}
	for i := range 5 {
		rep.Assignments = append(rep.Assignments, wire.Assignment{Run: fmt.Sprintf("run-%012d", i),
			Switch: wire.Control{Epoch: uint64(40 + i), State: wire.Running, Run: fmt.Sprintf("run-%012d", i), At: time.Now()}})
	}
	for b.Loop() {
		k.signReply(rep)
	}
}
