package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// flagT is flag.Flag, short for Visit callbacks.
type flagT = flag.Flag

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
school directly.`,
	}[st]
	fs := newFlagSet(verb, verb+" [--json] [--nats URL]", desc, stderr)
	cf := addClientFlags(fs)
	natsURL := fs.String("nats", "", "bypass the keeper: publish straight to NATS at `URL` (token from KOIPOND_NATS_TOKEN)")
	bucket := fs.String("bucket", keeper.DefaultBucket, "with --nats: the keeper's KV `bucket`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needArgs(fs, 0, "no arguments", stderr); err != nil {
		return err
	}
	if *natsURL != "" {
		return switchOverNATS(ctx, cf, st, *natsURL, *bucket, stdout)
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/control", map[string]any{"state": st}, &raw); err != nil {
		return err
	}
	if cf.json {
		return writeJSON(stdout, raw)
	}
	var v struct {
		state.GlobalSwitch
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: every koi is %s (epoch %d)\n", verb, v.State, v.Epoch)
	switch {
	case v.Stop == nil:
	case v.Stop.Complete():
		fmt.Fprintln(stdout, "  no school had koi: the stop is complete")
	default:
		fmt.Fprintf(stdout, "  waiting for %d schools to confirm: koipond status shows when the stop is complete\n", len(v.Stop.Expected))
	}
	return nil
}

// switchOverNATS sets the switch without the keeper: through its KV bucket
// (so the epoch is the highest and a restarted keeper keeps it) and then
// on the control subject.
func switchOverNATS(ctx context.Context, cf *clientFlags, st wire.State, url, bucket string, stdout io.Writer) error {
	opts := []nats.Option{nats.Name("koipond " + switchVerb[st])}
	if tok := os.Getenv("KOIPOND_NATS_TOKEN"); tok != "" {
		opts = append(opts, nats.Token(tok))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connecting to NATS at %s: %w", url, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	by := "cli:" + os.Getenv("USER")
	c := wire.Control{State: st, By: by, At: time.Now()}
	js, err := jetstream.New(nc)
	if err == nil {
		var kv *state.KV
		if kv, err = state.OpenExistingKV(ctx, js, bucket); err == nil {
			var g *state.GlobalSwitch
			if g, err = state.EmergencySwitch(ctx, kv, st, by); err == nil {
				c.Epoch, c.At = g.Epoch, g.At
			}
		}
	}
	if err != nil {
		// Without the bucket, an epoch from the clock is higher than any
		// counter the keeper gave out: schools apply it, and a running
		// keeper adopts it and counts on from there.
		c.Epoch = uint64(time.Now().UnixNano())
		fmt.Fprintf(stdout, "warning: could not record the switch in the keeper's bucket (%v); publishing epoch %d\n", err, c.Epoch)
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
