package wire

import (
	"encoding/binary"
	"errors"
	"time"
)

// Switch signatures and bounds.
//
// NATS permissions let only the keeper publish on SubjectControl, but a
// school must not stake the whole promise of the switch on a server's
// configuration: the keeper signs every Control it sends (on
// SubjectControl and inside poll replies) with its ed25519 key, and
// schools apply only switches whose signature checks against the
// keeper's public key. This package defines what is signed and the
// bounds; the keys themselves (nkeys) live in the keeper and the school,
// so wire keeps to the standard library.

// MaxEpoch is the highest switch epoch anyone uses: 2^53 − 1, the largest
// integer a JSON reader such as the UI's JavaScript keeps exactly. Epochs
// saturate there instead of wrapping to 0, and a Control above it fails
// Validate (limits.go), as does a signature of the wrong size.
const MaxEpoch = 1<<53 - 1

// MaxKeeperKey bounds PollReply.KeeperKey (a public nkey is 56
// characters).
const MaxKeeperKey = 64

// SignatureSize is the size of an ed25519 signature.
const SignatureSize = 64

// SchoolInboxPrefix is the inbox prefix schools use for request replies,
// so that NATS permissions can let a school subscribe to its replies and
// nothing else of the keeper's (the keeper's own inboxes carry JetStream
// state).
const SchoolInboxPrefix = "_INBOX.koipond-school"

// KeeperKeyLine starts the line of a school's nkey seed file that carries
// the keeper's public switch key ("# koipond-keeper-key: U…"). The keeper
// writes it into the school.nk it creates; nkey parsers skip it as a
// comment, and the school reads it to pin the key.
const KeeperKeyLine = "# koipond-keeper-key: "

// ErrUnsigned is returned for a Control without a signature.
var ErrUnsigned = errors.New("wire: switch is not signed")

// ErrBadSignature is returned for a Control whose signature does not check
// against the keeper's key.
var ErrBadSignature = errors.New("wire: switch signature does not match the keeper's key")

// EpochFromClock returns an epoch for a switch set without the keeper's
// counter (koipond stop --nats when the bucket is out of reach): the wall
// clock in milliseconds. It is above any epoch the keeper reaches by
// counting one per switch, and far below MaxEpoch (about 1.8e12 against
// 9e15), so counting goes on from it for ages without saturating.
func EpochFromClock(now time.Time) uint64 {
	ms := now.UnixMilli()
	if ms < 1 {
		return 1
	}
	return min(uint64(ms), MaxEpoch)
}

// NextEpoch returns the epoch after e, saturating at MaxEpoch.
func NextEpoch(e uint64) uint64 {
	if e >= MaxEpoch {
		return MaxEpoch
	}
	return e + 1
}

// SigningBytes returns what a Control's signature covers: every field but
// V and Sig, length-prefixed in a fixed order after a domain tag, so no two
// different switches (a run's and the global one, say) share them. The
// time is canonical (UTC, RFC 3339 with nanoseconds), so it survives the
// JSON round trip.
func (c *Control) SigningBytes() []byte {
	b := make([]byte, 0, 96+len(c.Run)+len(c.By))
	b = append(b, "koipond.control.v1"...)
	b = binary.BigEndian.AppendUint64(b, c.Epoch)
	for _, f := range []string{string(c.State), c.Run, c.By, c.At.UTC().Format(time.RFC3339Nano)} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}
