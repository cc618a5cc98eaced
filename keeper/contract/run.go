package contract

import (
	"strings"
	"time"

	"github.com/koipond/koipond/wire"
)

// RunState is what a run is doing.
type RunState string

// Run states. A stopped run is finished for good.
const (
	RunRunning RunState = "running"
	RunPaused  RunState = "paused"
	RunStopped RunState = "stopped"
)

// Target is where a run's koi go and who they are.
type Target struct {
	// APIBase is where api requests go; a run whose set sends none may
	// leave it empty.
	APIBase      string `json:"api_base"`
	WebsocketURL string `json:"websocket_url,omitempty"`
	// WebsocketSubprotocols are offered in the websocket handshake.
	WebsocketSubprotocols []string `json:"websocket_subprotocols,omitempty"`
	// WebsocketHeaders are added to the handshake; values are templates
	// over {{.Index}}, {{.Token}} and {{.UserID}}, rendered per koi.
	WebsocketHeaders map[string]string `json:"websocket_headers,omitempty"`
	Token            string            `json:"token,omitempty"`
	Tokens           []string          `json:"tokens,omitempty"`
	UserID           string            `json:"user_id,omitempty"`
}

// Where says where a run's koi go, for people (as the keeper's notices
// say it): the API base, the websocket URL with its subprotocols, or both;
// a target with neither gets its websocket URL from boot.
func (t Target) Where() string {
	var parts []string
	if t.APIBase != "" {
		parts = append(parts, t.APIBase)
	}
	if t.WebsocketURL != "" {
		ws := t.WebsocketURL
		if len(t.WebsocketSubprotocols) > 0 {
			ws += " (" + strings.Join(t.WebsocketSubprotocols, ", ") + ")"
		}
		parts = append(parts, ws)
	}
	if len(parts) == 0 {
		return "the websocket URL boot gives"
	}
	return strings.Join(parts, " and ")
}

// Switch is a switch position with the epoch that set it.
type Switch struct {
	State wire.State `json:"state"`
	Epoch uint64     `json:"epoch"`
	By    string     `json:"by,omitempty"`
	At    time.Time  `json:"at"`
}

// StopTrack follows a stop until every school that ran koi confirms it has
// none left (koi running = 0 and websockets closed).
type StopTrack struct {
	RequestedAt time.Time `json:"requested_at"`
	Epoch       uint64    `json:"epoch"`
	// Expected lists the schools that had to confirm.
	Expected []string `json:"expected"`
	// Acks maps a school to when its confirming poll arrived.
	Acks map[string]time.Time `json:"acks"`
	// CompleteAt is set once every expected school confirmed.
	CompleteAt time.Time `json:"complete_at,omitzero"`
	// Late lists schools that had not confirmed within the lease.
	Late []string `json:"late,omitempty"`
}

// Run is a swarm of koi with one behavior set against one target. A run
// with DurationMS 0 is always-on.
type Run struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Owner         string            `json:"owner,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Target        Target            `json:"target"`
	BehaviorSet   string            `json:"behavior_set"`
	Koi           int               `json:"koi"`
	Ramp          float64           `json:"ramp"` // koi per second over the whole run
	TimeScale     float64           `json:"time_scale,omitempty"`
	ActivitySigma float64           `json:"activity_sigma,omitempty"`
	DurationMS    int64             `json:"duration_ms,omitempty"`
	State         RunState          `json:"state"`
	// Switch is the run's own switch (epoch from the global counter).
	Switch    Switch     `json:"switch"`
	CreatedAt time.Time  `json:"created_at"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   time.Time  `json:"ended_at,omitzero"`
	EndReason string     `json:"end_reason,omitempty"`
	Stop      *StopTrack `json:"stop,omitempty"`
	// Thresholds maps metric keys to conditions the run must meet (e.g.
	// "p95 < 300ms"), checked in its report.
	Thresholds map[string][]string `json:"thresholds,omitempty"`
	// Warnings are what the run's creation noticed without refusing it
	// (thresholds on metric keys the run may never report).
	Warnings []string `json:"warnings,omitempty"`
	// ThresholdWindowSecs is the sliding window live thresholds are
	// evaluated over (0: the default, 30 s).
	ThresholdWindowSecs int `json:"threshold_window_secs,omitempty"`
	// LiveThresholds records the live failures of the thresholds.
	LiveThresholds []LiveThreshold `json:"live_thresholds,omitempty"`
	// Guardrails are the run's own rules (see GuardrailRule).
	Guardrails []GuardrailRule `json:"guardrails,omitempty"`
	// ShedPercent is the share of Koi held back (partial shutdown):
	// schools run EffectiveKoi.
	ShedPercent float64 `json:"shed_percent,omitempty"`
	// GuardActions are the newest actions guardrails took on the run.
	GuardActions []GuardAction `json:"guard_actions,omitempty"`
	// Capacity makes the run a capacity search; CapacityResult follows it.
	Capacity       *CapacitySpec   `json:"capacity,omitempty"`
	CapacityResult *CapacityResult `json:"capacity_result,omitempty"`
	// Quarantine counts the run's school failures and says why the keeper
	// paused it (see Quarantine).
	Quarantine *Quarantine `json:"quarantine,omitempty"`
	// Trimmed says what the keeper left out of the run's record to keep
	// it within the NATS server's max_payload (one message per record).
	Trimmed []string `json:"trimmed,omitempty"`
}

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

// Quarantine is what the keeper knows of a run's school failures: the
// recent ones (a school that lost its lease while holding the run's koi, a
// school that closed them at its memory ceiling) and, once they reached
// the keeper's limit, why it paused the run. Resuming the run clears it.
type Quarantine struct {
	// Failures are the recent failures, oldest first (bounded).
	Failures []RunFailure `json:"failures,omitempty"`
	// Reason is set when the keeper paused the run for its failures.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// RunFailure is one school failure counted against a run.
type RunFailure struct {
	At     time.Time `json:"at"` // keeper time
	School string    `json:"school"`
	Cause  string    `json:"cause"`
	Detail string    `json:"detail,omitempty"`
	// Episode identifies the failure on its school (so a report repeated
	// in every poll counts once): the school's pressure time, or the
	// school's last poll for a crash.
	Episode string `json:"episode,omitempty"`
}

// Complete reports whether every expected school confirmed.
func (t *StopTrack) Complete() bool { return t != nil && !t.CompleteAt.IsZero() }

// Active reports whether the run should have koi assigned.
func (r *Run) Active() bool { return r.State == RunRunning || r.State == RunPaused }
