package keeper

import (
	"context"
	"fmt"
	"math"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
)

// ShedRun sets a run's partial shutdown: percent of its koi are held back
// (schools run round((100−percent)% × koi)) without stopping it; 0 brings
// them all back. Guardrails shed through act, compounding.
func (k *Keeper) ShedRun(ctx context.Context, actor, id string, percent float64) (*state.Run, error) {
	if math.IsNaN(percent) || percent < 0 || percent >= 100 {
		return nil, invalid("percent", "%g is outside 0..100 (exclusive of 100: pause or stop the run instead)", percent)
	}
	var out *state.Run
	err := k.write(ctx, "shedding the run", func(tx *state.Txn) error {
		old := tx.Run(nil, id)
		if old == nil {
			return notFound("id", "no run %q", id)
		}
		if !old.Active() {
			return conflict("run %s is %s; only running or paused runs shed", id, old.State)
		}
		n := *old
		n.ShedPercent = percent
		out = &n
		if err := k.putRun(tx, &n); err != nil {
			return err
		}
		return tx.Audit(actor, "shed run", id, fmt.Sprintf("shed %s → %s: %d → %d active koi", pct(old.ShedPercent), pct(percent), old.EffectiveKoi(), n.EffectiveKoi()))
	})
	if err != nil {
		return nil, err
	}
	k.Kick()
	return out, nil
}

// GuardrailsView is the global guardrails with what storing them noticed.
type GuardrailsView struct {
	*state.Guardrails
	Warnings []string `json:"warnings,omitempty"`
}

// SetGuardrails replaces the global guardrails (evaluated on every running
// run); an empty list removes them.
func (k *Keeper) SetGuardrails(ctx context.Context, actor string, rules []state.GuardrailRule) (*GuardrailsView, error) {
	gs, perr := parseGuardrails("rules", "global", rules)
	if perr != nil {
		return nil, perr
	}
	g := &state.Guardrails{Rules: verdict.RulesOf(gs), UpdatedBy: actor}
	err := k.write(ctx, "storing the guardrails", func(tx *state.Txn) error {
		g.UpdatedAt = tx.Now()
		if err := tx.PutGuardrails(g); err != nil {
			return err
		}
		names := make([]string, len(g.Rules))
		for i, r := range g.Rules {
			names[i] = fmt.Sprintf("%q", r.Name)
		}
		return tx.Audit(actor, "set guardrails", "guardrails", fmt.Sprintf("%d global rules %v", len(g.Rules), names))
	})
	if err != nil {
		return nil, err
	}
	return &GuardrailsView{Guardrails: g, Warnings: verdict.GuardrailWarnings("rules", g.Rules)}, nil
}
