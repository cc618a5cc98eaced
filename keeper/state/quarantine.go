package state

import "time"

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

// Failure causes.
const (
	FailureCrash  = "crash"          // lease lost while holding the run's koi
	FailureMemory = "memory ceiling" // the school closed the run's koi near its ceiling
)

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

// Quarantined reports whether the keeper paused the run for its failures.
func (r *Run) Quarantined() bool { return r.Quarantine != nil && r.Quarantine.Reason != "" }
