package warehouse

import "time"

// DefaultSessionGap splits a user's calls into sessions: a silence at
// least this long ends one (Options.SessionGap).
const DefaultSessionGap = 30 * time.Minute

// Sessions is what Options.Sessions learns from a raw export: how each
// session begins, and first-order transitions between methods with their
// delays; the generated behavior set's sequences reproduce them.
type Sessions struct {
	// Gap is the silence that split sessions.
	Gap time.Duration `json:"gap_ns"`
	// Count is the number of sessions, Users the users they came from.
	Count int64 `json:"count"`
	Users int64 `json:"users"`
	// Entries are the methods sessions begin with, most frequent first.
	Entries []Entry `json:"entries"`
	// Transitions are the observed method-to-method steps within
	// sessions, by From then most frequent first.
	Transitions []Transition `json:"transitions"`
	// Coverage is the share of the observed transitions (by count) that
	// the generated set reproduces (kept, not pruned or dropped).
	Coverage float64 `json:"coverage"`
	// Notes say what could not be learned and why (no timestamps, one
	// call per user, clock skew, methods without a sequence).
	Notes []string `json:"notes,omitempty"`
}

// Entry is a method sessions begin with.
type Entry struct {
	Method string `json:"method"`
	// Sessions that began with it, and Frequency its per-minute
	// frequency as an entry (the generated behavior's frequency).
	Sessions  int64   `json:"sessions"`
	Frequency float64 `json:"frequency"`
}

// Transition is one learned step: after a call of From, the user's next
// call in the session is To with Probability (Count of From's calls that
// had a next call were followed by To), after a delay.
type Transition struct {
	From        string  `json:"from"`
	To          string  `json:"to"`
	Count       int64   `json:"count"`
	Probability float64 `json:"probability"`
	// SE is Probability's standard error.
	SE float64 `json:"se"`
	// DelayP50MS and DelayP90MS are the delay quantiles, milliseconds.
	DelayP50MS int64 `json:"delay_p50_ms"`
	DelayP90MS int64 `json:"delay_p90_ms"`
	// Kept is false for a transition the generated set leaves out
	// (Options.DropTransitions, or pruned as too rare).
	Kept bool `json:"kept"`
}
