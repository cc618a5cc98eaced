package keeper

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
)

// Trigger call limits.
const (
	// TriggerWindow is how far a call's timestamp may be from the
	// keeper's clock; a call's signature is remembered that long, so a
	// replay within the window is refused and one after it is stale.
	TriggerWindow = 5 * time.Minute
	// MaxTriggerBody bounds a trigger call's body.
	MaxTriggerBody = 64 << 10
	// maxTriggerSeen bounds the signatures remembered per trigger within
	// the window (the record stays near 150 KiB, well under NATS's
	// default 1 MiB message): calls beyond it are refused (reason
	// too_many) until older ones age out.
	maxTriggerSeen    = 2_000
	maxTriggerActions = 50
	maxTemplateLen    = 4096
)

// Reasons a trigger call is refused, counted per trigger.
const (
	RefusedUnknown      = "unknown_trigger"
	RefusedNoHeaders    = "missing_headers"
	RefusedMalformed    = "malformed_headers"
	RefusedBadSignature = "bad_signature"
	RefusedStale        = "stale_timestamp"
	RefusedReplay       = "replay"
	RefusedTooMany      = "too_many"
)

// triggerStats counts trigger calls in memory, for the API and /metrics.
type triggerStats struct {
	mu       sync.Mutex
	refused  map[string]map[string]uint64 // trigger → reason → count
	accepted map[string]uint64
}

func newTriggerStats() *triggerStats {
	return &triggerStats{refused: map[string]map[string]uint64{}, accepted: map[string]uint64{}}
}

func (s *triggerStats) refuse(trigger, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused[trigger] == nil {
		s.refused[trigger] = map[string]uint64{}
	}
	s.refused[trigger][reason]++
}

func (s *triggerStats) accept(trigger string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted[trigger]++
}

func (s *triggerStats) of(trigger string) (map[string]uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]uint64{}
	for r, n := range s.refused[trigger] {
		out[r] = n
	}
	return out, s.accepted[trigger]
}

// TriggerSpec is what a caller gives to add or replace a trigger.
type TriggerSpec struct {
	Name string `json:"name"`
	// Secret keys call signatures; required for a new trigger; on a
	// replace nil keeps the stored one.
	Secret  *string               `json:"secret,omitempty"`
	Actions []state.TriggerAction `json:"actions"`
}

func (s *TriggerSpec) check(create bool) *Error {
	if err := checkPathName("name", s.Name); err != nil {
		return err
	}
	if s.Secret == nil && create {
		return invalid("secret", "a trigger needs a secret to check call signatures")
	}
	if s.Secret != nil && (len(*s.Secret) < 16 || len(*s.Secret) > 1024) {
		return invalid("secret", "is %d bytes; give 16 to 1024", len(*s.Secret))
	}
	if len(s.Actions) == 0 || len(s.Actions) > maxTriggerActions {
		return invalid("actions", "give 1 to %d actions, not %d", maxTriggerActions, len(s.Actions))
	}
	for i, a := range s.Actions {
		field := fmt.Sprintf("actions[%d]", i)
		if err := checkLabels(field+".match", a.Match); err != nil {
			return err
		}
		hasRun := len(a.Run) > 0 && string(a.Run) != "null"
		switch {
		case hasRun && a.Launch != nil:
			return invalid(field, "give run or launch, not both")
		case hasRun:
			var texts []string
			var v any
			if err := json.Unmarshal(a.Run, &v); err != nil {
				return invalid(field+".run", "not JSON: %v", err)
			}
			jsonStrings(v, &texts)
			for _, t := range texts {
				if _, err := template.New("").Parse(t); err != nil {
					return invalid(field+".run", "bad template %q: %v", notify.Clip(t, 80), err)
				}
			}
			if _, err := renderRun(field+".run", a.Run, placeholderData(texts...)); err != nil {
				return err
			}
		case a.Launch != nil:
			l := a.Launch
			if l.Formation == "" {
				return invalid(field+".launch.formation", "give a formation hash or name")
			}
			if len(l.RunLabels) == 0 {
				return invalid(field+".launch.run_labels", "give the labels of the runs to launch on")
			}
			if l.AtSecs < 0 || l.AtSecs > MaxLaunchAhead.Seconds() {
				return invalid(field+".launch.at_secs", "%g is outside 0..%.0f", l.AtSecs, MaxLaunchAhead.Seconds())
			}
			var texts []string
			for _, m := range []map[string]string{l.RunLabels, l.Params} {
				for _, v := range m {
					texts = append(texts, v)
				}
			}
			data := placeholderData(texts...)
			if _, err := renderMap(field+".launch.run_labels", l.RunLabels, data); err != nil {
				return err
			}
			if _, err := renderMap(field+".launch.params", l.Params, data); err != nil {
				return err
			}
			if err := checkLabels(field+".launch.run_labels", l.RunLabels); err != nil {
				return err
			}
		default:
			return invalid(field, "give a run (a run spec template) or a launch")
		}
	}
	return nil
}

// PutTrigger adds a trigger (create: refused if the name is taken) or
// replaces one.
func (k *Keeper) PutTrigger(ctx context.Context, actor string, spec TriggerSpec, create bool) (*state.Trigger, error) {
	exists := k.store.Read().Trigger(nil, spec.Name) != nil
	if err := spec.check(create || !exists); err != nil {
		return nil, err
	}
	var out *state.Trigger
	err := k.write(ctx, "storing the trigger", func(tx *state.Txn) error {
		old := tx.Trigger(nil, spec.Name)
		if old != nil && create {
			return conflict("trigger %q exists; replace it with PUT /api/v1/triggers/%s", spec.Name, spec.Name)
		}
		if old == nil && spec.Secret == nil {
			return invalid("secret", "a trigger needs a secret to check call signatures")
		}
		tr := &state.Trigger{Name: spec.Name, Actions: spec.Actions, CreatedAt: tx.Now(), CreatedBy: actor, UpdatedAt: tx.Now()}
		action := "add trigger"
		if old != nil {
			tr.CreatedAt, tr.CreatedBy, tr.Secret = old.CreatedAt, old.CreatedBy, old.Secret
			action = "replace trigger"
		}
		if spec.Secret != nil {
			tr.Secret = *spec.Secret
		}
		out = tr
		if err := tx.PutTrigger(tr); err != nil {
			return err
		}
		return tx.Audit(actor, action, tr.Name, fmt.Sprintf("%d actions", len(tr.Actions)))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteTrigger removes a trigger.
func (k *Keeper) DeleteTrigger(ctx context.Context, actor, name string) error {
	return k.write(ctx, "deleting the trigger", func(tx *state.Txn) error {
		if tx.Trigger(nil, name) == nil {
			return notFound("name", "no trigger %q", name)
		}
		if err := tx.DeleteTrigger(name); err != nil {
			return err
		}
		return tx.Audit(actor, "delete trigger", name, "")
	})
}

// TriggerView is a trigger as the API shows it: never its secret, with
// its call counts since the keeper started.
type TriggerView struct {
	Name      string                `json:"name"`
	Actions   []state.TriggerAction `json:"actions"`
	CreatedAt time.Time             `json:"created_at"`
	CreatedBy string                `json:"created_by,omitempty"`
	UpdatedAt time.Time             `json:"updated_at"`
	Accepted  uint64                `json:"accepted"`
	Refused   map[string]uint64     `json:"refused"`
}

// TriggerView returns a trigger's view with its call counts.
func (k *Keeper) TriggerView(t *state.Trigger) TriggerView {
	refused, accepted := k.trig.of(t.Name)
	return TriggerView{Name: t.Name, Actions: t.Actions, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy,
		UpdatedAt: t.UpdatedAt, Accepted: accepted, Refused: refused}
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

// TriggerRefused is a refused trigger call; Reason is one of the
// Refused… constants.
type TriggerRefused struct {
	Reason string
	Err    *Error
}

func (e *TriggerRefused) Error() string { return e.Err.Error() }

// Unwrap returns the API error.
func (e *TriggerRefused) Unwrap() error { return e.Err }

func (k *Keeper) refuseTrigger(name, reason string, status *Error) error {
	label := name
	if reason == RefusedUnknown {
		label = "(unknown)" // names callers invent must not grow the metrics
	}
	k.trig.refuse(label, reason)
	k.stats.reject(k.log, "trigger: "+reason, status, "trigger", name)
	return &TriggerRefused{Reason: reason, Err: status}
}

// triggerPayload is the part of a call's body the keeper reads; the rest
// is there for templates.
type triggerPayload struct {
	Labels map[string]string `json:"labels"`
	Event  string            `json:"event"`
}

// prepared is a matched action checked against the state, ready to be
// done in the call's write.
type prepared struct {
	index    int
	run      *RunSpec
	launches []preparedLaunch
}

// preparedLaunch is one launch of an action, with its start.
type preparedLaunch struct {
	spec  LaunchSpec
	start time.Time
}

// actionFailed is an action refused inside the call's write (the state
// changed since it was checked): the write is dropped, nothing starts.
type actionFailed struct{ ActionError }

func (e *actionFailed) Error() string {
	return fmt.Sprintf("action %d: %s: %s", e.Action, e.Field, e.Message)
}

// FireTrigger authenticates a trigger call (timestamp and signature
// headers, see Sign), refuses replays and stale calls, and does the
// actions whose match labels the payload carries. The call's signature is
// remembered (durably) before anything starts, so a replay never starts
// anything twice, also after a keeper restart. Every matched action is
// checked before any starts: when one cannot be done, none is, and the
// result lists why (the API answers 422).
func (k *Keeper) FireTrigger(ctx context.Context, name, tsHeader, sigHeader string, body []byte) (*TriggerResult, error) {
	tr := k.store.Read().Trigger(nil, name)
	if tr == nil {
		// Answered like a bad signature, so a caller without a secret
		// cannot probe which trigger names exist; counted apart.
		return nil, k.refuseTrigger(name, RefusedUnknown, errNotSigned(name))
	}
	if tsHeader == "" || sigHeader == "" {
		return nil, k.refuseTrigger(name, RefusedNoHeaders, &Error{Code: CodeUnauthorized, Field: notify.HeaderSignature,
			Message: fmt.Sprintf("missing_headers: sign the call with %s and %s", notify.HeaderTimestamp, notify.HeaderSignature)})
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	hexSig, ok := strings.CutPrefix(sigHeader, "sha256=")
	if _, herr := hex.DecodeString(hexSig); err != nil || !ok || len(hexSig) != 64 || herr != nil {
		return nil, k.refuseTrigger(name, RefusedMalformed, &Error{Code: CodeUnauthorized, Field: notify.HeaderSignature,
			Message: fmt.Sprintf("malformed_headers: %s must be unix seconds and %s sha256=<64 hex digits>", notify.HeaderTimestamp, notify.HeaderSignature)})
	}
	if !hmac.Equal([]byte(notify.Sign(tr.Secret, ts, body)), []byte(strings.ToLower(sigHeader))) {
		return nil, k.refuseTrigger(name, RefusedBadSignature, errNotSigned(name))
	}
	now := time.Now()
	if d := now.Sub(time.Unix(ts, 0)); d > TriggerWindow || d < -TriggerWindow {
		return nil, k.refuseTrigger(name, RefusedStale, &Error{Code: CodeUnauthorized, Field: notify.HeaderTimestamp,
			Message: fmt.Sprintf("stale_timestamp: %s is %v from the keeper's clock; at most %v", tsHeader, d.Round(time.Second), TriggerWindow)})
	}
	var payload triggerPayload
	var data map[string]any
	if err := json.Unmarshal(body, &payload); err != nil {
		return nil, invalid("", "the body must be a JSON object with labels (string values): %v", err)
	}
	if err := json.Unmarshal(body, &data); err != nil || data == nil {
		return nil, invalid("", "the body must be a JSON object")
	}
	if err := checkLabels("labels", payload.Labels); err != nil {
		return nil, err
	}
	actor := "trigger:" + name
	res := &TriggerResult{Trigger: name, Event: payload.Event, Matched: []int{}, Runs: []TriggerRun{}, Launches: []TriggerLaunched{}}
	// Every matched action is checked in full (what CreateRun and Launch
	// would refuse) before anything starts, parsing what it reads here
	// rather than in the write (parsed.go).
	var todo []prepared
	r := k.store.Read()
	adding := 0 // launches the call adds before this action's
	for i, a := range tr.Actions {
		if !labelsMatch(a.Match, payload.Labels) {
			continue
		}
		res.Matched = append(res.Matched, i)
		p, aerr := k.prepareAction(r, i, a, data, now, adding)
		if aerr != nil {
			res.Errors = append(res.Errors, *aerr)
			continue
		}
		adding += len(p.launches)
		todo = append(todo, p)
	}
	// One write records the signature (so a replay never starts anything
	// twice) and does every action, or, when one cannot be done, none.
	sig := strings.ToLower(hexSig)
	var runs []*state.Run
	var launches []*state.Launch
	call := func(tx *state.Txn) error {
		runs, launches = nil, nil
		if err := k.recordCall(tx, name, sig, ts, now); err != nil {
			return err
		}
		if len(res.Errors) == 0 {
			for _, p := range todo {
				if err := k.doActionTx(tx, actor, p, &runs, &launches); err != nil {
					return err
				}
			}
		}
		detail := fmt.Sprintf("event %q, labels %s: matched actions %v", payload.Event, fmtLabels(payload.Labels), res.Matched)
		if len(res.Errors) > 0 {
			detail += fmt.Sprintf("; %d could not be done, nothing started", len(res.Errors))
		}
		return tx.Audit(actor, "fire trigger", name, detail)
	}
	err = k.write(ctx, "recording the trigger call", call)
	if af := (*actionFailed)(nil); errors.As(err, &af) {
		// The state changed between the checks and the write (a run
		// stopped, a launch slot taken): the call is recorded with
		// nothing started.
		res.Errors = append(res.Errors, af.ActionError)
		err = k.write(ctx, "recording the trigger call", call)
	}
	if err != nil {
		return nil, err
	}
	k.trig.accept(name)
	switch {
	case len(res.Errors) > 0:
		res.Note = "nothing was started: fix the actions listed in errors and sign a new call"
	case len(res.Matched) == 0:
		res.Note = fmt.Sprintf("no action matches labels %s", fmtLabels(payload.Labels))
	}
	for _, run := range runs {
		res.Runs = append(res.Runs, TriggerRun{ID: run.ID, Name: run.Name})
		k.notify(notify.RunStartedNotice(run, actor))
	}
	for _, l := range launches {
		res.Launches = append(res.Launches, TriggerLaunched{ID: l.ID, Run: l.Run, Start: l.Start})
	}
	if len(runs)+len(launches) > 0 {
		k.Kick()
	}
	k.notify(notify.Notice{Kind: notify.NoticeTrigger, Actor: actor, Title: fmt.Sprintf("Trigger %s fired", name),
		Text: triggerSummary(res), Fields: map[string]string{"event": payload.Event, "labels": fmtLabels(payload.Labels)}})
	return res, nil
}

// recordCall remembers a call's signature inside the call's write,
// refusing a replay, and forgets those older than the window.
func (k *Keeper) recordCall(tx *state.Txn, name, sig string, ts int64, now time.Time) error {
	seen := &state.TriggerSeen{Trigger: name, Seen: map[string]int64{}}
	if old := tx.TriggerSeen(nil, name); old != nil {
		if _, dup := old.Seen[sig]; dup {
			return k.refuseTrigger(name, RefusedReplay, &Error{Code: CodeConflict, Field: notify.HeaderSignature,
				Message: "replay: this exact call (same timestamp, body and signature) was accepted before"})
		}
		for s, at := range old.Seen {
			if now.Sub(time.Unix(at, 0)) <= TriggerWindow+time.Minute {
				seen.Seen[s] = at
			}
		}
	}
	if len(seen.Seen) >= maxTriggerSeen {
		return k.refuseTrigger(name, RefusedTooMany, &Error{Code: CodeConflict,
			Message: fmt.Sprintf("too_many: %d calls within %v; wait for older ones to age out", len(seen.Seen), TriggerWindow)})
	}
	seen.Seen[sig] = ts
	return tx.PutTriggerSeen(seen)
}

// errNotSigned answers a call no trigger of that name accepts: a wrong
// signature and an unknown name get the same answer.
func errNotSigned(name string) *Error {
	return &Error{Code: CodeUnauthorized, Field: notify.HeaderSignature,
		Message: fmt.Sprintf("bad_signature: no trigger %q accepts this signature over the body and timestamp (check the trigger name and its secret)", name)}
}

// doActionTx does a prepared action inside the call's write, adding what
// it stores to runs and launches; a refusal (the state changed since the
// action was checked) is an *actionFailed.
func (k *Keeper) doActionTx(tx *state.Txn, actor string, p prepared, runs *[]*state.Run, launches *[]*state.Launch) error {
	field := fmt.Sprintf("actions[%d]", p.index)
	if p.run != nil {
		run := newRun(actor, *p.run)
		if err := k.createRunTx(tx, actor, p.run, run); err != nil {
			return &actionFailed{actionError(p.index, field+".run", err)}
		}
		*runs = append(*runs, run)
	}
	for _, pl := range p.launches {
		l, err := k.launchTx(tx, actor, pl.spec, pl.start)
		if err != nil {
			return &actionFailed{actionError(p.index, field+".launch", err)}
		}
		*launches = append(*launches, l)
	}
	return nil
}

// actionError says why action i cannot be done; an error field of the run
// spec or launch spec (e.g. "params.channel_id") is put under prefix
// (e.g. "actions[1].launch"), naming the trigger's own field where the
// spec's has another name.
func actionError(i int, prefix string, err error) ActionError {
	var e *Error
	if !errors.As(err, &e) {
		return ActionError{Action: i, Field: prefix, Message: err.Error()}
	}
	field := e.Field
	if strings.HasSuffix(prefix, ".launch") {
		switch {
		case field == "run": // the trigger chose the run by its labels
			field = "run_labels"
		case field == "at":
			field = "at_secs"
		}
	}
	if field != "" {
		field = prefix + "." + field
	} else {
		field = prefix
	}
	return ActionError{Action: i, Field: field, Message: e.Message}
}

// prepareAction renders an action for a payload and checks it can be
// done now, as CreateRun and Launch check theirs; adding is how many
// launches the call's earlier actions add.
func (k *Keeper) prepareAction(r *state.Reader, i int, a state.TriggerAction, data map[string]any, now time.Time, adding int) (prepared, *ActionError) {
	field := fmt.Sprintf("actions[%d]", i)
	p := prepared{index: i}
	fail := func(prefix string, err error) (prepared, *ActionError) {
		e := actionError(i, prefix, err)
		return p, &e
	}
	if len(a.Run) > 0 && string(a.Run) != "null" {
		spec, err := renderRun(field+".run", a.Run, data)
		if err != nil {
			return p, &ActionError{Action: i, Field: err.Field, Message: err.Message}
		}
		if _, err := runDoable(r, spec); err != nil {
			return fail(field+".run", err)
		}
		p.run = spec
		return p, nil
	}
	l := a.Launch
	labels, err := renderMap(field+".launch.run_labels", l.RunLabels, data)
	if err != nil {
		return p, &ActionError{Action: i, Field: err.Field, Message: err.Message}
	}
	params, err := renderMap(field+".launch.params", l.Params, data)
	if err != nil {
		return p, &ActionError{Action: i, Field: err.Field, Message: err.Message}
	}
	if findFormation(r, l.Formation) == nil {
		return fail(field+".launch", notFound("formation", "no formation with hash or name %q", l.Formation))
	}
	var at time.Time
	if l.AtSecs > 0 {
		at = now.Add(time.Duration(l.AtSecs * float64(time.Second)))
	}
	for _, run := range r.RunsIn(nil, state.RunRunning) {
		if !labelsMatch(labels, run.Labels) {
			continue
		}
		spec := LaunchSpec{Formation: l.Formation, Run: run.ID, Params: params, At: at}
		start, serr := k.launchStart(spec, now)
		if serr != nil {
			return fail(field+".launch", serr)
		}
		if _, _, _, err := launchDoable(r, spec, adding+len(p.launches)); err != nil {
			return fail(field+".launch", err)
		}
		p.launches = append(p.launches, preparedLaunch{spec: spec, start: start})
	}
	if len(p.launches) == 0 {
		return fail(field+".launch.run_labels", conflict("no running run has labels %s to launch %q on", fmtLabels(labels), l.Formation))
	}
	return p, nil
}

// labelsMatch reports whether have carries every label of want.
func labelsMatch(want, have map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// fmtLabels prints labels as k=v,k=v in key order.
func fmtLabels(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

func triggerSummary(res *TriggerResult) string {
	var parts []string
	for _, r := range res.Runs {
		parts = append(parts, fmt.Sprintf("started run %s (%s)", r.Name, r.ID))
	}
	for _, l := range res.Launches {
		parts = append(parts, fmt.Sprintf("launch %s on run %s at %s", l.ID, l.Run, l.Start.Format(time.RFC3339)))
	}
	for _, e := range res.Errors {
		parts = append(parts, fmt.Sprintf("action %d not done: %s %s", e.Action, e.Field, e.Message))
	}
	if res.Note != "" {
		parts = append(parts, res.Note)
	}
	return strings.Join(parts, "; ")
}
