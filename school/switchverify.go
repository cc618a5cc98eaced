package school

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nkeys"
)

// A school applies a switch only if the keeper signed it (wire/sign.go).
//
// Where the keeper's public key comes from, in order:
//  1. Config.KeeperKey (koipond school --keeper-key, KOIPOND_KEEPER_KEY);
//  2. the "# koipond-keeper-key:" line of the nkey seed file the keeper
//     wrote for schools (Config.NATSNKeySeedFile);
//  3. else the KeeperKey of the latest poll reply.
//
// A key from 1 or 2 is pinned: a poll reply naming another key is
// refused like no reply at all (the lease then pauses the school: fail
// safe). Case 3 is sound because of the server's permissions
// (keeper.SchoolPermissions): only the keeper role may subscribe to the
// poll subject, so only the keeper receives a poll, and no other role may
// publish to a school's reply inbox, so a poll reply is the keeper's word.
// The control subject gets no such trust: a switch there must check
// against the key a poll reply (or the configuration) gave. Taking the
// latest reply's key rather than the first lets a keeper that lost its
// data directory (a new key) carry on without touching every school.
type switchVerifier struct {
	mu      sync.Mutex
	pinned  string        // from the configuration; never replaced
	current string        // the key switches are checked against
	kp      nkeys.KeyPair // current's, parsed once
}

// newSwitchVerifier reads the pinned key, if any, from the configuration.
func newSwitchVerifier(c *Config) (*switchVerifier, error) {
	v := &switchVerifier{}
	key := c.KeeperKey
	if key == "" && c.NATSNKeySeedFile != "" {
		k, err := keeperKeyFromSeedFile(c.NATSNKeySeedFile)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if key != "" {
		if err := v.use(key); err != nil {
			return nil, err
		}
		v.pinned = key
	}
	return v, nil
}

// keeperKeyFromSeedFile returns the keeper key line's key of a seed file,
// or "" when it has none (a seed made by someone else).
func keeperKeyFromSeedFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading NATS nkey seed %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if key, ok := bytes.CutPrefix(line, []byte(wire.KeeperKeyLine)); ok {
			k := strings.TrimSpace(string(key))
			if !nkeys.IsValidPublicUserKey(k) {
				return "", fmt.Errorf("NATS nkey seed %s: the keeper key line holds no valid public key", path)
			}
			return k, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading NATS nkey seed %s: %w", path, err)
	}
	return "", nil
}

// use makes key the one switches are checked against.
func (v *switchVerifier) use(key string) error {
	kp, err := parseKeeperKey(key)
	if err != nil {
		return err
	}
	v.current, v.kp = key, kp
	return nil
}

func parseKeeperKey(key string) (nkeys.KeyPair, error) {
	if !nkeys.IsValidPublicUserKey(key) {
		return nil, fmt.Errorf("keeper key %.60q is not a public user nkey (U…)", key)
	}
	kp, err := nkeys.FromPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("keeper key %.60q: %w", key, err)
	}
	return kp, nil
}

// errNoKeeperKey is returned for a switch on the control subject before
// any key is known (no poll has been answered yet; the next one carries
// the switch).
var errNoKeeperKey = errors.New("no keeper key known yet")

// control checks a switch pushed on the control subject.
func (v *switchVerifier) control(c *wire.Control) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.kp == nil {
		return errNoKeeperKey
	}
	return check(v.kp, c)
}

// reply checks a poll reply's key and every switch in it; on success, an
// unpinned verifier takes the reply's key.
func (v *switchVerifier) reply(rep *wire.PollReply) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	key, kp := v.current, v.kp
	switch {
	case v.pinned != "" && rep.KeeperKey != "" && rep.KeeperKey != v.pinned:
		return fmt.Errorf("poll reply signed with key %.60q, not the keeper's %s", rep.KeeperKey, v.pinned)
	case v.pinned == "" && rep.KeeperKey == "":
		return errors.New("poll reply names no keeper key")
	case v.pinned == "" && rep.KeeperKey != v.current:
		var err error
		if kp, err = parseKeeperKey(rep.KeeperKey); err != nil {
			return err
		}
		key = rep.KeeperKey
	}
	if err := check(kp, &rep.Switch); err != nil {
		return fmt.Errorf("global switch: %w", err)
	}
	for i := range rep.Assignments {
		if err := check(kp, &rep.Assignments[i].Switch); err != nil {
			return fmt.Errorf("run %.60q switch: %w", rep.Assignments[i].Run, err)
		}
	}
	v.current, v.kp = key, kp
	return nil
}

// check verifies a switch's bounds and its signature by kp.
func check(kp nkeys.KeyPair, c *wire.Control) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if len(c.Sig) == 0 {
		return wire.ErrUnsigned
	}
	if err := kp.Verify(c.SigningBytes(), c.Sig); err != nil {
		return wire.ErrBadSignature
	}
	return nil
}
