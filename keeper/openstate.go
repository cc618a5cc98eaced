package keeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// stateAttempt bounds one attempt at opening and reading the state
// bucket; a JetStream request that a cluster without leaders never
// answers ends with it, and the next attempt asks again.
const stateAttempt = 10 * time.Second

// openState opens the state bucket and reads every record, retrying until
// Config.StartupTimeout: a NATS cluster started at the same time as the
// keeper answers JetStream requests only once it has elected its meta
// leader and the bucket's stream leader, which can take tens of seconds
// on a busy machine. Each failed attempt is logged with its error; the
// last one is returned. A refusal that waiting cannot change
// (refusedForGood) is returned at once.
func (k *Keeper) openState(ctx context.Context, js jetstream.JetStream) (map[string][]byte, error) {
	deadline := time.Now().Add(k.cfg.StartupTimeout)
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		recs, err := k.tryOpenState(ctx, js, min(stateAttempt, max(time.Until(deadline), time.Second)))
		if err == nil {
			if attempt > 1 {
				k.log.Info("JetStream serves the state bucket", "attempts", attempt)
			}
			return recs, nil
		}
		if ctx.Err() != nil || refusedForGood(err) {
			return nil, fmt.Errorf("keeper: %w", err)
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("keeper: JetStream did not serve the state bucket %q within %v (%d attempts; raise --startup-timeout for a slow cluster): %w",
				k.cfg.Bucket, k.cfg.StartupTimeout, attempt, err)
		}
		k.log.Warn("waiting for JetStream to serve the state bucket", "bucket", k.cfg.Bucket, "attempt", attempt,
			"left", time.Until(deadline).Round(time.Second).String(), "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("keeper: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// refusedForGood reports whether err is a JetStream answer about the bucket's
// configuration that no leader election changes: replicas on a NATS that
// is not clustered.
func refusedForGood(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.ErrorCode(server.JSStreamReplicasNotSupportedErr)
}

func (k *Keeper) tryOpenState(ctx context.Context, js jetstream.JetStream, d time.Duration) (map[string][]byte, error) {
	actx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	kv, err := state.OpenKV(actx, js, k.cfg.Bucket, k.cfg.Replicas)
	if err != nil {
		return nil, err
	}
	if err := kv.OpenCheckpoints(actx, js, k.cfg.Bucket, k.cfg.Replicas); err != nil {
		return nil, err
	}
	recs, err := kv.LoadAll(actx)
	if err != nil {
		return nil, err
	}
	k.kv = kv
	return recs, nil
}
