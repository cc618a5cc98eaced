package keeper

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/wire"
)

// Limits on what callers may ask for.
const (
	MaxKoi       = 10_000_000
	MaxRamp      = 1_000_000
	MaxTimeScale = 10_000
	MaxDuration  = 366 * 24 * time.Hour
	// LaunchGrace is how far in the past a launch time may be (clock skew
	// between caller and keeper); earlier is refused.
	LaunchGrace = 5 * time.Second
	// MaxLaunchAhead is how far ahead a launch may be scheduled.
	MaxLaunchAhead = 31 * 24 * time.Hour
)

// State returns a consistent read-only view of the keeper's state.
func (k *Keeper) State() *state.Reader { return k.store.Read() }

// newID returns prefix-<12 hex digits>, random.
func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// write runs a store write, mapping storage failures to CodeUnavailable.
func (k *Keeper) write(ctx context.Context, what string, fn func(*state.Txn) error) error {
	return storeErr(what, k.store.Write(ctx, fn))
}

// writeFirst is write for the switches (global, a run's, a guardrail's
// action): it goes ahead of other writes waiting (state.Store.WriteFirst).
func (k *Keeper) writeFirst(ctx context.Context, what string, fn func(*state.Txn) error) error {
	return storeErr(what, k.store.WriteFirst(ctx, fn))
}

// maxName is the longest name the keeper stores (checkName).
const maxName = 200

func checkName(field, name string) *Error {
	switch {
	case name == "":
		return invalid(field, "must not be empty")
	case len(name) > maxName:
		return invalid(field, "is %d bytes long; at most %d", len(name), maxName)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return invalid(field, "must not contain control characters")
	}
	return nil
}

// PutBehaviorSet validates and stores a behavior set made of files (merged
// by behavior name, see behaviors.Parse). An empty name is taken from the
// first file's base name. Content already stored is returned as it is;
// new content under a known name becomes its next version.
func (k *Keeper) PutBehaviorSet(ctx context.Context, actor, name string, files []behaviors.File) (*state.BehaviorSet, error) {
	if len(files) == 0 {
		return nil, invalid("files", "give at least one file")
	}
	seen := map[string]bool{}
	for i, f := range files {
		field := fmt.Sprintf("files[%d]", i)
		if err := checkName(field+".name", f.Name); err != nil {
			return nil, err
		}
		if seen[f.Name] {
			return nil, invalid(field+".name", "%q given twice", f.Name)
		}
		seen[f.Name] = true
		if len(f.Data) > behaviors.MaxFileSize {
			return nil, &Error{Code: CodeTooLarge, Field: field, Message: fmt.Sprintf("%s is %d bytes; the limit is %d", f.Name, len(f.Data), behaviors.MaxFileSize)}
		}
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(files[0].Name), filepath.Ext(files[0].Name))
	}
	if err := checkName("name", name); err != nil {
		return nil, err
	}
	set, diags := behaviors.Parse(files...)
	if set == nil {
		return nil, &Error{Code: CodeInvalid, Field: "files", Message: diags.Error(), Err: diags}
	}
	b := &state.BehaviorSet{Hash: set.Hash, Name: name, Behaviors: len(set.Behaviors), CreatedBy: actor}
	for _, w := range diags.Warnings() {
		b.Warnings = append(b.Warnings, w.String())
	}
	wfiles := make([]wire.File, len(files))
	for i, f := range files {
		b.Files = append(b.Files, state.File{Name: f.Name, Content: string(f.Data)})
		wfiles[i] = wire.File{Name: f.Name, Data: f.Data}
	}
	if err := k.checkBlobFits("files", wire.BlobBehaviorSet, b.Hash, wfiles); err != nil {
		return nil, err
	}
	var out *state.BehaviorSet
	err := k.write(ctx, "storing the behavior set", func(tx *state.Txn) error {
		if old := tx.BehaviorSet(nil, b.Hash); old != nil {
			out = old
			return nil
		}
		b.CreatedAt, b.Version = tx.Now(), 1
		if last := tx.LatestBehaviorSet(nil, name); last != nil {
			b.Version = last.Version + 1
		}
		out = b
		if err := tx.PutBehaviorSet(b); err != nil {
			return err
		}
		return tx.Audit(actor, "upload behavior set", name, fmt.Sprintf("version %d, hash %s, %d behaviors", b.Version, b.Hash, b.Behaviors))
	})
	if err != nil {
		return nil, onField(err, "files")
	}
	return out, nil
}

// PutFormation validates and stores a formation file (content-hashed,
// versioned by the formation's name).
func (k *Keeper) PutFormation(ctx context.Context, actor string, file behaviors.File) (*state.Formation, error) {
	if err := checkName("file.name", file.Name); err != nil {
		return nil, err
	}
	if len(file.Data) > behaviors.MaxFileSize {
		return nil, &Error{Code: CodeTooLarge, Field: "file", Message: fmt.Sprintf("%d bytes; the limit is %d", len(file.Data), behaviors.MaxFileSize)}
	}
	f, diags := formations.Parse(file)
	if f == nil {
		return nil, &Error{Code: CodeInvalid, Field: "file", Message: diags.Error(), Err: diags}
	}
	sum := sha256.Sum256(file.Data)
	fm := &state.Formation{Hash: hex.EncodeToString(sum[:]), Name: f.Name, File: state.File{Name: file.Name, Content: string(file.Data)},
		Percent: f.Percent, BeginWithinMS: f.BeginWithin.Milliseconds(), Steps: len(f.Sequence.Steps), CreatedBy: actor}
	for _, p := range f.Params {
		fm.Params = append(fm.Params, state.FormationParam(p))
	}
	if err := k.checkBlobFits("file", wire.BlobFormation, fm.Hash, []wire.File{{Name: file.Name, Data: file.Data}}); err != nil {
		return nil, err
	}
	var out *state.Formation
	err := k.write(ctx, "storing the formation", func(tx *state.Txn) error {
		if old := tx.Formation(nil, fm.Hash); old != nil {
			out = old
			return nil
		}
		fm.CreatedAt, fm.Version = tx.Now(), 1
		if last := tx.LatestFormation(nil, fm.Name); last != nil {
			fm.Version = last.Version + 1
		}
		out = fm
		if err := tx.PutFormation(fm); err != nil {
			return err
		}
		return tx.Audit(actor, "upload formation", fm.Name, fmt.Sprintf("version %d, hash %s", fm.Version, fm.Hash))
	})
	if err != nil {
		return nil, onField(err, "file")
	}
	return out, nil
}

// RunSpec is what a caller gives to create a run.
type RunSpec struct {
	Name   string            `json:"name"`
	Owner  string            `json:"owner,omitempty"` // default: the caller
	Labels map[string]string `json:"labels,omitempty"`
	Target state.Target      `json:"target"`
	// BehaviorSet is a content hash, or a name for its latest version.
	BehaviorSet   string  `json:"behavior_set"`
	Koi           int     `json:"koi"`
	Ramp          float64 `json:"ramp"` // koi per second; 0: all at once
	TimeScale     float64 `json:"time_scale,omitempty"`
	ActivitySigma float64 `json:"activity_sigma,omitempty"`
	// DurationSecs ends the run after that long; 0 is always-on.
	DurationSecs float64 `json:"duration_secs,omitempty"`
	// Paused creates the run paused: koi connect but send nothing.
	Paused bool `json:"paused,omitempty"`
	// Thresholds maps metric keys to conditions checked in the run's
	// report, e.g. {"api:chat.postMessage": ["p95 < 300ms",
	// "error_rate < 1%"]}; see ParseThreshold.
	Thresholds map[string][]string `json:"thresholds,omitempty"`
	// ThresholdWindowSecs is the sliding window thresholds are evaluated
	// over while the run runs (1..3600, 0: 30).
	ThresholdWindowSecs int `json:"threshold_window_secs,omitempty"`
	// Guardrails are rules acting on the run when its metrics go bad;
	// see parseGuardrail.
	Guardrails []state.GuardrailRule `json:"guardrails,omitempty"`
	// Capacity makes the run a capacity search (see capacity.go); Koi is
	// then its start.
	Capacity *state.CapacitySpec `json:"capacity,omitempty"`
}

func checkURL(field, raw string, schemes ...string) *Error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalid(field, "%q is not a URL: %v", raw, err)
	}
	for _, s := range schemes {
		if u.Scheme == s && u.Host != "" {
			return nil
		}
	}
	return invalid(field, "%q must be an absolute %s URL", raw, strings.Join(schemes, " or "))
}

func checkTemplate(field, text string) *Error {
	if text == "" {
		return nil
	}
	if _, err := behaviors.ParseSpecTemplate(field, text); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func checkKoi(field string, koi int, tokens []string) *Error {
	switch {
	case koi < 0 || koi > MaxKoi:
		return invalid(field, "%d is outside 0..%d", koi, MaxKoi)
	case len(tokens) > 0 && koi > len(tokens):
		return invalid(field, "%d koi but only %d tokens in target.tokens", koi, len(tokens))
	}
	return nil
}

func checkRamp(field string, ramp float64) *Error {
	if math.IsNaN(ramp) || ramp < 0 || ramp > MaxRamp {
		return invalid(field, "%g is outside 0..%d koi per second", ramp, MaxRamp)
	}
	return nil
}

func (s *RunSpec) check() *Error {
	if err := checkName("name", s.Name); err != nil {
		return err
	}
	if err := checkRunBounds(s); err != nil {
		return err
	}
	for k, v := range s.Labels {
		if err := checkName("labels", k); err != nil {
			return err
		}
		if len(v) > maxLabelValue {
			return invalid("labels."+k, "longer than %d bytes", maxLabelValue)
		}
	}
	if s.BehaviorSet == "" {
		return invalid("behavior_set", "give a behavior set hash or name")
	}
	if err := checkTarget(&s.Target); err != nil {
		return err
	}
	if err := checkTemplate("target.token", s.Target.Token); err != nil {
		return err
	}
	if err := checkTemplate("target.user_id", s.Target.UserID); err != nil {
		return err
	}
	if err := checkKoi("koi", s.Koi, s.Target.Tokens); err != nil {
		return err
	}
	if err := checkRamp("ramp", s.Ramp); err != nil {
		return err
	}
	switch {
	case math.IsNaN(s.TimeScale) || s.TimeScale < 0 || s.TimeScale > MaxTimeScale:
		return invalid("time_scale", "%g is outside 0..%d (0 means 1)", s.TimeScale, MaxTimeScale)
	case math.IsNaN(s.ActivitySigma) || s.ActivitySigma < 0 || s.ActivitySigma > 5:
		return invalid("activity_sigma", "%g is outside 0..5", s.ActivitySigma)
	case math.IsNaN(s.DurationSecs) || s.DurationSecs < 0 || s.DurationSecs > MaxDuration.Seconds():
		return invalid("duration_secs", "%g is outside 0..%.0f (0 means always-on)", s.DurationSecs, MaxDuration.Seconds())
	}
	if _, err := parseThresholds(s.Thresholds); err != nil {
		return err
	}
	if s.ThresholdWindowSecs < 0 || s.ThresholdWindowSecs > maxThresholdWindow {
		return invalid("threshold_window_secs", "%d is outside 1..%d (0 means %d)", s.ThresholdWindowSecs, maxThresholdWindow, defaultThresholdWindow)
	}
	if _, err := parseGuardrails("guardrails", "run", s.Guardrails); err != nil {
		return err
	}
	if s.Capacity != nil {
		if err := checkCapacity(s.Capacity, s.Target.Tokens); err != nil {
			return err
		}
	}
	return nil
}

// CreateRun validates and stores a new run; the scheduler assigns its koi
// on its next pass (started at once).
func (k *Keeper) CreateRun(ctx context.Context, actor string, spec RunSpec) (*state.Run, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	run := newRun(actor, spec)
	if _, err := runDoable(k.store.Read(), &spec); err != nil { // parses the set here, not in the write (parsed.go)
		return nil, err
	}
	err := k.write(ctx, "creating the run", func(tx *state.Txn) error {
		return k.createRunTx(tx, actor, &spec, run)
	})
	if err != nil {
		return nil, err
	}
	k.Kick()
	k.notify(notify.RunStartedNotice(run, actor))
	return run, nil
}

// newRun is the run a checked spec describes, before a write fills in its
// behavior set, times and switch.
func newRun(actor string, spec RunSpec) *state.Run {
	run := &state.Run{ID: newID("run"), Name: spec.Name, Owner: spec.Owner, Labels: spec.Labels, Target: spec.Target,
		Koi: spec.Koi, Ramp: spec.Ramp, TimeScale: spec.TimeScale, ActivitySigma: spec.ActivitySigma,
		DurationMS: int64(spec.DurationSecs * 1000), State: state.RunRunning, Thresholds: spec.Thresholds,
		ThresholdWindowSecs: spec.ThresholdWindowSecs}
	if gs, _ := parseGuardrails("guardrails", "run", spec.Guardrails); len(gs) > 0 { // checked by spec.check
		run.Guardrails = verdict.RulesOf(gs)
	}
	if run.Owner == "" {
		run.Owner = actor
	}
	return run
}

// runDoable checks what a checked run spec needs of the state: its
// behavior set, and target.api_base when the set sends api requests. It
// parses the set (setFactsOf) if that was not done yet: called on a read
// before the write, the same call in the write finds it parsed.
func runDoable(r *state.Reader, spec *RunSpec) (*state.BehaviorSet, *Error) {
	b := findBehaviorSet(r, spec.BehaviorSet)
	if b == nil {
		return nil, notFound("behavior_set", "no behavior set with hash or name %q", spec.BehaviorSet)
	}
	setFactsOf(b) // the write reads them too (thresholdWarnings), with or without api_base
	if err := checkAPIBase(&spec.Target, b); err != nil {
		return nil, err
	}
	return b, nil
}

// createRunTx stores run (newRun of spec) inside a write, refusing what
// runDoable refuses and a record without room under the NATS payload
// (checkRunRecord).
func (k *Keeper) createRunTx(tx *state.Txn, actor string, spec *RunSpec, run *state.Run) error {
	b, rerr := runDoable(&tx.Reader, spec)
	if rerr != nil {
		return rerr
	}
	run.BehaviorSet = b.Hash
	ts, _ := parseThresholds(spec.Thresholds) // checked by spec.check
	run.Warnings = thresholdWarnings(ts, setFactsOf(b))
	now := tx.Now()
	run.Warnings = append(run.Warnings, verdict.GuardrailWarnings("guardrails", run.Guardrails)...)
	if spec.Capacity != nil {
		c := *spec.Capacity
		run.Capacity, run.Koi = &c, c.Start
		run.CapacityResult = &state.CapacityResult{StepFrom: now, Steps: []state.CapacityStep{}}
		run.Warnings = append(run.Warnings, capacityWarnings(&c, append(slices.Clone(run.Guardrails), tx.Guardrails(nil).Rules...))...)
	}
	run.CreatedAt, run.StartedAt = now, now
	run.Switch = state.Switch{State: wire.Running, Epoch: tx.NextEpoch(), By: actor, At: now}
	if spec.Paused {
		run.State, run.Switch.State = state.RunPaused, wire.Paused
	}
	if err := k.checkRunRecord(run); err != nil {
		return err
	}
	if err := tx.PutRun(run); err != nil {
		return err
	}
	return tx.Audit(actor, "create run", run.ID, fmt.Sprintf("%q: %d koi at %g/s, behavior set %s (%s v%d), target %s",
		run.Name, run.Koi, run.Ramp, b.Hash, b.Name, b.Version, run.Target.Where()))
}

// RunPatch changes a running run's size or ramp; nil fields stay.
type RunPatch struct {
	Koi  *int     `json:"koi,omitempty"`
	Ramp *float64 `json:"ramp,omitempty"`
}

// UpdateRun applies a live change of koi count and/or ramp; schools move to
// the new target at the ramp rate.
func (k *Keeper) UpdateRun(ctx context.Context, actor, id string, p RunPatch) (*state.Run, error) {
	if p.Koi == nil && p.Ramp == nil {
		return nil, invalid("", "give koi and/or ramp")
	}
	if p.Ramp != nil {
		if err := checkRamp("ramp", *p.Ramp); err != nil {
			return nil, err
		}
	}
	var out *state.Run
	err := k.write(ctx, "updating the run", func(tx *state.Txn) error {
		old := tx.Run(nil, id)
		if old == nil {
			return notFound("id", "no run %q", id)
		}
		if !old.Active() {
			return conflict("run %s is %s; only running or paused runs change", id, old.State)
		}
		n := *old
		var what []string
		if p.Koi != nil {
			if err := checkKoi("koi", *p.Koi, old.Target.Tokens); err != nil {
				return err
			}
			n.Koi = *p.Koi
			what = append(what, fmt.Sprintf("koi %d → %d", old.Koi, n.Koi))
		}
		if p.Ramp != nil {
			n.Ramp = *p.Ramp
			what = append(what, fmt.Sprintf("ramp %g → %g", old.Ramp, n.Ramp))
		}
		out = &n
		if err := k.putRun(tx, &n); err != nil {
			return err
		}
		return tx.Audit(actor, "scale run", id, strings.Join(what, ", "))
	})
	if err != nil {
		return nil, err
	}
	k.Kick()
	return out, nil
}

// SetRunState pauses, resumes or stops one run. A stop is final; it is
// tracked until every school that ran the run's koi confirms none are left.
func (k *Keeper) SetRunState(ctx context.Context, actor, id string, st wire.State) (*state.Run, error) {
	if !st.Valid() {
		return nil, invalid("state", "%q is not running, paused or stopped", st)
	}
	var out *state.Run
	var c wire.Control
	err := k.writeFirst(ctx, "switching the run", func(tx *state.Txn) error {
		var err error
		c, out, err = k.setRunStateTx(tx, actor, id, st)
		return err
	})
	if err != nil {
		return nil, err
	}
	k.publishControl(c)
	k.Kick()
	k.notify(notify.RunSwitchNotice(out, st, actor))
	return out, nil
}

// setRunStateTx is SetRunState inside a write (st is valid); the caller
// publishes the control after the commit.
func (k *Keeper) setRunStateTx(tx *state.Txn, actor, id string, st wire.State) (wire.Control, *state.Run, error) {
	old := tx.Run(nil, id)
	if old == nil {
		return wire.Control{}, nil, notFound("id", "no run %q", id)
	}
	if !old.Active() {
		return wire.Control{}, nil, conflict("run %s is %s; it cannot be %s", id, old.State, st)
	}
	if st == wire.Stopped {
		c, err := k.stopRun(tx, old, actor, "stopped by "+actor, k.liveSchools(&tx.Reader, tx.Now()))
		return c, tx.Run(nil, id), err
	}
	n := *old
	n.State = state.RunRunning
	if st == wire.Paused {
		n.State = state.RunPaused
	}
	n.Switch = state.Switch{State: st, Epoch: tx.NextEpoch(), By: actor, At: tx.Now()}
	if st == wire.Running {
		n.Quarantine = nil // resuming clears the failure count (quarantine.go)
	}
	if err := k.putRun(tx, &n); err != nil {
		return wire.Control{}, nil, err
	}
	return control(n.Switch, id), &n, tx.Audit(actor, string(verb(st))+" run", id, fmt.Sprintf("epoch %d", n.Switch.Epoch))
}

// verb names the action that sets a state.
func verb(st wire.State) string {
	switch st {
	case wire.Paused:
		return "pause"
	case wire.Stopped:
		return "stop"
	}
	return "resume"
}

// stopRun stops a run inside a write: final state, new epoch, its
// assignments removed, a stop track over the schools that had them.
func (k *Keeper) stopRun(tx *state.Txn, old *state.Run, actor, reason string, live []*state.School) (wire.Control, error) {
	now := tx.Now()
	n := *old
	n.State, n.EndedAt, n.EndReason = state.RunStopped, now, reason
	n.Switch = state.Switch{State: wire.Stopped, Epoch: tx.NextEpoch(), By: actor, At: now}
	track := &state.StopTrack{RequestedAt: now, Epoch: n.Switch.Epoch, Acks: map[string]time.Time{}, Expected: []string{}}
	for _, a := range tx.AssignmentsOfRun(nil, old.ID) {
		if a.Count() > 0 {
			track.Expected = append(track.Expected, a.School)
		}
		if err := tx.DeleteAssignment(a); err != nil {
			return wire.Control{}, err
		}
	}
	// A live school still reporting koi of the run must confirm too.
	for _, s := range live {
		if s.Status != nil && !runIdle(s.Status.Runs, old.ID) && !contains(track.Expected, s.ID) {
			track.Expected = append(track.Expected, s.ID)
		}
	}
	if len(track.Expected) == 0 {
		track.CompleteAt = now
	}
	n.Stop = track
	if err := k.putRun(tx, &n); err != nil {
		return wire.Control{}, err
	}
	if err := cancelRunLaunchesTx(tx, old.ID, now, "the run stopped ("+reason+")"); err != nil {
		return wire.Control{}, err
	}
	if err := tx.Audit(actor, "stop run", old.ID, fmt.Sprintf("epoch %d: %s", n.Switch.Epoch, reason)); err != nil {
		return wire.Control{}, err
	}
	return control(n.Switch, old.ID), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SetSwitch moves the global switch: every koi everywhere pauses, resumes
// or stops. It publishes the change on wire.SubjectControl at once; polls
// repeat it. Every call takes a new epoch, even to the same state.
func (k *Keeper) SetSwitch(ctx context.Context, actor string, st wire.State) (*state.GlobalSwitch, error) {
	if !st.Valid() {
		return nil, invalid("state", "%q is not running, paused or stopped", st)
	}
	var out *state.GlobalSwitch
	err := k.writeFirst(ctx, "switching", func(tx *state.Txn) error {
		var err error
		out, err = k.setSwitchTx(tx, actor, st)
		return err
	})
	if err != nil {
		return nil, err
	}
	k.publishControl(control(out.Switch, ""))
	k.notify(notify.SwitchNotice(out, actor))
	return out, nil
}

// setSwitchTx is SetSwitch inside a write (st is valid); the caller
// publishes the control after the commit.
func (k *Keeper) setSwitchTx(tx *state.Txn, actor string, st wire.State) (*state.GlobalSwitch, error) {
	now := tx.Now()
	g := &state.GlobalSwitch{Switch: state.Switch{State: st, Epoch: tx.NextEpoch(), By: actor, At: now}}
	if st == wire.Stopped {
		t := &state.StopTrack{RequestedAt: now, Epoch: g.Epoch, Acks: map[string]time.Time{}, Expected: []string{}}
		for _, s := range k.liveSchools(&tx.Reader, now) {
			t.Expected = append(t.Expected, s.ID)
		}
		if len(t.Expected) == 0 {
			t.CompleteAt = now
		}
		g.Stop = t
		if err := cancelRunLaunchesTx(tx, "", now, "everything was stopped by "+actor); err != nil {
			return nil, err
		}
	}
	if err := tx.PutSwitch(g); err != nil {
		return nil, err
	}
	return g, tx.Audit(actor, verb(st)+" everything", "switch", fmt.Sprintf("epoch %d", g.Epoch))
}
