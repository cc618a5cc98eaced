package keeper

import (
	"context"
	"fmt"
	"time"

	"github.com/koipond/koipond/keeper/state"
)

// LaunchSpec is what a caller gives to launch a formation.
type LaunchSpec struct {
	// Formation is a content hash, or a name for its latest version.
	Formation string            `json:"formation"`
	Run       string            `json:"run"`
	Params    map[string]string `json:"params,omitempty"`
	// At is the launch instant; zero means now (in practice three poll
	// intervals from now, so every school hears of it first).
	At time.Time `json:"at,omitzero"`
}

// Launch schedules a formation over a run's connected koi. The per-school
// counts are fixed shortly before the start (immediately when it is
// close) from the koi each school reports connected.
func (k *Keeper) Launch(ctx context.Context, actor string, spec LaunchSpec) (*state.Launch, error) {
	if spec.Formation == "" {
		return nil, invalid("formation", "give a formation hash or name")
	}
	if spec.Run == "" {
		return nil, invalid("run", "give a run id")
	}
	for key, v := range spec.Params {
		if err := checkName("params", key); err != nil {
			return nil, err
		}
		if len(v) > 4096 {
			return nil, invalid("params."+key, "longer than 4096 bytes")
		}
	}
	now := time.Now()
	start := spec.At
	if start.IsZero() {
		start = now.Add(3 * k.cfg.PollInterval)
	}
	switch {
	case start.Before(now.Add(-LaunchGrace)):
		return nil, invalid("at", "%s is in the past (now %s)", start.Format(time.RFC3339), now.Format(time.RFC3339))
	case start.After(now.Add(MaxLaunchAhead)):
		return nil, invalid("at", "%s is more than %v ahead", start.Format(time.RFC3339), MaxLaunchAhead)
	}
	var out *state.Launch
	err := k.write(ctx, "storing the launch", func(tx *state.Txn) error {
		fm := tx.Formation(nil, spec.Formation)
		if fm == nil {
			fm = tx.LatestFormation(nil, spec.Formation)
		}
		if fm == nil {
			return notFound("formation", "no formation with hash or name %q", spec.Formation)
		}
		run := tx.Run(nil, spec.Run)
		if run == nil {
			return notFound("run", "no run %q", spec.Run)
		}
		if !run.Active() {
			return conflict("run %s is %s; launch over a running run", run.ID, run.State)
		}
		if err := checkLaunchAPIBase(run, fm); err != nil {
			return err
		}
		l := &state.Launch{ID: newID("launch"), Run: run.ID, Formation: fm.Hash, Name: fm.Name, Params: spec.Params,
			Start: start, BeginWithinMS: fm.BeginWithinMS, State: state.LaunchPending, CreatedAt: tx.Now(), CreatedBy: actor}
		if start.Sub(tx.Now()) <= k.planLead() {
			if err := k.plan(tx, l, tx.Now(), k.liveSchools(&tx.Reader, tx.Now())); err != nil {
				return err
			}
		}
		out = l
		if err := tx.PutLaunch(l); err != nil {
			return err
		}
		return tx.Audit(actor, "launch", l.ID, fmt.Sprintf("formation %q (%s) over run %s at %s", fm.Name, fm.Hash, run.ID, start.Format(time.RFC3339Nano)))
	})
	if err != nil {
		return nil, err
	}
	k.Kick()
	return out, nil
}

// CancelLaunch cancels a pending or running launch. Schools that already
// started their koi let those finish their sequence.
func (k *Keeper) CancelLaunch(ctx context.Context, actor, id string) (*state.Launch, error) {
	var out *state.Launch
	err := k.write(ctx, "cancelling the launch", func(tx *state.Txn) error {
		old := tx.Launch(nil, id)
		if old == nil {
			return notFound("id", "no launch %q", id)
		}
		if old.State != state.LaunchPending && old.State != state.LaunchRunning {
			return conflict("launch %s is %s", id, old.State)
		}
		n := *old
		n.State, n.EndedAt, n.Outcome = state.LaunchCancelled, tx.Now(), "cancelled by "+actor
		out = &n
		if err := tx.PutLaunch(&n); err != nil {
			return err
		}
		return tx.Audit(actor, "cancel launch", id, "")
	})
	return out, err
}
