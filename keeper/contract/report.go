package contract

import "time"

// Report is a run's results over its whole life: per metric key counts,
// errors and latency quantiles, websocket health, launch outcomes and
// threshold verdicts. The keeper persists it once the run has ended and
// its schools' last metrics are in (Final); before that the API serves a
// provisional one built on demand.
type Report struct {
	Run       string    `json:"run"`
	Name      string    `json:"name"`
	State     RunState  `json:"state"`
	Final     bool      `json:"final"`
	CreatedAt time.Time `json:"created_at"`
	// From and To bound the run's life (To: its end, or now while it runs).
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	DurationSecs float64   `json:"duration_secs"`
	EndReason    string    `json:"end_reason,omitempty"`
	Koi          int       `json:"koi"`
	// Keys holds every metric key (at most the 500 the keeper keeps per
	// run), sorted.
	Keys      []ReportKey     `json:"keys"`
	Websocket ReportWebsocket `json:"websocket"`
	Launches  []ReportLaunch  `json:"launches"`
	// Thresholds holds each threshold's verdict; Passed is nil without
	// thresholds.
	Thresholds []ThresholdResult `json:"thresholds,omitempty"`
	Passed     *bool             `json:"passed,omitempty"`
	// Capacity is the run's capacity search, when it was one.
	Capacity *CapacityResult `json:"capacity,omitempty"`
	// GuardActions are what guardrails did to the run (the newest
	// MaxGuardActions), and ShedPercent its shed share at the end.
	GuardActions []GuardAction `json:"guard_actions,omitempty"`
	ShedPercent  float64       `json:"shed_percent,omitempty"`
	// Fidelity says whether the load matched its spec (absent from
	// reports stored before fidelity was judged).
	Fidelity *Fidelity `json:"fidelity,omitempty"`
}

// ReportKey is one metric key over a run's life. Latencies are in
// milliseconds and absent without latency samples.
type ReportKey struct {
	Key       string            `json:"key"`
	Count     uint64            `json:"count"`
	Failures  uint64            `json:"failures"`
	ErrorRate float64           `json:"error_rate"`
	Rate      float64           `json:"rate_per_sec"`
	Outcomes  map[string]uint64 `json:"outcomes"`
	Samples   uint64            `json:"samples"`
	P50       *float64          `json:"p50_ms,omitempty"`
	P90       *float64          `json:"p90_ms,omitempty"`
	P95       *float64          `json:"p95_ms,omitempty"`
	P99       *float64          `json:"p99_ms,omitempty"`
	Max       *float64          `json:"max_ms,omitempty"`
	// Reasons are the key's most frequent failure causes over the run.
	Reasons []Reason `json:"reasons,omitempty"`
}

// ReportWebsocket sums the koi's websocket life: successful and failed
// connects, drops (ws:disconnect), reconnects (drops followed by a
// successful connect: min(drops, connects)) and closes by close code.
type ReportWebsocket struct {
	Connects        uint64            `json:"connects"`
	ConnectFailures uint64            `json:"connect_failures"`
	Drops           uint64            `json:"drops"`
	Reconnects      uint64            `json:"reconnects"`
	Closes          map[string]uint64 `json:"closes"`
	ConnectP95      *float64          `json:"connect_p95_ms,omitempty"`
}

// ReportLaunch is one launch's outcome: koi started against planned, per
// school, and the real start spread.
type ReportLaunch struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	State     LaunchState `json:"state"`
	Start     time.Time   `json:"start"`
	Planned   int         `json:"planned"`
	Started   int         `json:"started"`
	Finished  int         `json:"finished"`
	Failed    int         `json:"failed"`
	Cancelled int         `json:"cancelled"`
	Connected int         `json:"connected"`
	// Key is the metric key of the launch's sequence; Steps are the
	// launch's own keys (Key, then Key:N per step), read from the run's
	// metrics: another launch of the same formation is not mixed in
	// unless the run ran out of per-launch keys (then Key is shared).
	Key   string      `json:"key,omitempty"`
	Steps []ReportKey `json:"steps,omitempty"`
	// SpreadMS is LastStart − FirstStart over every school.
	SpreadMS float64 `json:"spread_ms"`
	// FirstDelayMS is FirstStart − Start: how late the first koi began.
	FirstDelayMS float64       `json:"first_delay_ms"`
	Schools      []ReportShare `json:"schools"`
	Outcome      string        `json:"outcome,omitempty"`
}

// ReportShare is one school's part of a launch.
type ReportShare struct {
	School    string  `json:"school"`
	Planned   int     `json:"planned"`
	Started   int     `json:"started"`
	Finished  int     `json:"finished"`
	Failed    int     `json:"failed"`
	Cancelled int     `json:"cancelled"`
	SpreadMS  float64 `json:"spread_ms"`
	Error     string  `json:"error,omitempty"`
}

// ThresholdResult is one threshold's verdict: the observed value in the
// threshold's unit (ms for latencies, a fraction for rates of errors, per
// second for rate), or none when the run had no data for it (a failure).
type ThresholdResult struct {
	Key      string   `json:"key"`
	Expr     string   `json:"expr"`
	Observed *float64 `json:"observed,omitempty"`
	Unit     string   `json:"unit"`
	Passed   bool     `json:"passed"`
	Note     string   `json:"note,omitempty"`
	// LiveFailures counts the times the threshold started failing in the
	// live (sliding window) evaluation, LiveFailedSecs how long it failed.
	LiveFailures   int     `json:"live_failures,omitempty"`
	LiveFailedSecs float64 `json:"live_failed_secs,omitempty"`
}
