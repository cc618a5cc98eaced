package keeper

import (
	"fmt"
	"strings"

	"github.com/koipond/koipond/keeper/state"
)

// promGuard writes the per-run guard series (labels as promRuns'): the
// effective koi after a shed, the shed share, the guardrail actions kept
// on the run, and the live thresholds failing now. Cardinality: four
// series per listed run.
func (k *Keeper) promGuard(b *strings.Builder, runs []*state.Run) {
	metric := func(name, typ, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	labels := func(run *state.Run) string {
		return fmt.Sprintf(`run="%s",name="%s"`, promEscape(run.ID), promEscape(run.Name))
	}
	metric("koipond_run_koi_effective", "gauge", "Koi a run keeps active: its target less the shed share (partial shutdown).")
	for _, run := range runs {
		n := run.EffectiveKoi()
		if !run.Active() {
			n = 0
		}
		fmt.Fprintf(b, "koipond_run_koi_effective{%s} %d\n", labels(run), n)
	}
	metric("koipond_run_shed_percent", "gauge", "Share of a run's koi held back by a shed, in percent.")
	for _, run := range runs {
		fmt.Fprintf(b, "koipond_run_shed_percent{%s} %g\n", labels(run), run.ShedPercent)
	}
	metric("koipond_run_guard_actions", "gauge", "Guardrail actions recorded on a run (the newest 50 are kept).")
	for _, run := range runs {
		fmt.Fprintf(b, "koipond_run_guard_actions{%s} %d\n", labels(run), len(run.GuardActions))
	}
	metric("koipond_run_thresholds_failing", "gauge", "A run's thresholds failing their live (sliding window) evaluation now.")
	for _, run := range runs {
		n := 0
		for _, l := range k.guardView(run).LiveNow {
			if l.State == LiveFail {
				n++
			}
		}
		fmt.Fprintf(b, "koipond_run_thresholds_failing{%s} %d\n", labels(run), n)
	}
}
