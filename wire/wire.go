// Package wire is the keeper ↔ school contract: NATS subjects and the
// messages sent on them. It depends on nothing but the standard library.
//
// Every message is JSON and carries V, the contract version. Receivers
// ignore unknown fields (so a newer sender can add fields without a version
// bump) and reject a V they do not know (Decode returns ErrVersion), which
// they count and log instead of acting on it.
//
// Times are RFC 3339 with nanoseconds; durations are integer milliseconds
// in fields named …MS.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the contract version this package speaks.
const Version = 1

// Subjects.
const (
	// SubjectPoll is request/reply: a school sends PollRequest, the keeper
	// answers PollReply.
	SubjectPoll = "koipond.poll"
	// SubjectControl carries Control messages (publish): the switch, for
	// instant pause/resume/stop. Schools apply the highest epoch they have
	// seen, from here or from a poll reply.
	SubjectControl = "koipond.control"
	// SubjectMetrics carries MetricsReport messages (publish), one per
	// school per interval.
	SubjectMetrics = "koipond.metrics"
	// SubjectBlob is request/reply: a school fetches a behavior set or a
	// formation by content hash (BlobRequest → BlobReply) and caches it.
	SubjectBlob = "koipond.blob"
)

// ErrVersion is returned by Decode for a message of an unknown version.
var ErrVersion = errors.New("wire: unknown message version")

// ErrMalformed is returned by Decode for bytes that are not a message.
var ErrMalformed = errors.New("wire: malformed message")

// MaxMessage is the largest message a receiver accepts (NATS's default
// max payload is 1 MiB; blobs may be larger on servers configured so).
const MaxMessage = 64 << 20

// Message is implemented by every message type of this package (and only
// by them: the methods come from the embedded Header).
type Message interface {
	version() int
	stamp()
}

// Encode marshals a message, stamping its version.
func Encode(m Message) ([]byte, error) {
	m.stamp()
	return json.Marshal(m)
}

// Decode unmarshals a message and checks its version. Unknown fields are
// ignored.
func Decode(data []byte, m Message) error {
	if len(data) > MaxMessage {
		return fmt.Errorf("%w: %d bytes", ErrMalformed, len(data))
	}
	if err := json.Unmarshal(data, m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if v := m.version(); v < 1 || v > Version {
		return fmt.Errorf("%w: v%d (this side speaks v1..v%d)", ErrVersion, v, Version)
	}
	return nil
}

// Header is embedded in every message.
type Header struct {
	V int `json:"v"`
}

func (h *Header) version() int { return h.V }
func (h *Header) stamp()       { h.V = Version }

// State is a switch position.
type State string

// The switch positions. Running is the zero value's meaning too.
const (
	Running State = "running"
	// Paused: koi keep their websockets, send nothing; in-flight sequences
	// abort at once.
	Paused State = "paused"
	// Stopped: every sequence aborts and every websocket closes.
	Stopped State = "stopped"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool { return s == Running || s == Paused || s == Stopped }

// Control is the switch: globally (Run == "") or for one run. Epoch is
// monotonic across every switch change the keeper makes; a receiver applies
// a Control only if its epoch is higher than the last it applied for that
// scope.
type Control struct {
	Header
	Epoch uint64    `json:"epoch"`
	State State     `json:"state"`
	Run   string    `json:"run,omitempty"`
	By    string    `json:"by,omitempty"`
	At    time.Time `json:"at"`
	// Sig is the keeper's ed25519 signature over SigningBytes (sign.go);
	// schools ignore a Control without a valid one.
	Sig []byte `json:"sig,omitempty"`
}

// PollRequest is what a school tells the keeper every poll.
type PollRequest struct {
	Header
	School   string `json:"school"`
	Software string `json:"software"` // koipond version
	Capacity int    `json:"capacity"` // koi this school may run
	// Clock is the school's clock when it sent the request.
	Clock time.Time `json:"clock"`
	// Epoch is the highest global switch epoch the school has applied.
	Epoch uint64 `json:"epoch"`
	// SelfPaused is true while the school has paused itself because its
	// lease expired.
	SelfPaused bool `json:"self_paused,omitempty"`
	// OffsetMS is the school's estimate of keeper clock − school clock.
	OffsetMS float64 `json:"offset_ms"`
	// Runs and Launches hold each run and launch once.
	Runs     []RunStatus    `json:"runs,omitempty"`
	Launches []LaunchStatus `json:"launches,omitempty"`
	// KoiRunning and WebsocketsOpen over all runs: both 0 confirms a stop.
	KoiRunning     int `json:"koi_running"`
	WebsocketsOpen int `json:"websockets_open"`
}

// KoiCounts counts a run's koi on one school by state.
type KoiCounts struct {
	Booting      int `json:"booting"`
	Connected    int `json:"connected"`
	Reconnecting int `json:"reconnecting"`
	Failed       int `json:"failed"`
	Paused       int `json:"paused"`
}

// RunStatus is one run's state on one school.
type RunStatus struct {
	Run    string    `json:"run"`
	From   int       `json:"from"` // assigned koi index range [From, To)
	To     int       `json:"to"`
	Target int       `json:"target"` // koi the school means to run now
	Koi    KoiCounts `json:"koi"`
	// Epoch is the run switch epoch the school applied.
	Epoch uint64 `json:"epoch"`
	// Refused says why the school will not run the assignment (target
	// not allowed, broken behavior set); empty when accepted.
	Refused string `json:"refused,omitempty"`
	// Pressure says why the school has closed the run's koi to stay under
	// its memory ceiling; empty otherwise. PressureAt (school clock) is
	// when that episode began: the keeper counts each episode once.
	Pressure   string    `json:"pressure,omitempty"`
	PressureAt time.Time `json:"pressure_at,omitzero"`
}

// LaunchStatus reports what a school did with a launch. Of Planned koi,
// Started have begun the sequence, Finished did every step, Failed
// stopped at a failing step, and Cancelled will not finish (aborted by a
// pause or stop, or never started because not connected). The keeper
// refuses counts that add up to more than Planned.
type LaunchStatus struct {
	Launch    string `json:"launch"`
	Planned   int    `json:"planned"`
	Started   int    `json:"started"`
	Finished  int    `json:"finished,omitempty"`
	Failed    int    `json:"failed,omitempty"`
	Cancelled int    `json:"cancelled,omitempty"`
	Error     string `json:"error,omitempty"`
	// FirstStart and LastStart are when the school's first and last koi
	// actually began the sequence, in keeper time (zero until one has).
	FirstStart time.Time `json:"first_start,omitzero"`
	LastStart  time.Time `json:"last_start,omitzero"`
	// Offsets, when set, has LaunchOffsetBins counts: bin i holds the koi
	// whose sequence really began in [i, i+1)/LaunchOffsetBins of the
	// launch's window (Launch.At to At + BeginWithin); a start past the
	// window counts in the last bin. Its sum is at most Started.
	Offsets []uint32 `json:"offsets,omitempty"`
}

// LaunchOffsetBins is the length of LaunchStatus.Offsets: the resolution
// of the launch uniformity check (Kolmogorov–Smirnov on binned offsets).
const LaunchOffsetBins = 64

// PollReply is the keeper's answer.
type PollReply struct {
	Header
	// Switch is the global switch (Run empty).
	Switch Control `json:"switch"`
	// KeeperTime is the keeper's clock when it replied.
	KeeperTime     time.Time `json:"keeper_time"`
	PollIntervalMS int64     `json:"poll_interval_ms"`
	LeaseMS        int64     `json:"lease_ms"`
	// Assignments is everything the school should run; a run missing from
	// it is to be stopped on this school.
	Assignments []Assignment `json:"assignments"`
	// Launches pending or running that involve this school.
	Launches []Launch `json:"launches,omitempty"`
	// Error is set when the keeper could not handle the request.
	Error string `json:"error,omitempty"`
	// KeeperKey is the public key (an nkey, "U…") the switches are signed
	// with (sign.go).
	KeeperKey string `json:"keeper_key,omitempty"`
}

// Assignment is a range of a run's koi for one school.
type Assignment struct {
	Run  string  `json:"run"`
	Spec RunSpec `json:"spec"`
	From int     `json:"from"` // koi indices [From, To)
	To   int     `json:"to"`
	// Ramp is this school's share of the run's ramp, koi per second.
	Ramp float64 `json:"ramp"`
	// Switch is the run's own switch (State empty or running: go).
	Switch Control `json:"switch"`
}

// RunSpec is what every koi of a run needs to know.
type RunSpec struct {
	Name string `json:"name"`
	// BehaviorSet is the content hash of the run's behavior set.
	BehaviorSet string `json:"behavior_set"`
	// APIBase is the base URL of api requests (e.g. http://127.0.0.1:9090/api).
	APIBase string `json:"api_base"`
	// WebsocketURL, if set, is where koi connect (else the boot sequence
	// says).
	WebsocketURL string `json:"websocket_url,omitempty"`
	// WebsocketSubprotocols are offered in the websocket handshake.
	WebsocketSubprotocols []string `json:"websocket_subprotocols,omitempty"`
	// WebsocketHeaders are added to the websocket handshake; a value is a
	// template over {{.Index}}, {{.Token}} and {{.UserID}}, rendered per
	// koi like Token.
	WebsocketHeaders map[string]string `json:"websocket_headers,omitempty"`
	// Token is a Go template over {{.Index}} giving koi i's token (e.g.
	// "xoxp-pond-{{.Index}}"); Tokens, if given, lists them instead.
	Token  string   `json:"token,omitempty"`
	Tokens []string `json:"tokens,omitempty"`
	// UserID is a template over {{.Index}} for koi i's user id (optional).
	UserID string `json:"user_id,omitempty"`
	// TimeScale speeds behavior time up (1 = real time).
	TimeScale float64 `json:"time_scale,omitempty"`
	// ActivitySigma spreads light and heavy users (lognormal σ, mean 1).
	ActivitySigma float64 `json:"activity_sigma,omitempty"`
}

// Launch is a formation start involving a school.
type Launch struct {
	ID  string `json:"id"`
	Run string `json:"run"`
	// Formation is the content hash of the formation file.
	Formation string            `json:"formation"`
	Name      string            `json:"name"`
	Params    map[string]string `json:"params,omitempty"`
	// Start is the launch instant in keeper time; schools convert it with
	// their clock offset.
	Start time.Time `json:"start"`
	// BeginWithinMS is the window (before the run's time scale).
	BeginWithinMS int64 `json:"begin_within_ms"`
	// Count is how many of this school's connected koi of the run start.
	Count int `json:"count"`
	// MetricKey is the key the sequence is measured under (steps:
	// MetricKey:N); empty means "formation:" + Name.
	MetricKey string `json:"metric_key,omitempty"`
}

// BlobKind names what a blob is.
type BlobKind string

// Blob kinds.
const (
	BlobBehaviorSet BlobKind = "behavior_set"
	BlobFormation   BlobKind = "formation"
)

// BlobRequest asks for content by hash.
type BlobRequest struct {
	Header
	Kind BlobKind `json:"kind"`
	Hash string   `json:"hash"`
}

// File is one source file of a blob.
type File struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// BlobReply carries the files whose content has the requested hash.
type BlobReply struct {
	Header
	Kind  BlobKind `json:"kind"`
	Hash  string   `json:"hash"`
	Files []File   `json:"files,omitempty"`
	Error string   `json:"error,omitempty"`
}

// MetricsReport is one school's observations over one interval, of some
// or all of its runs: an interval whose runs do not fit one NATS message
// is sent as several reports with the same Start and End, each run in
// one of them, each report with its own Seq.
type MetricsReport struct {
	Header
	School string       `json:"school"`
	Seq    uint64       `json:"seq"` // increments per report, to spot gaps
	Start  time.Time    `json:"start"`
	End    time.Time    `json:"end"`
	Runs   []RunMetrics `json:"runs"` // each run once
}

// RunMetrics is one run's snapshot in a report.
type RunMetrics struct {
	Run string `json:"run"`
	// Snapshot is a metrics.Snapshot in its binary encoding.
	Snapshot []byte    `json:"snapshot"`
	Koi      KoiCounts `json:"koi"`
	// Websocket traffic over the interval.
	FramesIn  uint64 `json:"frames_in"`
	FramesOut uint64 `json:"frames_out"`
	BytesIn   uint64 `json:"bytes_in"`
	BytesOut  uint64 `json:"bytes_out"`
}

// Duration converts a …MS field.
func Duration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// MS converts a duration for a …MS field.
func MS(d time.Duration) int64 { return d.Milliseconds() }
