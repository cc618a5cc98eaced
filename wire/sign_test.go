package wire

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// A signature made before encoding checks after decoding (times in any
// zone, monotonic readings dropped), and any change to a signed field
// breaks it: the signing bytes of two different switches differ.
func TestSigningBytesSurviveTheWireAndCoverEveryField(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 9, 30, 0, 123456789, time.FixedZone("CET", 3600))
	c := Control{Epoch: 42, State: Stopped, Run: "run-1", By: "alice", At: at}
	c.Sig = ed25519.Sign(priv, c.SigningBytes())
	data, err := Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	var got Control
	if err := Decode(data, &got); err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, got.SigningBytes(), got.Sig) {
		t.Fatal("the signature does not survive the JSON round trip")
	}
	for name, mut := range map[string]func(*Control){
		"epoch":        func(c *Control) { c.Epoch++ },
		"state":        func(c *Control) { c.State = Running },
		"run → global": func(c *Control) { c.Run = "" },
		"actor":        func(c *Control) { c.By = "mallory" },
		"time":         func(c *Control) { c.At = c.At.Add(time.Nanosecond) },
		// Moving bytes between fields keeps their concatenation: the
		// length prefixes tell them apart.
		"run/actor boundary": func(c *Control) { c.Run, c.By = "run-1a", "lice" },
	} {
		m := got
		mut(&m)
		if bytes.Equal(m.SigningBytes(), got.SigningBytes()) || ed25519.Verify(pub, m.SigningBytes(), m.Sig) {
			t.Errorf("%s: the signature still checks after the change", name)
		}
	}
}

// Validate bounds what a switch may carry before anything acts on it:
// the epoch and the signature here, the other fields in limits.go.
func TestControlEpochAndSignatureBounds(t *testing.T) {
	ok := Control{Epoch: MaxEpoch, State: Paused, By: strings.Repeat("b", MaxText), Sig: make([]byte, SignatureSize)}
	if err := ok.Validate(); err != nil {
		t.Errorf("a switch at every bound: %v", err)
	}
	for name, c := range map[string]Control{
		// The attack: the largest uint64 as epoch.
		"epoch 2^64-1":   {Epoch: math.MaxUint64, State: Stopped},
		"epoch above":    {Epoch: MaxEpoch + 1, State: Stopped},
		"short sig":      {State: Stopped, Sig: []byte{1}},
		"oversized sig":  {State: Stopped, Sig: make([]byte, 2*SignatureSize)},
		"empty sig json": {State: Stopped, Sig: []byte{}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// Inside a poll reply too, and the key named there.
	for name, rep := range map[string]PollReply{
		"reply switch epoch": {Switch: Control{Epoch: math.MaxUint64}},
		"assignment switch":  {Assignments: []Assignment{{Run: "r", Switch: Control{Sig: []byte{1}}}}},
		"keeper key":         {KeeperKey: strings.Repeat("U", MaxKeeperKey+1)},
	} {
		if err := rep.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// Epochs saturate; the clock epoch is above any counted one and far below
// the ceiling.
func TestEpochArithmetic(t *testing.T) {
	for _, tc := range []struct{ in, want uint64 }{{0, 1}, {41, 42}, {MaxEpoch - 1, MaxEpoch}, {MaxEpoch, MaxEpoch}, {math.MaxUint64, MaxEpoch}} {
		if got := NextEpoch(tc.in); got != tc.want {
			t.Errorf("NextEpoch(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	if e := EpochFromClock(now); e < 1e12 || e > MaxEpoch/1000 {
		t.Errorf("EpochFromClock = %d: want about 1.8e12, far below %d", e, uint64(MaxEpoch))
	}
	if e := EpochFromClock(time.Unix(-5, 0)); e != 1 {
		t.Errorf("EpochFromClock before 1970 = %d, want 1", e)
	}
}
