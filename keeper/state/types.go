package state

import (
	"strings"
	"time"

	"github.com/koipond/koipond/wire"
)

// File is one source file of a behavior set or formation.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// BehaviorSet is a stored behavior set: its files and what identifies it.
// Sets are content-addressed (Hash) and versioned per Name: uploading new
// content under an existing name makes version N+1; uploading content that
// is already stored returns the stored set.
type BehaviorSet struct {
	Hash      string    `json:"hash"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Files     []File    `json:"files"`
	Behaviors int       `json:"behaviors"`
	Warnings  []string  `json:"warnings,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// Formation is a stored formation file, content-addressed and versioned
// per Name like BehaviorSet.
type Formation struct {
	Hash          string  `json:"hash"`
	Name          string  `json:"name"`
	Version       int     `json:"version"`
	File          File    `json:"file"`
	Percent       float64 `json:"percent"`
	BeginWithinMS int64   `json:"begin_within_ms"`
	Steps         int     `json:"steps"`
	// Params are the launch parameters the file declares (none when it
	// declares none).
	Params    []FormationParam `json:"params,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	CreatedBy string           `json:"created_by,omitempty"`
}

// FormationParam is a launch parameter a formation declares: a launch must
// give it when Required, else Default fills in.
type FormationParam struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
	Default  string `json:"default,omitempty"`
	Doc      string `json:"doc,omitempty"`
}

// RunState is what a run is doing.
type RunState string

// Run states. A stopped run is finished for good: its koi are gone and it
// cannot be resumed.
const (
	RunRunning RunState = "running"
	RunPaused  RunState = "paused"
	RunStopped RunState = "stopped"
)

// Target is where a run's koi go and who they are.
type Target struct {
	// APIBase is where api requests go; a run whose set sends none may
	// leave it empty.
	APIBase      string `json:"api_base"`
	WebsocketURL string `json:"websocket_url,omitempty"`
	// WebsocketSubprotocols are offered in the websocket handshake.
	WebsocketSubprotocols []string `json:"websocket_subprotocols,omitempty"`
	// WebsocketHeaders are added to the handshake; values are templates
	// over {{.Index}}, {{.Token}} and {{.UserID}}, rendered per koi.
	WebsocketHeaders map[string]string `json:"websocket_headers,omitempty"`
	Token            string            `json:"token,omitempty"`
	Tokens           []string          `json:"tokens,omitempty"`
	UserID           string            `json:"user_id,omitempty"`
}

// Where says where a run's koi go, for people: the API base, the websocket
// URL with its subprotocols, or both ("http://h/api and ws://h/ws (mqtt)");
// a target with neither gets its websocket URL from boot.
func (t Target) Where() string {
	var parts []string
	if t.APIBase != "" {
		parts = append(parts, t.APIBase)
	}
	if t.WebsocketURL != "" {
		ws := t.WebsocketURL
		if len(t.WebsocketSubprotocols) > 0 {
			ws += " (" + strings.Join(t.WebsocketSubprotocols, ", ") + ")"
		}
		parts = append(parts, ws)
	}
	if len(parts) == 0 {
		return "the websocket URL boot gives"
	}
	return strings.Join(parts, " and ")
}

// Switch is a switch position with the epoch that set it.
type Switch struct {
	State wire.State `json:"state"`
	Epoch uint64     `json:"epoch"`
	By    string     `json:"by,omitempty"`
	At    time.Time  `json:"at"`
}

// StopTrack follows a stop until every school that ran koi confirms it has
// none left (koi running = 0 and websockets closed).
type StopTrack struct {
	RequestedAt time.Time `json:"requested_at"`
	Epoch       uint64    `json:"epoch"`
	// Expected lists the schools that had to confirm.
	Expected []string `json:"expected"`
	// Acks maps a school to when its confirming poll arrived.
	Acks map[string]time.Time `json:"acks"`
	// CompleteAt is set once every expected school confirmed.
	CompleteAt time.Time `json:"complete_at,omitzero"`
	// Late lists schools that had not confirmed within the lease.
	Late []string `json:"late,omitempty"`
}

// Complete reports whether every expected school confirmed.
func (t *StopTrack) Complete() bool { return t != nil && !t.CompleteAt.IsZero() }

// DurationMS is how long the stop took, or 0 while incomplete.
func (t *StopTrack) DurationMS() int64 {
	if !t.Complete() {
		return 0
	}
	return t.CompleteAt.Sub(t.RequestedAt).Milliseconds()
}

// Run is a swarm of koi with one behavior set against one target. A run
// with DurationMS 0 is always-on.
type Run struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Owner         string            `json:"owner,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Target        Target            `json:"target"`
	BehaviorSet   string            `json:"behavior_set"`
	Koi           int               `json:"koi"`
	Ramp          float64           `json:"ramp"` // koi per second over the whole run
	TimeScale     float64           `json:"time_scale,omitempty"`
	ActivitySigma float64           `json:"activity_sigma,omitempty"`
	DurationMS    int64             `json:"duration_ms,omitempty"`
	State         RunState          `json:"state"`
	// Switch is the run's own switch (epoch from the global counter).
	Switch    Switch     `json:"switch"`
	CreatedAt time.Time  `json:"created_at"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   time.Time  `json:"ended_at,omitzero"`
	EndReason string     `json:"end_reason,omitempty"`
	Stop      *StopTrack `json:"stop,omitempty"`
	// Thresholds maps metric keys to conditions the run must meet (e.g.
	// "p95 < 300ms"), checked in its report.
	Thresholds map[string][]string `json:"thresholds,omitempty"`
	// Warnings are what the run's creation noticed without refusing it
	// (thresholds on metric keys the run may never report).
	Warnings []string `json:"warnings,omitempty"`
	// ThresholdWindowSecs is the sliding window live thresholds are
	// evaluated over (0: the default, 30 s).
	ThresholdWindowSecs int `json:"threshold_window_secs,omitempty"`
	// LiveThresholds records the live failures of the thresholds.
	LiveThresholds []LiveThreshold `json:"live_thresholds,omitempty"`
	// Guardrails are the run's own rules (see GuardrailRule).
	Guardrails []GuardrailRule `json:"guardrails,omitempty"`
	// ShedPercent is the share of Koi held back (partial shutdown):
	// schools run EffectiveKoi.
	ShedPercent float64 `json:"shed_percent,omitempty"`
	// GuardActions are the newest actions guardrails took on the run.
	GuardActions []GuardAction `json:"guard_actions,omitempty"`
	// Capacity makes the run a capacity search; CapacityResult follows it.
	Capacity       *CapacitySpec   `json:"capacity,omitempty"`
	CapacityResult *CapacityResult `json:"capacity_result,omitempty"`
	// Quarantine counts the run's school failures and says why the keeper
	// paused it (see Quarantine).
	Quarantine *Quarantine `json:"quarantine,omitempty"`
	// Trimmed says what the keeper left out of the record to keep it
	// within the NATS server's max_payload (one message per record).
	Trimmed []string `json:"trimmed,omitempty"`
}

// Active reports whether the run should have koi assigned.
func (r *Run) Active() bool { return r.State == RunRunning || r.State == RunPaused }

// Spec is what schools need to run the run's koi.
func (r *Run) Spec() wire.RunSpec {
	return wire.RunSpec{Name: r.Name, BehaviorSet: r.BehaviorSet, APIBase: r.Target.APIBase,
		WebsocketURL: r.Target.WebsocketURL, WebsocketSubprotocols: r.Target.WebsocketSubprotocols,
		WebsocketHeaders: r.Target.WebsocketHeaders, Token: r.Target.Token, Tokens: r.Target.Tokens,
		UserID: r.Target.UserID, TimeScale: r.TimeScale, ActivitySigma: r.ActivitySigma}
}

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
	// Offsets is the school's last wire.LaunchStatus.Offsets: its koi's
	// start offsets binned over the launch window.
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

// Planned reports whether the per-school counts are fixed.
func (l *Launch) Planned() bool { return !l.PlannedAt.IsZero() }

// SequenceKey is the metric key the launch's sequence is measured under
// (step N: SequenceKey:N); launches stored before per-launch keys used
// their formation's shared key.
func (l *Launch) SequenceKey() string {
	if l.MetricKey != "" {
		return l.MetricKey
	}
	return "formation:" + l.Name
}

// OwnsKey reports whether a metric key is the launch's sequence or one of
// its steps.
func (l *Launch) OwnsKey(key string) bool {
	k := l.SequenceKey()
	return key == k || (strings.HasPrefix(key, k) && strings.HasPrefix(key[len(k):], ":"))
}

// School is a worker process as the keeper knows it. The heartbeat fields
// (LastSeen, ClockOffsetMS, Status) change every poll and are kept in memory
// only; the record is persisted when a school first registers, when its
// capacity or software changes, and now and then while it polls (so that a
// restarted keeper knows roughly when it was last seen): a restarted
// keeper knows its schools and gives those holding koi a lease from the
// restart.
type School struct {
	ID            string    `json:"id"`
	Software      string    `json:"software,omitempty"`
	Capacity      int       `json:"capacity"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	ClockOffsetMS float64   `json:"clock_offset_ms"`
	// Status is what the keeper keeps of the school's last poll; nil until
	// the school polls (after a restart too).
	Status *SchoolStatus `json:"status,omitempty"`
}

// SchoolStatus is what the keeper keeps of a school's last poll: its
// totals and the runs the keeper follows, never the poll itself. A poll
// may be megabytes (a thousand runs and launches, each with text up to
// wire.MaxText); a SchoolStatus is bounded by what the keeper made: one
// entry per run of the keeper's that the school holds koi of, or that is
// active or stopping, with the keeper's own run id, short text and no
// memory-pressure detail (the quarantine reads that from the poll). Its
// JSON keys are the poll's, minus the launches (the launches' own records
// carry what schools report of them).
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

// Count is the number of koi in the range.
func (a *Assignment) Count() int { return a.To - a.From }

// GlobalSwitch is the switch over every koi, with the tracking of its last
// stop.
type GlobalSwitch struct {
	Switch
	Stop *StopTrack `json:"stop,omitempty"`
}

// AuditEntry records who changed what.
type AuditEntry struct {
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Object string    `json:"object,omitempty"`
	Detail string    `json:"detail,omitempty"`
}
