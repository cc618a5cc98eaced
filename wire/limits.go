package wire

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Bounds of every inbound field. A receiver calls a message's Validate
// after Decode and before acting on it: Decode only checks the shape, a
// peer that lies (or a stranger on the bus) can still send any number.
const (
	// MaxSchoolID is the longest school id. Ids become NATS KV keys, log
	// fields and UI labels; 128 characters leave room for a host name, a
	// pid and a random suffix.
	MaxSchoolID = 128
	// MaxID is the longest run, launch, formation or blob hash id.
	MaxID = 128
	// MaxCapacity is the most koi one school may offer.
	MaxCapacity = 1_000_000
	// MaxKoi is the most koi of one run (the keeper's own limit), so the
	// bound of every koi index and count.
	MaxKoi = 10_000_000
	// MaxRunsPerMessage bounds the runs in a poll, a reply or a report.
	MaxRunsPerMessage = 1000
	// MaxLaunchesPerMessage bounds the launches in a poll or a reply.
	MaxLaunchesPerMessage = 1000
	// MaxSnapshot is the largest encoded metrics snapshot of one run.
	MaxSnapshot = 4 << 20
	// MaxTraffic bounds a report's frame and byte counters for one
	// interval (a petabyte: beyond anything real, far from wrapping
	// when summed).
	MaxTraffic = 1 << 50
	// MaxText bounds free-text fields: errors, refusal reasons, names.
	MaxText = 2048
	// MaxTemplate bounds a run spec's URLs and templates.
	MaxTemplate = 8192
	// MaxWebsocketHeaders bounds a run spec's websocket handshake headers.
	MaxWebsocketHeaders = 64
	// MaxSubprotocols bounds a run spec's websocket subprotocols.
	MaxSubprotocols = 32
	// MaxParams bounds a launch's parameters.
	MaxParams = 256
	// MaxFiles bounds the files of a blob.
	MaxFiles = 1000
	// MaxClockOffset bounds a school's clock offset estimate: a clock a
	// week off is broken, not skewed.
	MaxClockOffset = 7 * 24 * time.Hour
	// MaxInterval bounds the poll interval, lease and launch windows a
	// keeper sends.
	MaxInterval = 24 * time.Hour
)

// earliest and latest bound every non-zero timestamp on the wire.
var (
	earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	latest   = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ErrInvalid is wrapped by every Validate error: a field outside its
// bounds.
var ErrInvalid = errors.New("wire: invalid message")

// FieldError is a field outside its bounds. Field names the field without
// list indices (e.g. "runs.koi.connected"), so that it can key a
// rejection counter; Problem says what is wrong, quoting at most a short
// prefix of the value.
type FieldError struct {
	Field   string
	Problem string
}

// Error implements error.
func (e *FieldError) Error() string { return "wire: " + e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// checker collects the first problem of a message. prefix is put before
// field names only when a problem is found (so that a valid message costs
// no allocation).
type checker struct {
	err    *FieldError
	prefix string
}

func (c *checker) fail(field, format string, args ...any) {
	if c.err == nil {
		c.err = &FieldError{Field: c.prefix + field, Problem: fmt.Sprintf(format, args...)}
	}
}

// within runs f with prefix put before every field it names.
func (c *checker) within(prefix string, f func()) {
	saved := c.prefix
	c.prefix += prefix
	f()
	c.prefix = saved
}

func (c *checker) result() error {
	if c.err == nil {
		return nil
	}
	return c.err
}

// quote returns a short, printable prefix of s for an error message.
func quote(s string) string {
	const n = 32
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func (c *checker) count(field string, n, limit int) {
	if n < 0 || n > limit {
		c.fail(field, "%d is outside 0..%d", n, limit)
	}
}

// items checks a list's length; what names its items in the message.
func (c *checker) items(field, what string, n, limit int) {
	if n > limit {
		c.fail(field, "%d %s, more than %d", n, what, limit)
	}
}

// once checks that id is not in seen, and adds it: a school's status
// of a run or a launch comes once per message (the keeper would count a
// repeated one again, and write it again).
func (c *checker) once(field, id string, seen map[string]bool) {
	if seen[id] {
		c.fail(field, "%s given twice", quote(id))
	}
	seen[id] = true
}

// span checks a koi index range [from, to).
func (c *checker) span(fromField, toField string, from, to int) {
	c.count(fromField, from, MaxKoi)
	c.count(toField, to, MaxKoi)
	if to < from {
		c.fail(toField, "range [%d, %d) is reversed", from, to)
	}
}

func (c *checker) text(field, s string, limit int) {
	if len(s) > limit {
		c.fail(field, "%d bytes, more than %d", len(s), limit)
	}
}

func (c *checker) id(field, s string, required bool) {
	switch {
	case s == "" && required:
		c.fail(field, "missing")
	case len(s) > MaxID:
		c.fail(field, "%s is longer than %d bytes", quote(s), MaxID)
	}
}

func (c *checker) time(field string, t time.Time, required bool) {
	switch {
	case t.IsZero():
		if required {
			c.fail(field, "missing")
		}
	case t.Before(earliest) || !t.Before(latest):
		c.fail(field, "%s is outside %d..%d", t.Format(time.RFC3339), earliest.Year(), latest.Year()-1)
	}
}

func (c *checker) ms(field string, ms int64, limit time.Duration) {
	if ms < 0 || ms > limit.Milliseconds() {
		c.fail(field, "%d ms is outside 0..%d", ms, limit.Milliseconds())
	}
}

func (c *checker) finite(field string, f, limit float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < -limit || f > limit {
		c.fail(field, "%g is outside ±%g", f, limit)
	}
}

// CheckSchoolID reports whether id may name a school: 1..MaxSchoolID
// characters from A-Z a-z 0-9 . _ - starting with a letter or digit. The
// school checks its configured id with it; the keeper every poll's and
// report's.
func CheckSchoolID(id string) error {
	var c checker
	c.schoolID("school", id)
	return c.result()
}

func (c *checker) schoolID(field, id string) {
	if id == "" {
		c.fail(field, "missing school id")
		return
	}
	if len(id) > MaxSchoolID {
		c.fail(field, "school id %s is longer than %d characters", quote(id), MaxSchoolID)
		return
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
		if !alnum && (i == 0 || b != '.' && b != '_' && b != '-') {
			c.fail(field, "school id %s: only letters, digits, '.', '_' and '-' (not first) are allowed", quote(id))
			return
		}
	}
}

// Validate checks every field of a switch message against its bounds.
func (m *Control) Validate() error {
	var c checker
	m.check(&c)
	return c.result()
}

func (m *Control) check(c *checker) {
	if m.State != "" && !m.State.Valid() {
		c.fail("state", "unknown state %s", quote(string(m.State)))
	}
	c.id("run", m.Run, false)
	c.text("by", m.By, MaxText)
	c.time("at", m.At, false)
	if m.Epoch > MaxEpoch {
		c.fail("epoch", "%d is above %d", m.Epoch, uint64(MaxEpoch))
	}
	if m.Sig != nil && len(m.Sig) != SignatureSize {
		c.fail("sig", "%d bytes, want %d", len(m.Sig), SignatureSize)
	}
}

// Validate checks every field of a poll against its bounds.
func (m *PollRequest) Validate() error {
	var c checker
	c.schoolID("school", m.School)
	c.text("software", m.Software, MaxText)
	c.count("capacity", m.Capacity, MaxCapacity)
	c.time("clock", m.Clock, false)
	c.finite("offset_ms", m.OffsetMS, float64(MaxClockOffset.Milliseconds()))
	c.count("koi_running", m.KoiRunning, MaxKoi)
	c.count("websockets_open", m.WebsocketsOpen, MaxKoi)
	c.items("runs", "runs", len(m.Runs), MaxRunsPerMessage)
	seen := make(map[string]bool, len(m.Runs))
	for i := range m.Runs {
		if c.err != nil {
			break
		}
		r := &m.Runs[i]
		c.id("runs.run", r.Run, true)
		c.once("runs.run", r.Run, seen)
		c.span("runs.from", "runs.to", r.From, r.To)
		c.count("runs.target", r.Target, MaxKoi)
		c.within("runs.koi.", func() { r.Koi.check(&c) })
		c.text("runs.refused", r.Refused, MaxText)
		c.text("runs.pressure", r.Pressure, MaxText)
		c.time("runs.pressure_at", r.PressureAt, false)
	}
	c.items("launches", "launches", len(m.Launches), MaxLaunchesPerMessage)
	clear(seen)
	for i := range m.Launches {
		if c.err != nil {
			break
		}
		l := &m.Launches[i]
		c.id("launches.launch", l.Launch, true)
		c.once("launches.launch", l.Launch, seen)
		c.count("launches.planned", l.Planned, MaxKoi)
		c.count("launches.started", l.Started, MaxKoi)
		c.count("launches.finished", l.Finished, MaxKoi)
		c.count("launches.failed", l.Failed, MaxKoi)
		c.count("launches.cancelled", l.Cancelled, MaxKoi)
		c.text("launches.error", l.Error, MaxText)
		c.time("launches.first_start", l.FirstStart, false)
		c.time("launches.last_start", l.LastStart, false)
		c.offsets("launches.offsets", l.Offsets, l.Started)
	}
	return c.result()
}

// offsets checks a launch's start-offset bins (CheckLaunchOffsets).
func (c *checker) offsets(field string, bins []uint32, started int) {
	if err := CheckLaunchOffsets(bins, started); err != nil {
		c.fail(field, "%v", err)
	}
}

// CheckLaunchOffsets returns why bins cannot be the start-offset bins
// (LaunchStatus.Offsets) of a launch that started koi, or nil: there must
// be none, or exactly LaunchOffsetBins counts adding up to at most
// started (a bin cannot hold a koi that never began).
func CheckLaunchOffsets(bins []uint32, started int) error {
	if len(bins) == 0 {
		return nil
	}
	if len(bins) != LaunchOffsetBins {
		return fmt.Errorf("%d bins, want %d or none", len(bins), LaunchOffsetBins)
	}
	var sum uint64
	for _, n := range bins {
		sum += uint64(n)
	}
	if sum > uint64(max(0, started)) {
		return fmt.Errorf("%d starts binned, but %d started", sum, started)
	}
	return nil
}

func (k *KoiCounts) check(c *checker) {
	c.count("booting", k.Booting, MaxKoi)
	c.count("connected", k.Connected, MaxKoi)
	c.count("reconnecting", k.Reconnecting, MaxKoi)
	c.count("failed", k.Failed, MaxKoi)
	c.count("paused", k.Paused, MaxKoi)
}

// Validate checks every field of a poll reply against its bounds: a
// school does not act on a reply from a peer that lies.
func (m *PollReply) Validate() error {
	var c checker
	c.within("switch.", func() { m.Switch.check(&c) })
	c.time("keeper_time", m.KeeperTime, false)
	c.ms("poll_interval_ms", m.PollIntervalMS, MaxInterval)
	c.ms("lease_ms", m.LeaseMS, MaxInterval)
	c.text("error", m.Error, MaxText)
	c.text("keeper_key", m.KeeperKey, MaxKeeperKey)
	c.items("assignments", "assignments", len(m.Assignments), MaxRunsPerMessage)
	for i := range m.Assignments {
		if c.err != nil {
			break
		}
		c.within("assignments.", func() { m.Assignments[i].check(&c) })
	}
	c.items("launches", "launches", len(m.Launches), MaxLaunchesPerMessage)
	for i := range m.Launches {
		if c.err != nil {
			break
		}
		c.within("launches.", func() { m.Launches[i].check(&c) })
	}
	return c.result()
}

// Validate checks one assignment of a poll reply against its bounds, as
// PollReply.Validate does (fields named "assignments.…"): for a keeper
// leaving out of a reply what would make a school ignore all of it.
func (a *Assignment) Validate() error {
	var c checker
	c.within("assignments.", func() { a.check(&c) })
	return c.result()
}

func (a *Assignment) check(c *checker) {
	c.id("run", a.Run, true)
	c.span("from", "to", a.From, a.To)
	c.finite("ramp", a.Ramp, MaxKoi)
	if a.Ramp < 0 {
		c.fail("ramp", "%g is negative", a.Ramp)
	}
	c.within("switch.", func() { a.Switch.check(c) })
	c.within("spec.", func() { a.Spec.check(c) })
}

// Validate checks one launch of a poll reply against its bounds, as
// PollReply.Validate does (fields named "launches.…").
func (l *Launch) Validate() error {
	var c checker
	c.within("launches.", func() { l.check(&c) })
	return c.result()
}

func (l *Launch) check(c *checker) {
	c.id("id", l.ID, true)
	c.id("run", l.Run, true)
	c.id("formation", l.Formation, true)
	c.text("name", l.Name, MaxText)
	c.items("params", "parameters", len(l.Params), MaxParams)
	for k, v := range l.Params {
		c.text("params.name", k, MaxText)
		c.text("params.value", v, MaxTemplate)
	}
	c.time("start", l.Start, true)
	c.ms("begin_within_ms", l.BeginWithinMS, MaxInterval)
	c.count("count", l.Count, MaxKoi)
	c.text("metric_key", l.MetricKey, MaxText)
}

func (s *RunSpec) check(c *checker) {
	c.text("name", s.Name, MaxText)
	c.id("behavior_set", s.BehaviorSet, false)
	c.text("api_base", s.APIBase, MaxTemplate)
	c.text("websocket_url", s.WebsocketURL, MaxTemplate)
	c.items("websocket_subprotocols", "subprotocols", len(s.WebsocketSubprotocols), MaxSubprotocols)
	for _, p := range s.WebsocketSubprotocols {
		c.text("websocket_subprotocols", p, MaxText)
	}
	c.items("websocket_headers", "headers", len(s.WebsocketHeaders), MaxWebsocketHeaders)
	for k, v := range s.WebsocketHeaders {
		c.text("websocket_headers.name", k, MaxText)
		c.text("websocket_headers.value", v, MaxTemplate)
	}
	c.text("token", s.Token, MaxTemplate)
	c.text("user_id", s.UserID, MaxTemplate)
	c.items("tokens", "tokens", len(s.Tokens), MaxKoi)
	for _, t := range s.Tokens {
		if c.err != nil {
			break
		}
		c.text("tokens", t, MaxTemplate)
	}
	c.finite("time_scale", s.TimeScale, 1e6)
	c.finite("activity_sigma", s.ActivitySigma, 100)
	if s.TimeScale < 0 || s.ActivitySigma < 0 {
		c.fail("time_scale", "time scale %g and activity sigma %g must not be negative", s.TimeScale, s.ActivitySigma)
	}
}

// Validate checks a blob request against its bounds.
func (m *BlobRequest) Validate() error {
	var c checker
	if m.Kind != BlobBehaviorSet && m.Kind != BlobFormation {
		c.fail("kind", "unknown blob kind %s", quote(string(m.Kind)))
	}
	c.id("hash", m.Hash, true)
	return c.result()
}

// Validate checks a blob reply against its bounds.
func (m *BlobReply) Validate() error {
	var c checker
	c.id("hash", m.Hash, false)
	c.text("error", m.Error, MaxText)
	c.items("files", "files", len(m.Files), MaxFiles)
	for i := range m.Files {
		c.text("files.name", m.Files[i].Name, MaxText)
	}
	return c.result()
}

// Validate checks a metrics report against its bounds (the snapshot's
// size; its content is checked by the decoder of package metrics).
func (m *MetricsReport) Validate() error {
	var c checker
	c.schoolID("school", m.School)
	c.time("start", m.Start, false)
	c.time("end", m.End, false)
	c.items("runs", "runs", len(m.Runs), MaxRunsPerMessage)
	seen := make(map[string]bool, len(m.Runs))
	for i := range m.Runs {
		if c.err != nil {
			break
		}
		r := &m.Runs[i]
		c.id("runs.run", r.Run, true)
		c.once("runs.run", r.Run, seen)
		if len(r.Snapshot) > MaxSnapshot {
			c.fail("runs.snapshot", "%d bytes, more than %d", len(r.Snapshot), MaxSnapshot)
		}
		c.within("runs.koi.", func() { r.Koi.check(&c) })
		for _, v := range []uint64{r.FramesIn, r.FramesOut, r.BytesIn, r.BytesOut} {
			if v > MaxTraffic {
				c.fail("runs.traffic", "%d is more than %d per report", v, uint64(MaxTraffic))
			}
		}
	}
	return c.result()
}
