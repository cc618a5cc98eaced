package api

import (
	"context"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// The contract with clients: the request and view types the API's JSON
// has, under the names the CLI and the UI's tests use. Each is an alias
// of its keeper/contract type, which the handlers answer and decode
// (convert.go turns the keeper's stored and live values into them and
// back), so a stored field's Go name is no longer a client's; a client
// imports this package or keeper/contract, never keeper/state or the
// keeper's internals.

// Requests.
type (
	// RunSpec is the body of POST /api/v1/runs.
	RunSpec = contract.RunSpec
	// RunPatch is the body of PATCH /api/v1/runs/:id.
	RunPatch = contract.RunPatch
	// LaunchSpec is a formation launch as the keeper takes it.
	LaunchSpec = contract.LaunchSpec
	// WebhookSpec is the body of POST and PUT /api/v1/webhooks.
	WebhookSpec = contract.WebhookSpec
	// TriggerSpec is the body of POST and PUT /api/v1/triggers.
	TriggerSpec = contract.TriggerSpec
	// GuardrailRule is one guardrail (a run's or a global one).
	GuardrailRule = contract.GuardrailRule
	// CapacitySpec asks a run to search for the target's capacity.
	CapacitySpec = contract.CapacitySpec
	// Target is where a run's koi go.
	Target = contract.Target
)

// Views.
type (
	// Run is a stored run.
	Run = contract.Run
	// RunView is a run with where its koi are and how they are doing.
	RunView = contract.RunView
	// GuardView holds a run's effective koi, live thresholds and guardrails.
	GuardView = contract.GuardView
	// LiveThresholdView is a threshold's live evaluation on a run.
	LiveThresholdView = contract.LiveThresholdView
	// GuardrailView is a guardrail's latest evaluation on a run.
	GuardrailView = contract.GuardrailView
	// GuardrailsView is the global guardrails with what storing them noticed.
	GuardrailsView = contract.GuardrailsView
	// MetricsSummary is a run's metrics over a window.
	MetricsSummary = contract.MetricsSummary
	// KeySummary is one metric key's summary.
	KeySummary = contract.KeySummary
	// Report is a run's final (or current) report.
	Report = contract.Report
	// CapacityResult is a capacity search's outcome.
	CapacityResult = contract.CapacityResult
	// CapacityFlatten is a capacity step's latency growth on one key.
	CapacityFlatten = contract.CapacityFlatten
	// Comparison is a report compared with a baseline's.
	Comparison = contract.Comparison
	// Launch is a formation launch.
	Launch = contract.Launch
	// Formation is a stored formation.
	Formation = contract.Formation
	// School is a registered school.
	School = contract.School
	// SchoolView is a school with its health and assignments.
	SchoolView = contract.SchoolView
	// Assignment is a range of a run's koi held by a school.
	Assignment = contract.Assignment
	// GlobalSwitch is the global switch.
	GlobalSwitch = contract.GlobalSwitch
	// SwitchView is the global switch with its stop confirmation.
	SwitchView = contract.SwitchView
	// Status is the keeper at a glance.
	Status = contract.Status
	// WebhookView is a webhook as the API shows it.
	WebhookView = contract.WebhookView
	// DeliveryAttempt is one try to deliver a notice to a webhook.
	DeliveryAttempt = contract.DeliveryAttempt
	// TriggerView is a trigger as the API shows it.
	TriggerView = contract.TriggerView
	// TriggerResult is what a trigger call did.
	TriggerResult = contract.TriggerResult
)

// Run states, live states and comparison verdicts the views carry.
const (
	RunStopped = contract.RunStopped

	LivePass   = contract.LivePass
	LiveFail   = contract.LiveFail
	LiveNoData = contract.LiveNoData
	LiveIdle   = contract.LiveIdle

	VerdictSame      = contract.VerdictSame
	VerdictImproved  = contract.VerdictImproved
	VerdictRegressed = contract.VerdictRegressed
	VerdictNew       = contract.VerdictNew
	VerdictGone      = contract.VerdictGone
)

// Signature headers of webhook deliveries and trigger calls.
const (
	HeaderTimestamp = notify.HeaderTimestamp
	HeaderSignature = notify.HeaderSignature
)

// Sign returns the X-Koipond-Signature value of body sent at ts (unix
// seconds) under secret.
func Sign(secret string, ts int64, body []byte) string { return notify.Sign(secret, ts, body) }

// ParseTolerance parses a comparison's relative tolerance ("10%", "0.1").
func ParseTolerance(s string) (float64, error) { return verdict.ParseTolerance(s) }

// ParseErrorTolerance parses a comparison's error-rate tolerance in
// percentage points ("0.5pp").
func ParseErrorTolerance(s string) (float64, error) { return verdict.ParseErrorTolerance(s) }

// Defaults a client shares with the keeper: where its data and its KV
// bucket are unless told otherwise.
const (
	DefaultDataDir = keeper.DefaultDataDir
	DefaultBucket  = keeper.DefaultBucket
)

// CredentialFiles are the keeper's NATS credential files in its data
// directory.
type CredentialFiles = keeper.CredentialFiles

// CredentialPaths returns where a keeper with data directory dataDir
// keeps its NATS credentials.
func CredentialPaths(dataDir string) CredentialFiles { return keeper.CredentialPaths(dataDir) }

// SignSwitch signs a switch with the control seed in controlSeedFile, as
// the keeper does (schools ignore an unsigned switch).
func SignSwitch(controlSeedFile string, c *wire.Control) error {
	return keeper.SignSwitch(controlSeedFile, c)
}

// RecordEmergencySwitch moves the global switch in the keeper's KV bucket
// without the keeper (the emergency path when its API is down), so the
// epoch is the highest and a restarted keeper keeps it. It returns the
// switch as recorded.
func RecordEmergencySwitch(ctx context.Context, js jetstream.JetStream, bucket string, st wire.State, by string) (epoch uint64, at time.Time, err error) {
	kv, err := state.OpenExistingKV(ctx, js, bucket)
	if err != nil {
		return 0, time.Time{}, err
	}
	g, err := state.EmergencySwitch(ctx, kv, st, by)
	if err != nil {
		return 0, time.Time{}, err
	}
	return g.Epoch, g.At, nil
}
