package keeper

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// The control plane is secured by NATS itself, and then some:
//
//   - Authentication is on by default, loopback included. At first start
//     the keeper creates, in DataDir/nats/, one nkey per role: keeper.nk
//     (the keeper's own connection, every permission), school.nk (what
//     schools connect with) and control.nk (the key the keeper signs the
//     switch with). Files are 0600 in a 0700 folder, and reused at every
//     start: a file that exists but cannot be read stops the keeper
//     instead of being replaced.
//   - The embedded server gives each role its permissions (SchoolPermissions):
//     a school publishes poll, blob and metrics requests and subscribes to
//     the control subject and its own replies; only the keeper publishes
//     control and reaches JetStream.
//   - Every switch the keeper sends is signed with control.nk, and schools
//     apply only switches that check against its public key (school.nk
//     carries it on a comment line, so one file is all a school needs).
//     The keeper adopts a switch published around it (koipond stop --nats)
//     only when it carries that signature, and never beyond
//     maxEpochJump: no epoch from the network is taken blindly.
//
// NATSAuth.Insecure turns authentication off (loopback only) and is logged
// loudly; switches are still signed.

// Credential files in DataDir/nats.
const (
	natsCredsDir    = "nats"
	keeperSeedFile  = "keeper.nk"
	schoolSeedFile  = "school.nk"
	controlSeedFile = "control.nk"
)

// maxEpochJump bounds how far a signed switch published around the keeper
// may lead: its epoch must not pass max(own epoch, the clock epoch a day
// ahead) + maxEpochJump. The emergency stop's epochs come from the bucket
// (one above the keeper's) or from the clock (wire.EpochFromClock), both
// well inside; a leaked key still cannot push epochs to the ceiling.
const maxEpochJump = 1 << 32

// NATSAuth configures how the keeper's NATS connection is secured.
type NATSAuth struct {
	// Insecure turns authentication off on the embedded server: any
	// process that reaches it can then pause, stop or watch everything.
	// It is refused beyond loopback and logged as a warning at start.
	Insecure bool
	// User and Password, NKeySeedFile or CredsFile are what the keeper
	// presents to an external NATS (--nats URL), besides NATSToken. The
	// embedded server uses the keys in DataDir/nats instead.
	User, Password, NKeySeedFile, CredsFile string
	// SwitchKeySeedFile is the nkey seed the keeper signs the switch with.
	// Default: DataDir/nats/control.nk, created at first start. Given, it
	// must exist (a Kubernetes Secret, say), so every keeper pod, and
	// koipond stop --nats, sign with the same key.
	SwitchKeySeedFile string
}

// validateNATSAuth returns the problems of the NATS authentication
// settings.
func (c Config) validateNATSAuth() []error {
	var errs []error
	a := c.NATSAuth
	external := a.User != "" || a.Password != "" || a.NKeySeedFile != "" || a.CredsFile != "" || c.NATSToken != ""
	if c.NATS == "" {
		if external {
			errs = append(errs, fmt.Errorf("nats credentials: the embedded server uses the nkeys in %s; a NATS token, user, nkey or creds file is only for an external NATS (--nats URL)",
				filepath.Join(c.DataDir, natsCredsDir)))
		}
		h, _, err := net.SplitHostPort(c.NATSListen)
		if err == nil && a.Insecure && !isLoopback(h) {
			errs = append(errs, fmt.Errorf("nats-insecure: %s is beyond loopback; authentication must stay on there", c.NATSListen))
		}
	} else if a.Insecure {
		errs = append(errs, errors.New("nats-insecure: only for the embedded server; an external NATS is secured by its own configuration"))
	}
	if (a.User == "") != (a.Password == "") {
		errs = append(errs, errors.New("nats user and password: give both or neither"))
	}
	return errs
}

// SchoolPermissions are what a school may do on NATS: publish (request)
// poll, blob and metrics; subscribe to the control subject and to replies
// under wire.SchoolInboxPrefix. Nothing else: not the control subject, not
// the poll subject (so no one but the keeper answers polls), not
// JetStream.
func SchoolPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{wire.SubjectPoll, wire.SubjectBlob, wire.SubjectMetrics}},
		Subscribe: &server.SubjectPermission{Allow: []string{wire.SubjectControl, wire.SchoolInboxPrefix + ".>"}},
	}
}

// natsCreds are the keeper's keys.
type natsCreds struct {
	dir        string
	control    nkeys.KeyPair // signs switches
	controlPub string
	// Embedded server only (empty in insecure mode or with an external
	// NATS).
	keeperPub, schoolPub string
	keeperFile           string
	schoolFile           string

	// sigs caches signatures by signed bytes: every poll reply carries the
	// same few switches, and ed25519 signatures are deterministic, so
	// each switch is signed once (about 80 µs) instead of per poll.
	sigMu sync.Mutex
	sigs  map[string][]byte
}

// maxSigCache bounds the signature cache (a switch is ~100 bytes).
const maxSigCache = 4096

// sign returns the signature of data, from the cache when it has it.
func (c *natsCreds) sign(data []byte) ([]byte, error) {
	c.sigMu.Lock()
	sig, ok := c.sigs[string(data)]
	c.sigMu.Unlock()
	if ok {
		return sig, nil
	}
	sig, err := c.control.Sign(data)
	if err != nil {
		return nil, err
	}
	c.sigMu.Lock()
	if len(c.sigs) >= maxSigCache || c.sigs == nil {
		c.sigs = make(map[string][]byte)
	}
	c.sigs[string(data)] = sig
	c.sigMu.Unlock()
	return sig, nil
}

// loadNATSCreds reads the keys in DataDir/nats, creating the missing ones.
func (k *Keeper) loadNATSCreds() error {
	dir := filepath.Join(k.cfg.DataDir, natsCredsDir)
	c := &natsCreds{dir: dir}
	var err error
	if f := k.cfg.NATSAuth.SwitchKeySeedFile; f != "" {
		if c.control, _, err = readSeedFile(k.log, f); err != nil {
			return fmt.Errorf("keeper: the switch key: %w", err)
		}
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("keeper: nats credentials: %w", err)
		}
		if c.control, err = k.loadOrCreateKey(filepath.Join(dir, controlSeedFile)); err != nil {
			return err
		}
	}
	c.controlPub, _ = c.control.PublicKey()
	if k.cfg.NATS == "" && !k.cfg.NATSAuth.Insecure {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("keeper: nats credentials: %w", err)
		}
		c.keeperFile = filepath.Join(dir, keeperSeedFile)
		kp, err := k.loadOrCreateKey(c.keeperFile)
		if err != nil {
			return err
		}
		c.keeperPub, _ = kp.PublicKey()
		kp.Wipe()
		c.schoolFile = filepath.Join(dir, schoolSeedFile)
		if c.schoolPub, err = k.loadOrCreateSchoolFile(c.schoolFile, c.controlPub); err != nil {
			return err
		}
	}
	k.creds = c
	return nil
}

// maxSeedFile bounds what is read of a seed file.
const maxSeedFile = 16 << 10

// readSeedFile reads an nkey user seed file written by the keeper (or
// nk), checking its size and warning when every user of the machine may
// read it (group read is how Kubernetes hands a pod its secrets).
func readSeedFile(log *slog.Logger, path string) (nkeys.KeyPair, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o007 != 0 {
		log.Warn("NATS credential file is readable by others; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSeedFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("keeper: reading %s: %w", path, err)
	}
	if len(data) > maxSeedFile {
		return nil, nil, fmt.Errorf("keeper: %s: larger than %d bytes, not a seed file", path, maxSeedFile)
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return nil, nil, fmt.Errorf("keeper: %s: not an nkey seed (%w); move it away to have a new one created", path, err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, nil, fmt.Errorf("keeper: %s: not a user nkey seed (SU…)", path)
	}
	return kp, data, nil
}

// loadOrCreateKey returns the key in path, creating it (0600) if the file
// does not exist. An existing file is never replaced.
func (k *Keeper) loadOrCreateKey(path string) (nkeys.KeyPair, error) {
	kp, _, err := readSeedFile(k.log, path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kp, err
	}
	if kp, err = nkeys.CreateUser(); err != nil {
		return nil, fmt.Errorf("keeper: creating an nkey: %w", err)
	}
	seed, _ := kp.Seed()
	if err := writeNew(path, append(seed, '\n')); err != nil {
		return nil, err
	}
	k.log.Info("created NATS key", "file", path)
	return kp, nil
}

// loadOrCreateSchoolFile returns the school's public key, creating
// school.nk if it does not exist. The file holds the school seed and, on
// a comment line, the keeper's switch key; a file whose comment names
// another key (control.nk was replaced) gets the line rewritten, the seed
// kept.
func (k *Keeper) loadOrCreateSchoolFile(path, controlPub string) (string, error) {
	kp, data, err := readSeedFile(k.log, path)
	var seed []byte
	switch {
	case err == nil:
		seed, _ = kp.Seed()
		if bytes.Contains(data, []byte(wire.KeeperKeyLine+controlPub+"\n")) {
			pub, _ := kp.PublicKey()
			return pub, nil
		}
	case errors.Is(err, fs.ErrNotExist):
		if kp, err = nkeys.CreateUser(); err != nil {
			return "", fmt.Errorf("keeper: creating an nkey: %w", err)
		}
		seed, _ = kp.Seed()
	default:
		return "", err
	}
	pub, _ := kp.PublicKey()
	content := fmt.Sprintf(`# koipond school credentials: the NATS nkey seed schools connect with, and
# the public key the keeper signs the switch with. Keep this file secret.
# Start a school with: koipond school --nats URL --nats-nkey THIS_FILE
# (or KOIPOND_NATS_NKEY=THIS_FILE).
%s%s
%s
`, wire.KeeperKeyLine, controlPub, seed)
	if data == nil {
		err = writeNew(path, []byte(content))
	} else {
		err = replaceFile(path, []byte(content))
	}
	if err != nil {
		return "", err
	}
	k.log.Info("wrote school NATS credentials", "file", path)
	return pub, nil
}

// writeNew creates path with mode 0600; it fails if path exists.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keeper: creating %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("keeper: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("keeper: writing %s: %w", path, err)
	}
	return nil
}

// replaceFile writes path (mode 0600) through a temporary file, so it is
// never half written.
func replaceFile(path string, data []byte) error {
	tmp := path + ".new"
	os.Remove(tmp)
	if err := writeNew(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keeper: replacing %s: %w", path, err)
	}
	return nil
}

// natsServerAuth sets the embedded server's users and their permissions.
func (k *Keeper) natsServerAuth(o *server.Options) {
	if k.cfg.NATSAuth.Insecure {
		k.log.Warn("NATS AUTHENTICATION IS OFF (--nats-insecure): any local process can pause, stop or watch every koi, and spoof the audit log's actor", "nats", k.cfg.NATSListen)
		return
	}
	o.Nkeys = []*server.NkeyUser{
		{Nkey: k.creds.keeperPub}, // every permission
		{Nkey: k.creds.schoolPub, Permissions: SchoolPermissions()},
	}
}

// natsClientAuth returns the options the keeper connects with.
func (k *Keeper) natsClientAuth() ([]nats.Option, error) {
	if k.cfg.NATS == "" {
		if k.cfg.NATSAuth.Insecure {
			return nil, nil
		}
		o, err := nats.NkeyOptionFromSeed(k.creds.keeperFile)
		if err != nil {
			return nil, fmt.Errorf("keeper: %s: %w", k.creds.keeperFile, err)
		}
		return []nats.Option{o}, nil
	}
	a := k.cfg.NATSAuth
	var opts []nats.Option
	if k.cfg.NATSToken != "" {
		opts = append(opts, nats.Token(k.cfg.NATSToken))
	}
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("keeper: nats nkey %s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, o)
	}
	if a.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	return opts, nil
}

// KeeperKey returns the public key (an nkey, "U…") the keeper signs the
// switch with: what a school given --keeper-key checks against.
func (k *Keeper) KeeperKey() string { return k.creds.controlPub }

// SchoolNKeyFile returns the seed file in-process and separate schools
// connect to the embedded server with (school.Config.NATSNKeySeedFile,
// koipond school --nats-nkey); empty with an external NATS or without
// authentication.
func (k *Keeper) SchoolNKeyFile() string { return k.creds.schoolFile }

// SchoolCommand returns the command line that starts a school against
// this keeper, for startup messages: URL, and the credentials file when
// the keeper made one (its absolute path, shell-quoted if needed).
func (k *Keeper) SchoolCommand() string {
	cmd := "koipond school --nats " + k.NATSURL()
	switch {
	case k.creds.schoolFile != "":
		p, err := filepath.Abs(k.creds.schoolFile)
		if err != nil {
			p = k.creds.schoolFile
		}
		cmd += " --nats-nkey " + shellQuote(p)
	case k.cfg.NATS != "":
		cmd += " --keeper-key " + k.creds.controlPub
	}
	return cmd
}

// SchoolHowTo says how to start a school against this keeper, for
// startup messages: SchoolCommand, then the same with the credentials
// file in the environment (KOIPOND_NATS_NKEY), or a warning when NATS
// authentication is off.
func (k *Keeper) SchoolHowTo() []string {
	lines := []string{"start a school with: " + k.SchoolCommand()}
	switch {
	case k.creds.schoolFile != "":
		p, err := filepath.Abs(k.creds.schoolFile)
		if err != nil {
			p = k.creds.schoolFile
		}
		lines = append(lines, fmt.Sprintf("  or: KOIPOND_NATS_NKEY=%s koipond school --nats %s", shellQuote(p), k.NATSURL()))
	case k.cfg.NATS == "":
		lines = append(lines, "NATS AUTHENTICATION IS OFF (--nats-insecure): any local process can stop or spoof the switch")
	default:
		lines = append(lines, "  with the school credentials of your NATS: --nats-user (password in KOIPOND_NATS_PASSWORD), --nats-nkey FILE or --nats-creds FILE")
	}
	return lines
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe
// characters.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// signControl signs a switch with the keeper's key.
func (k *Keeper) signControl(c *wire.Control) {
	c.Sig = nil
	sig, err := k.creds.sign(c.SigningBytes())
	if err != nil {
		k.log.Error("signing the switch", "err", err)
		return
	}
	c.Sig = sig
}

// signReply signs the switches of a poll reply and names the key.
func (k *Keeper) signReply(rep *wire.PollReply) {
	rep.KeeperKey = k.creds.controlPub
	k.signControl(&rep.Switch)
	for i := range rep.Assignments {
		k.signControl(&rep.Assignments[i].Switch)
	}
}

// checkControl decides whether a switch published around the keeper may
// be adopted: well formed, signed with the keeper's own key, and not
// absurdly far ahead. It returns the rejection cause.
func (k *Keeper) checkControl(c *wire.Control, now time.Time) (string, error) {
	if err := c.Validate(); err != nil {
		return "control: out of bounds", err
	}
	if len(c.Sig) == 0 {
		return "control: unsigned", wire.ErrUnsigned
	}
	if err := k.creds.control.Verify(c.SigningBytes(), c.Sig); err != nil {
		return "control: bad signature", wire.ErrBadSignature
	}
	if ceiling := max(wire.EpochFromClock(now.Add(24*time.Hour)), k.store.Epoch()) + maxEpochJump; c.Epoch > ceiling {
		return "control: epoch jump", fmt.Errorf("epoch %d is beyond %d (own epoch %d)", c.Epoch, ceiling, k.store.Epoch())
	}
	return "", nil
}

// CredentialFiles are the paths of the keys a keeper keeps in its data
// directory.
type CredentialFiles struct {
	// Keeper is the keeper's NATS nkey seed (every permission on the
	// embedded server: JetStream, control).
	Keeper string
	// School is what schools connect with (seed plus the keeper key line).
	School string
	// Control is the seed the switch is signed with.
	Control string
}

// CredentialPaths returns where a keeper with data directory dataDir
// keeps its keys (koipond stop --nats reads them to act for a keeper that
// is down).
func CredentialPaths(dataDir string) CredentialFiles {
	dir := filepath.Join(dataDir, natsCredsDir)
	return CredentialFiles{Keeper: filepath.Join(dir, keeperSeedFile), School: filepath.Join(dir, schoolSeedFile),
		Control: filepath.Join(dir, controlSeedFile)}
}

// SignSwitch signs c with the seed in controlSeedFile (the keeper's
// control.nk), as the keeper signs its own switches: for koipond stop
// --nats, so schools and the keeper accept a switch set around it.
func SignSwitch(controlSeedFile string, c *wire.Control) error {
	kp, _, err := readSeedFile(slog.New(slog.DiscardHandler), controlSeedFile)
	if err != nil {
		return fmt.Errorf("the keeper's switch key: %w", err)
	}
	defer kp.Wipe()
	if err := c.Validate(); err != nil {
		return err
	}
	c.Sig = nil
	if c.Sig, err = kp.Sign(c.SigningBytes()); err != nil {
		return fmt.Errorf("signing the switch: %w", err)
	}
	return nil
}
