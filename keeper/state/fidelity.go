package state

// Fidelity says whether a run's load matched its spec: per behavior the
// runs the spec asked for over the koi-minutes the koi really scheduled,
// against what the koi started and completed; per launch the koi started
// against planned and whether their start offsets were uniform over the
// launch window. keeper/verdict computes it (verdict.JudgeFidelity); the
// report keeps it, so it survives a keeper restart with the report.
type Fidelity struct {
	// Verdict is FidelityMatched, FidelityNotMatched or
	// FidelityUnjudged (nothing could be judged).
	Verdict string `json:"verdict"`
	// Summary is one line for people: "the load matched its spec" or
	// what did not ("behavior X under: 48% halted (…)").
	Summary string `json:"summary"`
	// KoiMinutes are the behavior-minutes the koi scheduled (pauses,
	// boot and reconnects excluded); PlannedKoiMinutes what the run asked
	// for (koi × duration × time scale; 0 for an always-on run).
	KoiMinutes        float64 `json:"koi_minutes"`
	PlannedKoiMinutes float64 `json:"planned_koi_minutes,omitempty"`
	// MaxAbsZ is the largest |z| over the judged behaviors (nil: none).
	MaxAbsZ *float64 `json:"max_abs_z,omitempty"`
	// Notes are run-wide causes (koi short of the plan, pauses, guardrail
	// actions) and what could not be judged.
	Notes     []string           `json:"notes,omitempty"`
	Behaviors []FidelityBehavior `json:"behaviors"`
	Launches  []FidelityLaunch   `json:"launches,omitempty"`
}

// Fidelity verdicts of a run.
const (
	FidelityMatched    = "matched"
	FidelityNotMatched = "not_matched"
	FidelityUnjudged   = "unjudged"
)

// Fidelity verdicts of a behavior.
const (
	FidelityWithin     = "within"     // |z| ≤ 4
	FidelityUnder      = "under"      // z < −4
	FidelityOver       = "over"       // z > 4
	FidelityTooLittle  = "too_little" // expected below the judging floor
	FidelityUnmeasured = "unmeasured" // no exposure reported
)

// Uniformity results of a launch's start offsets.
const (
	FidelityUniform    = "uniform"    // KS p ≥ 0.001
	FidelityClumped    = "clumped"    // KS p < 0.001
	FidelityTooFew     = "too_few"    // fewer than 20 starts
	FidelityNoWindow   = "no_window"  // begin_within 0: every koi starts at once
	FidelityNoOffsets  = "no_offsets" // the schools reported no offsets
	FidelityUnfinished = "unfinished" // still starting, or cancelled before its window closed: not tested
)

// FidelityBehavior is one background behavior's expected against
// observed runs.
type FidelityBehavior struct {
	Behavior string `json:"behavior"`
	// Key is its metric key ("behavior:<name>").
	Key       string  `json:"key"`
	Frequency float64 `json:"frequency"`
	// Expected and SE are the mean and standard error of its number of
	// runs over the exposure.
	Expected float64 `json:"expected"`
	SE       float64 `json:"se"`
	// Started counts every run (all outcomes); Completed the ok ones,
	// Halted those that stopped themselves, Failed those that failed,
	// Canceled those a pause or stop cut short.
	Started   uint64 `json:"started"`
	Completed uint64 `json:"completed"`
	Halted    uint64 `json:"halted"`
	Failed    uint64 `json:"failed"`
	Canceled  uint64 `json:"canceled"`
	// Z is (Completed + Canceled − Expected) / SE, ZStarted the same for
	// Started; nil when too little exposure to judge.
	Z        *float64 `json:"z,omitempty"`
	ZStarted *float64 `json:"z_started,omitempty"`
	Verdict  string   `json:"verdict"`
	// Cause is the likely cause of an under or over verdict, in words.
	Cause string `json:"cause,omitempty"`
	// HaltReasons are the reasons the behavior's steps halt with (read
	// from the spec's halt calls); Reasons the most frequent failures.
	HaltReasons []string `json:"halt_reasons,omitempty"`
	Reasons     []Reason `json:"reasons,omitempty"`
}

// FidelityLaunch is one launch's planned against started and completed
// koi, and the uniformity of its starts over the window.
type FidelityLaunch struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Planned   int    `json:"planned"`
	Started   int    `json:"started"`
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
	Cancelled int    `json:"cancelled"`
	// Starts is the number of binned start offsets tested; KS the
	// Kolmogorov–Smirnov statistic against uniform over the window and
	// P its p-value (nil when not tested).
	Starts     int      `json:"starts"`
	KS         *float64 `json:"ks,omitempty"`
	P          *float64 `json:"p,omitempty"`
	Uniformity string   `json:"uniformity"`
	// Note says why it was not tested or what it found, in words.
	Note string `json:"note,omitempty"`
}
