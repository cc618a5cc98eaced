package contract

import "time"

// RunSpec is the body of POST /api/v1/runs: what a caller gives to
// create a run.
type RunSpec struct {
	Name   string            `json:"name"`
	Owner  string            `json:"owner,omitempty"` // default: the caller
	Labels map[string]string `json:"labels,omitempty"`
	Target Target            `json:"target"`
	// BehaviorSet is a content hash, or a name for its latest version.
	BehaviorSet   string  `json:"behavior_set"`
	Koi           int     `json:"koi"`
	Ramp          float64 `json:"ramp"` // koi per second; 0: all at once
	TimeScale     float64 `json:"time_scale,omitempty"`
	ActivitySigma float64 `json:"activity_sigma,omitempty"`
	// DurationSecs ends the run after that long; 0 is always-on.
	DurationSecs float64 `json:"duration_secs,omitempty"`
	// Paused creates the run paused: koi connect but send nothing.
	Paused bool `json:"paused,omitempty"`
	// Thresholds maps metric keys to conditions checked in the run's
	// report, e.g. {"api:chat.postMessage": ["p95 < 300ms",
	// "error_rate < 1%"]}; see ARCHITECTURE.md.
	Thresholds map[string][]string `json:"thresholds,omitempty"`
	// ThresholdWindowSecs is the sliding window thresholds are evaluated
	// over while the run runs (1..3600, 0: 30).
	ThresholdWindowSecs int `json:"threshold_window_secs,omitempty"`
	// Guardrails are rules acting on the run when its metrics go bad.
	Guardrails []GuardrailRule `json:"guardrails,omitempty"`
	// Capacity makes the run a capacity search; Koi is then its start.
	Capacity *CapacitySpec `json:"capacity,omitempty"`
}

// RunPatch changes a running run's size or ramp; nil fields stay.
type RunPatch struct {
	Koi  *int     `json:"koi,omitempty"`
	Ramp *float64 `json:"ramp,omitempty"`
}

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
