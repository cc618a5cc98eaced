package contract

// Comparison verdicts.
const (
	VerdictRegressed = "regressed"
	VerdictImproved  = "improved"
	VerdictSame      = "same"
	VerdictNew       = "new"  // only in the compared run
	VerdictGone      = "gone" // only in the baseline
)

// Comparison is a run's report against a baseline run's: per metric key
// and statistic, both values, the absolute and relative deltas and a
// verdict; threshold verdicts side by side; launch spreads side by side.
//
// Tolerances: latencies (p50, p90, p95, p99, max), rates and counts are
// compared relatively — a change is flagged when |delta| exceeds
// Tolerance × baseline, and, for latencies, also the sketches' error
// (SketchAccuracy × (baseline + value)) and MinLatencyDeltaMS, and for
// counts and rates also NoiseSigmas standard deviations of Poisson
// counting noise. Error rates are compared in absolute percentage points:
// flagged when |delta| exceeds ErrorTolerancePP and NoiseSigmas binomial
// standard deviations. Higher latencies and error rates are regressions;
// lower rates and counts are regressions (less throughput), except for
// keys that count bad things (ws:disconnect, ws:close:*) where higher is.
type Comparison struct {
	Baseline         string  `json:"baseline"`
	BaselineName     string  `json:"baseline_name"`
	Tolerance        float64 `json:"tolerance"`
	ErrorTolerancePP float64 `json:"error_tolerance_pp"`
	// MinLatencyDeltaMS is the smallest latency change flagged.
	MinLatencyDeltaMS float64 `json:"min_latency_delta_ms"`
	SketchAccuracy    float64 `json:"sketch_accuracy"`
	// Regressed and Improved count the keys with that verdict.
	Regressed  int                   `json:"regressed"`
	Improved   int                   `json:"improved"`
	Keys       []KeyComparison       `json:"keys"`
	Thresholds []ThresholdComparison `json:"thresholds"`
	Launches   []LaunchComparison    `json:"launches"`
}

// KeyComparison is one metric key in either run. Verdict is the key's
// worst: regressed when any statistic regressed, else improved when any
// improved, else same (new and gone for keys in one run only).
type KeyComparison struct {
	Key     string           `json:"key"`
	Verdict string           `json:"verdict"`
	Stats   []StatComparison `json:"stats"`
}

// StatComparison is one statistic of a key: count, rate_per_sec,
// error_rate (a fraction) or p50_ms … max_ms. Baseline or Value is absent
// when that run has no such value (no latency samples, or no such key);
// Relative is absent when the baseline is 0 or absent.
type StatComparison struct {
	Stat     string   `json:"stat"`
	Baseline *float64 `json:"baseline,omitempty"`
	Value    *float64 `json:"value,omitempty"`
	Delta    *float64 `json:"delta,omitempty"`
	Relative *float64 `json:"relative,omitempty"`
	Verdict  string   `json:"verdict"`
}

// ThresholdComparison is one threshold (key and expression) in either
// run: passing in the baseline and failing now is a regression.
type ThresholdComparison struct {
	Key              string   `json:"key"`
	Expr             string   `json:"expr"`
	BaselinePassed   *bool    `json:"baseline_passed,omitempty"`
	Passed           *bool    `json:"passed,omitempty"`
	BaselineObserved *float64 `json:"baseline_observed,omitempty"`
	Observed         *float64 `json:"observed,omitempty"`
	Unit             string   `json:"unit"`
	Verdict          string   `json:"verdict"`
}

// LaunchComparison pairs the n-th launch of a formation (by name) in
// both runs: start spread and first-koi delay in ms, koi started of
// planned. Verdict judges the spread (relative tolerance, at least 5 ms).
type LaunchComparison struct {
	Name            string   `json:"name"`
	Index           int      `json:"index"`
	BaselineSpread  *float64 `json:"baseline_spread_ms,omitempty"`
	Spread          *float64 `json:"spread_ms,omitempty"`
	BaselineDelay   *float64 `json:"baseline_first_delay_ms,omitempty"`
	Delay           *float64 `json:"first_delay_ms,omitempty"`
	BaselineStarted string   `json:"baseline_started,omitempty"`
	Started         string   `json:"started,omitempty"`
	Verdict         string   `json:"verdict"`
}
