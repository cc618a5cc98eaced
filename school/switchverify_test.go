package school_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nkeys"
)

// A switch on the control subject applies only with the keeper's
// signature: unsigned (the attack's largest epoch included), another
// key's, or the keeper's on a tampered message are counted and ignored;
// the keeper's own then applies as usual.
func TestSwitchNeedsTheKeepersSignature(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	s := openSchool(t, url, school.Config{ID: "s1"})
	wiretest.Until(t, 5*time.Second, "first poll answered", func() bool { return !s.Status().LastPoll.IsZero() && s.Status().Switch == wire.Running })
	other, _ := nkeys.CreateUser()
	wrongKey := wire.Control{Epoch: 1 << 40, State: wire.Stopped, By: "mallory", At: time.Now()}
	wrongKey.Sig, _ = other.Sign(wrongKey.SigningBytes())
	tampered := wire.Control{Epoch: 5, State: wire.Running, At: time.Now()}
	k.sign(&tampered)
	tampered.State = wire.Stopped
	forged := []wire.Control{
		{Epoch: 1<<64 - 1, State: wire.Stopped, By: "mallory", At: time.Now()},
		{Epoch: 7, State: wire.Stopped, By: "mallory", At: time.Now()},
		wrongKey,
		tampered,
		{Epoch: 8, State: wire.Stopped, Run: "r1", By: "mallory", At: time.Now()}, // a run's switch too
	}
	bad0 := s.Status().BadMessages
	for _, c := range forged {
		b, _ := wire.Encode(&c)
		if err := k.nc.Publish(wire.SubjectControl, b); err != nil {
			t.Fatal(err)
		}
	}
	k.nc.Flush()
	wiretest.Until(t, 5*time.Second, "forged switches counted", func() bool { return s.Status().BadMessages-bad0 >= len(forged) })
	if st := s.Status(); st.Switch != wire.Running || st.Epoch != 1 {
		t.Fatalf("a forged switch applied: %s epoch %d", st.Switch, st.Epoch)
	}
	k.publish(wire.Control{Epoch: 2, State: wire.Stopped, By: "op", At: time.Now()})
	wiretest.Until(t, 5*time.Second, "the keeper's stop applied", func() bool { st := s.Status(); return st.Switch == wire.Stopped && st.Epoch == 2 })
}

// A school given the keeper's key (here through the key line of its nkey
// seed file, as the keeper writes school.nk) refuses poll replies signed
// with another: it never takes their switch nor their assignments, and
// pauses itself when the lease runs out, as if the keeper were silent.
func TestPinnedKeeperKeyRefusesOtherKeepers(t *testing.T) {
	// The impostor connects with the keeper role's user but signs with a
	// key of its own; the school's seed file pins the real control key.
	roles := wiretest.NewRoles(t)
	url := wiretest.StartNATS(t, wiretest.NATSConfig{Users: roles.Users(nil)}).URL
	impostor := newFakeKeeper(t, url, wiretest.NKeyOption(t, roles.KeeperSeedFile))
	impostor.set(func(k *fakeKeeper) {
		k.leaseMS = 500
		k.sw = wire.Control{Epoch: 9, State: wire.Paused, At: time.Now()}
	})
	s := openSchool(t, url, school.Config{ID: "s1", NATSNKeySeedFile: roles.SchoolSeedFile, Lease: 500 * time.Millisecond, PollInterval: 100 * time.Millisecond})
	wiretest.Until(t, 5*time.Second, "polls refused", func() bool { return s.Status().BadMessages >= 2 })
	wiretest.Until(t, 5*time.Second, "self-paused without an answer it trusts", func() bool { return s.Status().SelfPaused })
	if _, ok := impostor.lastPoll("s1"); !ok {
		t.Error("the impostor never heard a poll: the test proves nothing")
	}
	if st := s.Status(); st.Epoch != 0 || st.Switch == wire.Paused && !st.SelfPaused {
		t.Errorf("the school took an impostor's reply: %+v", st)
	}
	// Pinned to the impostor's key instead (--keeper-key), it follows it.
	impPub, _ := impostor.key.PublicKey()
	s2 := openSchool(t, url, school.Config{ID: "s2", NATSNKeySeedFile: wiretest.SeedFile(t, roles.School, ""), KeeperKey: impPub})
	wiretest.Until(t, 5*time.Second, "the pinned keeper's switch", func() bool { return s2.Status().Epoch == 9 })
}

// A bad --keeper-key or a seed file whose key line is broken stop the
// school at start, naming the problem.
func TestKeeperKeyConfigErrors(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	cfg := school.Config{KeeperKey: "not-a-key"}
	if errs := cfg.Validate(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "keeper key") {
		t.Errorf("bad keeper key: %v", errs)
	}
	file := filepath.Join(t.TempDir(), "school.nk")
	seedKP, _ := nkeys.CreateUser()
	seed, _ := seedKP.Seed()
	os.WriteFile(file, []byte(wire.KeeperKeyLine+"UBROKEN\n"+string(seed)+"\n"), 0o600)
	if _, err := school.Open(t.Context(), school.Config{NATSURL: url, NATSNKeySeedFile: file}); err == nil || !strings.Contains(err.Error(), "keeper key line") {
		t.Errorf("broken key line: %v", err)
	}
}

// BenchmarkSwitchVerifyCost: what checking one switch signature costs a
// school (once per control message, 1 + runs per poll reply).
//
//	go test ./school -run '^$' -bench SwitchVerifyCost
func BenchmarkSwitchVerifyCost(b *testing.B) {
	kp := wiretest.NewKey(b)
	pub, _ := kp.PublicKey()
	vk, _ := nkeys.FromPublicKey(pub)
	c := wire.Control{Epoch: 42, State: wire.Stopped, By: "op", At: time.Now()}
	c.Sig, _ = kp.Sign(c.SigningBytes())
	for b.Loop() {
		if err := vk.Verify(c.SigningBytes(), c.Sig); err != nil {
			b.Fatal(err)
		}
	}
}
