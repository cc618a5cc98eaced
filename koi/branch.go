package koi

import (
	"context"
	"time"

	"github.com/koipond/koipond/behaviors"
)

// choose runs the branch of a `choose` step that a uniform draw picks, if
// any: its steps run like the sequence's own, and an error ends the
// sequence. A branch's steps get no per-step metric keys of their own.
func (k *Koi) choose(ctx context.Context, st *behaviors.Step, env *behaviors.Env) error {
	if seq := st.Pick(k.uniform()); seq != nil {
		return k.execute(ctx, seq, env)
	}
	return nil
}

// delayOf is the step's pause before time scaling: fixed, or drawn from
// its quantiles.
func (k *Koi) delayOf(st *behaviors.Step) time.Duration {
	if len(st.DelayQuantiles) == 0 {
		return st.DelayAfter
	}
	return st.Delay(k.uniform())
}

// uniform draws from [0, 1) with the koi's generator.
func (k *Koi) uniform() float64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rng.Float64()
}
