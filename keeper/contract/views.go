package contract

import (
	"time"

	"github.com/koipond/koipond/wire"
)

// RunView is a run with where its koi are and how they are doing: what
// GET /api/v1/runs and /api/v1/runs/:id answer.
type RunView struct {
	*Run
	// Assigned is how many of the run's koi schools hold ranges of.
	Assigned int `json:"assigned"`
	// Partial explains why fewer koi than asked are assigned.
	Partial     string       `json:"partial,omitempty"`
	Assignments []Assignment `json:"assignments"`
	// KoiNow sums what live schools report for the run.
	KoiNow wire.KoiCounts `json:"koi_now"`
	// Refused maps schools to why they refuse the run.
	Refused map[string]string `json:"refused,omitempty"`
	// StopCompleteMS is how long the stop took to be confirmed everywhere.
	StopCompleteMS int64 `json:"stop_complete_ms,omitempty"`
	// GuardView holds effective koi, live thresholds and guardrails.
	GuardView
	// Fidelity is the run's fidelity verdict so far (its report's once
	// ended); only GET /api/v1/runs/:id fills it.
	Fidelity *Fidelity `json:"fidelity,omitempty"`
}

// Live states of a threshold or guardrail.
const (
	LivePass   = "pass"      // the threshold holds
	LiveFail   = "fail"      // the threshold does not hold
	LiveNoData = "no_data"   // nothing observed in the window
	LiveArming = "arming"    // the window is not yet whole
	LiveLow    = "low_count" // a guardrail saw fewer than min_count observations
	LiveOK     = "ok"        // a guardrail's condition is false
	LiveFiring = "firing"    // a guardrail's condition is true: it acted
	LiveIdle   = "idle"      // the run is not running
)

// LiveThresholdView is a threshold's latest live evaluation.
type LiveThresholdView struct {
	Key        string   `json:"key"`
	Expr       string   `json:"expr"`
	State      string   `json:"state"`
	Observed   *float64 `json:"observed,omitempty"`
	Unit       string   `json:"unit"`
	Count      uint64   `json:"count"`
	WindowSecs int      `json:"window_secs"`
	// FailingSince is when the current failing stretch began.
	FailingSince time.Time `json:"failing_since,omitzero"`
	FailingSecs  float64   `json:"failing_secs,omitempty"`
}

// GuardrailView is a guardrail's latest evaluation on a run.
type GuardrailView struct {
	Name      string   `json:"name"`
	Scope     string   `json:"scope"`
	Condition string   `json:"condition"`
	For       string   `json:"for"`
	Action    string   `json:"action"`
	State     string   `json:"state"`
	Observed  *float64 `json:"observed,omitempty"`
	Unit      string   `json:"unit"`
	Count     uint64   `json:"count"`
	// ArmedAt is the start of the rule's current arming.
	ArmedAt time.Time `json:"armed_at,omitzero"`
}

// GuardView is what a run view shows of live evaluation and partial
// shutdown.
type GuardView struct {
	// EffectiveKoi is Koi less the shed share: what schools run.
	EffectiveKoi int                 `json:"effective_koi"`
	LiveNow      []LiveThresholdView `json:"live_thresholds_now,omitempty"`
	GuardNow     []GuardrailView     `json:"guardrails_now,omitempty"`
}

// SchoolView is a school with its health and assignments: what GET
// /api/v1/schools answers.
type SchoolView struct {
	*School
	// Health is "live" (polled within two poll intervals), "late" (within
	// the lease) or "lost" (lease expired: its koi were moved).
	Health      string       `json:"health"`
	Assignments []Assignment `json:"assignments"`
	Assigned    int          `json:"assigned"`
}

// SwitchView is the global switch with its stop confirmation: what GET
// and PUT /api/v1/control answer.
type SwitchView struct {
	*GlobalSwitch
	StopCompleteMS int64 `json:"stop_complete_ms,omitempty"`
}

// Status is the keeper at a glance: what GET /api/v1/status answers and
// /api/v1/events streams.
type Status struct {
	Switch   SwitchView   `json:"switch"`
	Runs     []*RunView   `json:"runs"`
	Schools  []SchoolView `json:"schools"`
	Launches []*Launch    `json:"launches"` // pending and running
	Time     time.Time    `json:"time"`
}
