package contract

import "time"

// KeySummary is one metric key over a window.
type KeySummary struct {
	Key      string  `json:"key"`
	Count    uint64  `json:"count"`
	Failures uint64  `json:"failures"`
	Rate     float64 `json:"rate_per_sec"`
	// Latency quantiles in milliseconds (absent without latency samples).
	P50 *float64 `json:"p50_ms,omitempty"`
	P95 *float64 `json:"p95_ms,omitempty"`
	P99 *float64 `json:"p99_ms,omitempty"`
	// Outcomes counts observations per outcome name.
	Outcomes map[string]uint64 `json:"outcomes"`
	// Reasons are the key's most frequent failure causes, most frequent
	// first (absent when nothing failed or no cause was recorded).
	Reasons []Reason `json:"reasons,omitempty"`
}

// Reason is one cause of a key's failures: a Slack-style error field
// ("not_authed"), an HTTP status ("http 503"), a websocket close code
// ("close 1011") or a template error, with how often it happened and one
// bounded sample of what was seen.
type Reason struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
	Sample string `json:"sample,omitempty"`
}

// MetricsSummary is a run's merged metrics over a window.
type MetricsSummary struct {
	Run     string       `json:"run"`
	From    time.Time    `json:"from"`
	To      time.Time    `json:"to"`
	Keys    []KeySummary `json:"keys"`
	Traffic Traffic      `json:"traffic_total"`
}

// Traffic is a run's websocket frames and bytes, both ways.
type Traffic struct {
	FramesIn  uint64 `json:"frames_in"`
	FramesOut uint64 `json:"frames_out"`
	BytesIn   uint64 `json:"bytes_in"`
	BytesOut  uint64 `json:"bytes_out"`
}
