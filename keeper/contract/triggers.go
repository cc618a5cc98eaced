package contract

import (
	"encoding/json"
	"time"
)

// TriggerSpec is what a caller gives to add or replace a trigger.
type TriggerSpec struct {
	Name string `json:"name"`
	// Secret keys call signatures; required for a new trigger; on a
	// replace nil keeps the stored one.
	Secret  *string         `json:"secret,omitempty"`
	Actions []TriggerAction `json:"actions"`
}

// TriggerView is a trigger as the API shows it: never its secret, with
// its call counts since the keeper started.
type TriggerView struct {
	Name      string            `json:"name"`
	Actions   []TriggerAction   `json:"actions"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"`
	UpdatedAt time.Time         `json:"updated_at"`
	Accepted  uint64            `json:"accepted"`
	Refused   map[string]uint64 `json:"refused"`
}

// TriggerRun is a run a trigger call started.
type TriggerRun struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// TriggerLaunched is a launch a trigger call scheduled.
type TriggerLaunched struct {
	ID    string    `json:"id"`
	Run   string    `json:"run"`
	Start time.Time `json:"start"`
}

// ActionError says why one action of a call could not be done.
type ActionError struct {
	Action  int    `json:"action"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// TriggerResult answers a trigger call with what it started.
type TriggerResult struct {
	Trigger  string            `json:"trigger"`
	Event    string            `json:"event,omitempty"`
	Matched  []int             `json:"matched"`
	Runs     []TriggerRun      `json:"runs"`
	Launches []TriggerLaunched `json:"launches"`
	Note     string            `json:"note,omitempty"`
	// Errors lists the actions that could not be done; then the call
	// answers 422 and (when they were found before anything started)
	// nothing was started.
	Errors []ActionError `json:"errors,omitempty"`
}

// TriggerAction is one thing a trigger does when every Match label is in
// the call's labels: start a run (Run, a run spec whose strings are
// templates over the call's payload) or launch a formation (Launch).
type TriggerAction struct {
	Match  map[string]string `json:"match,omitempty"`
	Run    json.RawMessage   `json:"run,omitempty"`
	Launch *TriggerLaunch    `json:"launch,omitempty"`
}

// TriggerLaunch launches a formation over every active run carrying
// RunLabels, AtSecs after the call. Label and parameter values are
// templates over the call's payload.
type TriggerLaunch struct {
	Formation string            `json:"formation"`
	RunLabels map[string]string `json:"run_labels,omitempty"`
	AtSecs    float64           `json:"at_secs,omitempty"`
	Params    map[string]string `json:"params,omitempty"`
}
