package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/koipond/koipond/keeper/api"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
)

// flagT is pflag.Flag, short for Visit callbacks.
type flagT = pflag.Flag

func runPause(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return globalSwitch(ctx, wire.Paused, args, stdout, stderr)
}

func runResume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return globalSwitch(ctx, wire.Running, args, stdout, stderr)
}

func runStop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return globalSwitch(ctx, wire.Stopped, args, stdout, stderr)
}

var switchVerb = map[wire.State]string{wire.Paused: "pause", wire.Running: "resume", wire.Stopped: "stop"}

func globalSwitch(ctx context.Context, st wire.State, args []string, stdout, stderr io.Writer) error {
	verb := switchVerb[st]
	desc := map[wire.State]string{
		wire.Paused:  "Pause every koi everywhere: websockets stay open, nothing is sent.",
		wire.Running: "Resume every koi everywhere.",
		wire.Stopped: `Stop every koi everywhere: sequences abort, websockets close. The keeper
tracks each school's confirmation. If the keeper is down, --nats URL writes
the switch to the keeper's JetStream bucket and publishes it to every
school directly, signed with the keeper's key and connecting with the
keeper's NATS credentials, both read from its --data directory (or
--nats-nkey/--nats-creds, KOIPOND_NATS_TOKEN for an external NATS).`,
	}[st]
	desc += `

With --wait the command blocks until every school confirmed (a stop: no koi
running and every websocket closed; a pause or resume: the school's next
poll carries the switch) or --timeout passed, then prints who confirmed and
when, in ms after the switch, and who is late. Exit 0 when every school
confirmed, 1 when one is late, 3 when the keeper cannot be reached.`
	fs := newFlagSet(ctx, verb, verb+" [--json] [--wait [--timeout 30s]] [--nats URL]", desc, stderr)
	cf := addClientFlags(fs)
	wait := fs.Bool("wait", false, "block until every school confirmed the switch, then print who confirmed and when")
	timeout := fs.Duration("timeout", 30*time.Second, "with --wait: how long schools have to confirm")
	natsURL := fs.String("nats", "", "bypass the keeper: publish straight to NATS at `URL`")
	bucket := fs.String("bucket", api.DefaultBucket, "with --nats: the keeper's KV `bucket`")
	var na natsAdmin
	fs.StringVar(&na.dataDir, "data", api.DefaultDataDir, "with --nats: the keeper's data `directory` (its NATS keys and switch key)")
	fs.StringVar(&na.nkey, "nats-nkey", "", "with --nats: NATS nkey seed `file` to connect with (default: the keeper's, in --data)")
	fs.StringVar(&na.creds, "nats-creds", "", "with --nats: NATS credentials `file` to connect with")
	fs.StringVar(&na.user, "nats-user", "", "with --nats: NATS `user` to connect as (password in KOIPOND_NATS_PASSWORD)")
	fs.StringVar(&na.controlKey, "keeper-key-seed", "", "with --nats: the keeper's switch key seed `file` (default: control.nk in --data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *natsURL != "" && *wait {
		fmt.Fprintf(stderr, "koipond %s: --wait needs the keeper, not --nats (koipond status shows the confirmations once it is back)\n", verb)
		return errUsage
	}
	if *natsURL != "" {
		return switchOverNATS(ctx, cf, st, *natsURL, *bucket, na, stdout)
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/control", map[string]any{"state": st}, &raw); err != nil {
		return err
	}
	if cf.json && !*wait {
		return writeJSON(stdout, raw)
	}
	var v api.SwitchView
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decoding the keeper's switch: %w", err)
	}
	if v.GlobalSwitch == nil {
		return fmt.Errorf("the keeper answered no switch: %s", clean(string(raw), 200))
	}
	if !cf.json {
		fmt.Fprintf(stdout, "%s: every koi is %s (epoch %d)\n", verb, v.State, v.Epoch)
	}
	if *wait {
		return waitSwitch(ctx, cf, v, *timeout, stdout)
	}
	switch {
	case v.Stop == nil:
	case v.Stop.Complete():
		fmt.Fprintln(stdout, "  no school had koi: the stop is complete")
	default:
		fmt.Fprintf(stdout, "  waiting for %s to confirm: koipond stop --wait or koipond status shows when the stop is complete\n", plural(len(v.Stop.Expected), "school", "schools"))
	}
	return nil
}

// natsAdmin is how koipond stop --nats acts for the keeper.
type natsAdmin struct {
	dataDir, nkey, creds, user, controlKey string
}

// options returns the NATS credentials: those given (a token from the
// environment, a user, a creds or nkey file), else the keeper's own seed
// from its data directory.
func (na natsAdmin) options() ([]nats.Option, error) {
	var opts []nats.Option
	if tok := os.Getenv("KOIPOND_NATS_TOKEN"); tok != "" {
		opts = append(opts, nats.Token(tok))
	}
	if na.user != "" {
		opts = append(opts, nats.UserInfo(na.user, os.Getenv("KOIPOND_NATS_PASSWORD")))
	}
	if na.creds != "" {
		opts = append(opts, nats.UserCredentials(na.creds))
	}
	seed := na.nkey
	if seed == "" && len(opts) == 0 {
		seed = api.CredentialPaths(na.dataDir).Keeper
	}
	if seed != "" {
		o, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("the NATS credentials to act for the keeper (--data or --nats-nkey): %w", err)
		}
		opts = append(opts, o)
	}
	return opts, nil
}

// switchOverNATS sets the switch without the keeper: through its KV bucket
// (so the epoch is the highest and a restarted keeper keeps it) and then
// on the control subject, signed with the keeper's key (schools and the
// keeper ignore an unsigned switch).
func switchOverNATS(ctx context.Context, cf *clientFlags, st wire.State, url, bucket string, na natsAdmin, stdout io.Writer) error {
	signer := na.controlKey
	if signer == "" {
		signer = api.CredentialPaths(na.dataDir).Control
	}
	if err := api.SignSwitch(signer, &wire.Control{State: st}); err != nil {
		return fmt.Errorf("%w (--data DIR of the keeper, or --keeper-key-seed FILE)", err)
	}
	auth, err := na.options()
	if err != nil {
		return err
	}
	opts := append([]nats.Option{nats.Name("koipond " + switchVerb[st])}, auth...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return natsConnectError(url, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	by := "cli:" + os.Getenv("USER")
	if len(by) > wire.MaxText {
		by = by[:wire.MaxText]
	}
	c := wire.Control{State: st, By: by, At: time.Now()}
	js, err := jetstream.New(nc)
	if err == nil {
		var epoch uint64
		var at time.Time
		if epoch, at, err = api.RecordEmergencySwitch(ctx, js, bucket, st, by); err == nil {
			c.Epoch, c.At = epoch, at
		}
	}
	if err != nil {
		// Without the bucket, an epoch from the clock is higher than any
		// counter the keeper gave out: schools apply it, and a running
		// keeper adopts it and counts on from there.
		c.Epoch = wire.EpochFromClock(time.Now())
		fmt.Fprintf(stdout, "warning: could not record the switch in the keeper's bucket (%v); publishing epoch %d\n", err, c.Epoch)
	}
	if err := api.SignSwitch(signer, &c); err != nil {
		return err
	}
	data, err := wire.Encode(&c)
	if err != nil {
		return err
	}
	if err := nc.Publish(wire.SubjectControl, data); err != nil {
		return fmt.Errorf("publishing the switch: %w", err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("publishing the switch: %w", err)
	}
	return cf.show(stdout, c, func() {
		fmt.Fprintf(stdout, "%s: published %s (epoch %d) on %s at %s\n", switchVerb[st], st, c.Epoch, wire.SubjectControl, url)
	})
}
