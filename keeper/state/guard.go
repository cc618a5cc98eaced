package state

import (
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/go-memdb"
)

// GuardrailRule is a rule as written by people, e.g. {"key": "api:*",
// "when": "success_rate < 95%", "for": "5m", "action": "pause"}: when its
// condition holds over the key's metrics for the duration, the keeper
// takes the action. The keeper parses and checks it (package keeper);
// stored rules are valid.
type GuardrailRule struct {
	// Name identifies the rule in audit entries and notices; it defaults
	// to a readable form of the rule.
	Name string `json:"name,omitempty"`
	// Key is a metric key or a path.Match glob over keys ("api:*").
	Key string `json:"key"`
	// When is the condition that fires the rule (threshold syntax).
	When string `json:"when"`
	// For is how long the condition must hold (Go duration, 1s..24h).
	For string `json:"for"`
	// Action is pause, stop or "shed N%".
	Action string `json:"action"`
	// MinCount is the observations needed in the window before the rule
	// can fire (0: the default, 10).
	MinCount int `json:"min_count,omitempty"`
}

// Guardrails is the set of global rules, evaluated on every running run.
type Guardrails struct {
	Rules     []GuardrailRule `json:"rules"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
	UpdatedBy string          `json:"updated_by,omitempty"`
}

// GuardAction records one action a guardrail took on a run.
type GuardAction struct {
	At time.Time `json:"at"`
	// Rule is the rule's name; Scope is "run" or "global".
	Rule  string `json:"rule"`
	Scope string `json:"scope"`
	// Condition is the rule's text, e.g. "success_rate of api:* < 95% for 5s".
	Condition string `json:"condition"`
	// Observed is the value that fired it, in Unit (ms, fraction,
	// per_sec, count), over Count observations in WindowSecs.
	Observed   float64 `json:"observed"`
	Unit       string  `json:"unit"`
	Count      uint64  `json:"count"`
	WindowSecs float64 `json:"window_secs"`
	// Action is what was done: pause, stop or "shed N%".
	Action string `json:"action"`
	// Detail says what the action changed (or why it could not).
	Detail string `json:"detail,omitempty"`
}

// MaxGuardActions bounds the actions kept on a run (the oldest go first);
// every action is in the audit trail too.
const MaxGuardActions = 50

// LiveThreshold is what the keeper keeps of a threshold's live
// evaluation: how often and how long it failed over the run's life.
type LiveThreshold struct {
	Key  string `json:"key"`
	Expr string `json:"expr"`
	// Failures counts the times it started failing.
	Failures int `json:"failures"`
	// FailedSecs sums the closed failing stretches.
	FailedSecs   float64   `json:"failed_secs"`
	LastFailedAt time.Time `json:"last_failed_at,omitzero"`
}

// EffectiveKoi is the number of koi the run should have active: Koi less
// the shed share, rounded to the nearest koi, but at least one while the
// run is active with any koi — a shed holds koi back, it never empties a
// run that still counts as running (pause or stop it for that).
func (r *Run) EffectiveKoi() int {
	if r.ShedPercent <= 0 {
		return r.Koi
	}
	n := int(math.Round(float64(r.Koi) * (100 - r.ShedPercent) / 100))
	if n < 1 && r.Koi > 0 && r.Active() {
		n = 1
	}
	return n
}

// AddGuardAction appends an action, keeping the newest MaxGuardActions.
// r must be a copy owned by the caller.
func (r *Run) AddGuardAction(a GuardAction) {
	acts := append(append([]GuardAction(nil), r.GuardActions...), a)
	if len(acts) > MaxGuardActions {
		acts = acts[len(acts)-MaxGuardActions:]
	}
	r.GuardActions = acts
}

// Guardrails returns the global guardrails (none before any are set).
func (r *Reader) Guardrails(ws memdb.WatchSet) *Guardrails {
	if g := first[Guardrails](r, ws, TableGuardrails, indexID); g != nil {
		return g
	}
	return &Guardrails{Rules: []GuardrailRule{}}
}

// PutGuardrails stores the global guardrails.
func (t *Txn) PutGuardrails(g *Guardrails) error {
	if g.Rules == nil {
		return fmt.Errorf("state: guardrails need a rule list (may be empty)")
	}
	return put(t, TableGuardrails, guardrailsKey, g, first[Guardrails](&t.Reader, nil, TableGuardrails, indexID))
}

// CapacitySpec asks a run to search for the most koi the target
// sustains: start at Start koi and add Step every StepSecs while every
// guardrail holds and the live thresholds pass, up to Max.
type CapacitySpec struct {
	Start    int `json:"start"`
	Step     int `json:"step"`
	StepSecs int `json:"step_secs"`
	Max      int `json:"max"`
	// Flatten, when set, also ends the search when the key's rate per
	// added koi falls below MinGain × the first step's rate per koi.
	Flatten *CapacityFlatten `json:"flatten,omitempty"`
	// Then is what follows the search: "stop" (the default) or "hold"
	// (scale back to the sustained count and keep running).
	Then string `json:"then,omitempty"`
}

// CapacityFlatten is the throughput test of a capacity search.
type CapacityFlatten struct {
	Key     string  `json:"key"`
	MinGain float64 `json:"min_gain"`
}

// CapacityResult is where a capacity search is, and what it found.
type CapacityResult struct {
	// Sustained is the largest koi count whose step held.
	Sustained int  `json:"sustained"`
	Done      bool `json:"done"`
	// Reason says why the search ended.
	Reason string `json:"reason,omitempty"`
	// StepFrom is when the current step began.
	StepFrom time.Time      `json:"step_from"`
	Steps    []CapacityStep `json:"steps"`
}

// CapacityStep is one step of a capacity search: its koi, its window and
// what the target did over it (Key's rate and latency).
type CapacityStep struct {
	Koi    int       `json:"koi"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Held   bool      `json:"held"`
	Reason string    `json:"reason,omitempty"`
	Key    string    `json:"key"`
	Count  uint64    `json:"count"`
	// Rate is Key's observations per second; ErrorRate their failed
	// share; P95 their latency in ms (absent without samples).
	Rate      float64  `json:"rate_per_sec"`
	ErrorRate float64  `json:"error_rate"`
	P95       *float64 `json:"p95_ms,omitempty"`
}
