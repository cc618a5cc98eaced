package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// natsCreds are the cluster's users, made by the harness the way an
// operator makes them for an external NATS: one nkey for the keeper (every
// permission) and one for the schools, with keeper.SchoolPermissions — the
// same permissions the keeper's embedded server gives them.
type natsCreds struct {
	keeperSeed, schoolSeed string // seed file paths
	keeperPub, schoolPub   string
}

func newNATSCreds(dir string) (*natsCreds, error) {
	c := &natsCreds{keeperSeed: filepath.Join(dir, "keeper.nk"), schoolSeed: filepath.Join(dir, "school.nk")}
	for _, f := range []struct {
		path string
		pub  *string
	}{{c.keeperSeed, &c.keeperPub}, {c.schoolSeed, &c.schoolPub}} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, err
		}
		seed, _ := kp.Seed()
		*f.pub, _ = kp.PublicKey()
		if err := os.WriteFile(f.path, append(seed, '\n'), 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// authConf is the nats-server authorization block.
func (c *natsCreds) authConf() string {
	p := keeper.SchoolPermissions()
	list := func(subjects []string) string {
		q := make([]string, len(subjects))
		for i, s := range subjects {
			q[i] = strconv.Quote(s) // not JSON: it would escape '>' as \u003e, which nats.conf rejects
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprintf(`authorization {
  users: [
    # the keeper: every permission (JetStream, the control subject)
    {nkey: %q}
    # schools: poll, blob and metrics requests; the switch and their replies
    {nkey: %q, permissions: {publish: {allow: %s}, subscribe: {allow: %s}}}
  ]
}
`, c.keeperPub, c.schoolPub, list(p.Publish.Allow), list(p.Subscribe.Allow))
}

// keeperDataDir is the keeper's --data directory (its switch key).
func (h *harness) keeperDataDir() string { return filepath.Join(h.dir, "keeper-data") }

// keeperKey reads the public switch key the keeper made in its data
// directory at first start.
func (h *harness) keeperKey() (string, error) {
	b, err := os.ReadFile(keeper.CredentialPaths(h.keeperDataDir()).Control)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// clusterURLs lists every node's client URL.
func (h *harness) clusterURLs() string {
	var urls []string
	for _, n := range h.natsNodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
	}
	return strings.Join(urls, ",")
}

// stepNoCredentials: every node, and the proxy, refuse a client without
// credentials or with a key of its own: it can neither publish nor
// subscribe on any koipond subject.
func (h *harness) stepNoCredentials(ctx context.Context) (string, error) {
	stranger, _ := nkeys.CreateUser()
	seed, _ := stranger.Seed()
	strangerFile := filepath.Join(h.dir, "stranger.nk")
	if err := os.WriteFile(strangerFile, seed, 0o600); err != nil {
		return "", err
	}
	strangerOpt, err := nats.NkeyOptionFromSeed(strangerFile)
	if err != nil {
		return "", err
	}
	urls := []string{h.proxy.url()}
	for _, n := range h.natsNodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
	}
	var errs []error
	refused := 0
	for _, u := range urls {
		for name, opts := range map[string][]nats.Option{"no credentials": nil, "an unknown nkey": {strangerOpt},
			"a token": {nats.Token("guess")}} {
			nc, err := nats.Connect(u, append(opts, nats.Timeout(5*time.Second))...)
			switch {
			case err == nil:
				nc.Close()
				errs = append(errs, fmt.Errorf("%s with %s: connected", u, name))
			case !errors.Is(err, nats.ErrAuthorization):
				errs = append(errs, fmt.Errorf("%s with %s: %v, want an authorization violation", u, name, err))
			default:
				refused++
			}
		}
	}
	return fmt.Sprintf("%d of %d connections (3 nodes + proxy × no credentials, unknown nkey, token) refused: authorization violation",
		refused, 3*len(urls)), errors.Join(errs...)
}

// stepSchoolCannotPublishControl: a school's credentials publish a forged
// switch (epoch 2^64−1, "running", actor mallory) and try to listen to
// polls and to every inbox: the cluster refuses each (permission
// violations), the keeper's connection never sees the switch, and the
// keeper's switch and every school's stay as they were.
func (h *harness) stepSchoolCannotPublishControl(ctx context.Context) (string, error) {
	var before struct {
		State string
		Epoch uint64
	}
	if err := h.api(ctx, "GET", "/control", nil, &before); err != nil {
		return "", err
	}
	keeperOpt, err := nats.NkeyOptionFromSeed(h.creds.keeperSeed)
	if err != nil {
		return "", err
	}
	observer, err := nats.Connect(h.clusterURLs(), keeperOpt)
	if err != nil {
		return "", fmt.Errorf("observer with the keeper's nkey: %w", err)
	}
	defer observer.Close()
	seen := make(chan *nats.Msg, 64)
	for _, subj := range []string{wire.SubjectControl, wire.SubjectMetrics} {
		if _, err := observer.ChanSubscribe(subj, seen); err != nil {
			return "", err
		}
	}
	if err := observer.Flush(); err != nil {
		return "", err
	}
	schoolOpt, err := nats.NkeyOptionFromSeed(h.creds.schoolSeed)
	if err != nil {
		return "", err
	}
	var mu sync.Mutex
	var violations []string
	rogue, err := nats.Connect(h.clusterURLs(), schoolOpt, nats.CustomInboxPrefix(wire.SchoolInboxPrefix),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err.Error())
			mu.Unlock()
		}))
	if err != nil {
		return "", fmt.Errorf("a client with the school nkey: %w", err)
	}
	defer rogue.Close()
	forged, _ := wire.Encode(&wire.Control{Epoch: math.MaxUint64, State: wire.Running, By: "mallory", At: time.Now()})
	if err := rogue.Publish(wire.SubjectControl, forged); err != nil {
		return "", err
	}
	// A metrics report right after: one client's messages keep their
	// order, so once the observer has it the forged switch would have come.
	sentinel, _ := wire.Encode(&wire.MetricsReport{School: "faulttest-sentinel"})
	if err := rogue.Publish(wire.SubjectMetrics, sentinel); err != nil {
		return "", err
	}
	for _, subj := range []string{wire.SubjectPoll, "_INBOX.>", "$JS.API.>"} {
		if _, err := rogue.SubscribeSync(subj); err != nil {
			return "", err
		}
	}
	if err := rogue.Flush(); err != nil {
		return "", err
	}
	var errs []error
	timeout := time.After(10 * time.Second)
wait:
	for {
		select {
		case m := <-seen:
			if m.Subject == wire.SubjectControl {
				errs = append(errs, fmt.Errorf("the keeper's connection received a school's switch: %.200s", m.Data))
			} else if strings.Contains(string(m.Data), "faulttest-sentinel") {
				break wait
			}
		case <-timeout:
			errs = append(errs, errors.New("the school's metrics sentinel never reached the keeper's connection"))
			break wait
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	want := []string{`Publish to "koipond.control"`, `Subscription to "koipond.poll"`, `Subscription to "_INBOX.>"`, `Subscription to "$JS.API.>"`}
	if err := h.waitFor(ctx, "permission violations for the school's credentials", 10*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		all := strings.Join(violations, "; ")
		for _, w := range want {
			if !strings.Contains(all, w) {
				return false, "have: " + all
			}
		}
		return true, ""
	}); err != nil {
		errs = append(errs, err)
	}
	// Give the switch time to have spread, had it been let through.
	time.Sleep(2 * h.o.poll)
	var after struct {
		State string
		Epoch uint64
	}
	if err := h.api(ctx, "GET", "/control", nil, &after); err != nil {
		return "", err
	}
	if after != before {
		errs = append(errs, fmt.Errorf("the keeper's switch moved from %+v to %+v", before, after))
	}
	schoolsOK := 0
	for _, s := range h.schools {
		var st struct {
			Switch string `json:"switch"`
			Epoch  uint64 `json:"epoch"`
		}
		if _, err := getJSON(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", s.http), &st); err != nil {
			continue // a school the earlier steps killed or cut off
		}
		if st.Epoch > wire.MaxEpoch || (st.Switch != "" && st.Switch != before.State) {
			errs = append(errs, fmt.Errorf("%s took the forged switch: %s epoch %d", s.id, st.Switch, st.Epoch))
		} else {
			schoolsOK++
		}
	}
	return fmt.Sprintf("refused: %s; keeper's switch still %s (epoch %d); %d schools unmoved", strings.Join(want, ", "),
		after.State, after.Epoch, schoolsOK), errors.Join(errs...)
}
