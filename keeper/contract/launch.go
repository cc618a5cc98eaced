package contract

import (
	"time"

	"github.com/koipond/koipond/wire"
)

// LaunchState is where a launch is in its life.
type LaunchState string

// Launch states: pending → running → done, or cancelled from pending or
// running.
const (
	LaunchPending   LaunchState = "pending"
	LaunchRunning   LaunchState = "running"
	LaunchDone      LaunchState = "done"
	LaunchCancelled LaunchState = "cancelled"
)

// Share is one school's part of a launch. Of its Count koi, Started have
// begun the sequence (its first step), Finished did every step, Failed
// stopped at a failing step, and Cancelled will not finish: aborted by a
// pause or stop, or never started (not connected on the school at the
// launch). The share is settled when Finished + Failed + Cancelled = Count.
type Share struct {
	School    string `json:"school"`
	Count     int    `json:"count"`
	Started   int    `json:"started"`
	Finished  int    `json:"finished"`
	Failed    int    `json:"failed"`
	Cancelled int    `json:"cancelled"`
	// Reported is true once the school said what it started.
	Reported bool   `json:"reported"`
	Error    string `json:"error,omitempty"`
	// FirstStart and LastStart are when the school's koi really began.
	FirstStart time.Time `json:"first_start,omitzero"`
	LastStart  time.Time `json:"last_start,omitzero"`
	// Offsets counts the school's koi by start offset over the launch
	// window, in 64 equal bins (absent until reported).
	Offsets []uint32 `json:"offsets,omitempty"`
}

// Launch is a formation started at one instant over a run's connected koi.
type Launch struct {
	ID            string            `json:"id"`
	Run           string            `json:"run"`
	Formation     string            `json:"formation"` // content hash
	Name          string            `json:"name"`
	Params        map[string]string `json:"params,omitempty"`
	Start         time.Time         `json:"start"`
	BeginWithinMS int64             `json:"begin_within_ms"`
	State         LaunchState       `json:"state"`
	// PlannedAt is when the per-school counts were fixed (zero: not yet).
	PlannedAt time.Time `json:"planned_at,omitzero"`
	// Connected is the run's connected koi when planned; Count the koi
	// that start (percent × Connected rounded half up).
	Connected int     `json:"connected"`
	Count     int     `json:"count"`
	Shares    []Share `json:"shares,omitempty"`
	// Started, Finished, Failed and Cancelled sum the shares' counts.
	Started   int `json:"started"`
	Finished  int `json:"finished"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	// MetricKey is the key the launch's own sequence is measured under,
	// and MetricKey:N its step N: "formation:<name>#<launch id>" while the
	// run has room for per-launch keys (maxLaunchKeys), else the
	// formation's shared "formation:<name>". Every launch is also counted
	// under the shared keys, which thresholds and comparisons name.
	MetricKey string `json:"metric_key,omitempty"`
	// FirstStart and LastStart span the real starts over every school;
	// their difference is the launch's start spread.
	FirstStart time.Time `json:"first_start,omitzero"`
	LastStart  time.Time `json:"last_start,omitzero"`
	Outcome    string    `json:"outcome,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	CreatedBy  string    `json:"created_by,omitempty"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
}

// School is a worker process as the keeper knows it. The heartbeat fields
// (LastSeen, ClockOffsetMS, Status) change every poll; a restarted keeper
// knows its schools (and roughly when each was last seen), and gives
// those holding koi a lease from the restart. A school lost for a day
// (the keeper's school expiry) that holds no koi is forgotten.
type School struct {
	ID            string    `json:"id"`
	Software      string    `json:"software,omitempty"`
	Capacity      int       `json:"capacity"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	ClockOffsetMS float64   `json:"clock_offset_ms"`
	// Status is what the keeper keeps of the school's last poll; absent
	// until the school has polled this keeper.
	Status *SchoolStatus `json:"status,omitempty"`
}

// SchoolStatus is what the keeper keeps of a school's last poll, under
// the poll's own keys: its totals, and its report on each run the keeper
// follows (the runs it holds koi of, and those active or stopping), with
// a refusal reason only for a run it holds, clipped. A poll's launches
// are not kept: the launches' own records carry what schools report.
type SchoolStatus struct {
	wire.Header
	School         string           `json:"school"`
	Software       string           `json:"software"`
	Capacity       int              `json:"capacity"`
	Clock          time.Time        `json:"clock"`
	Epoch          uint64           `json:"epoch"`
	SelfPaused     bool             `json:"self_paused,omitempty"`
	OffsetMS       float64          `json:"offset_ms"`
	Runs           []wire.RunStatus `json:"runs,omitempty"`
	KoiRunning     int              `json:"koi_running"`
	WebsocketsOpen int              `json:"websockets_open"`
}

// Assignment gives a school a contiguous range [From, To) of a run's koi.
type Assignment struct {
	Run    string  `json:"run"`
	School string  `json:"school"`
	From   int     `json:"from"`
	To     int     `json:"to"`
	Ramp   float64 `json:"ramp"`
}

// GlobalSwitch is the switch over every koi, with the tracking of its last
// stop.
type GlobalSwitch struct {
	Switch
	Stop *StopTrack `json:"stop,omitempty"`
}

// Planned reports whether the per-school counts are fixed.
func (l *Launch) Planned() bool { return !l.PlannedAt.IsZero() }
