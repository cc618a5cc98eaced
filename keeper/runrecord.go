package keeper

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
)

// A run's record is one NATS message (see runlimits.go). New runs keep
// RunRecordHeadroom free for what the keeper adds to them, but a record
// can still outgrow the payload limit: one stored by an older keeper, or
// under a NATS with a larger max_payload, or a run whose stop track
// covers a large fleet. Such a record must not fail the writes that carry
// it — the scheduler's pass is one write over every run, a poll's write
// acknowledges every run stop — so every change to a stored run goes
// through putRun, which fits the record under the limit first: it drops
// the run's oldest history (each piece is in the audit log too), and for
// a stopped run, whose koi are gone, what only running it needed. A
// record that cannot be fitted is refused before anything is changed
// (runTooLarge), and the scheduler leaves that run out of its pass.

// recordSlack is what fitting leaves free under the payload limit, so
// that the small changes that follow (stop acknowledgements, late
// schools) do not trim again at once.
const recordSlack = 1 << 10

// maxTrimmedNotes bounds state.Run.Trimmed (the newest notes stay).
const maxTrimmedNotes = 8

// runTooLarge is why a run's record cannot be written: even trimmed, it
// is over the NATS server's payload limit.
type runTooLarge struct {
	run         string
	size, limit int64
	active      bool
}

func (e *runTooLarge) Error() string {
	if e.active {
		return fmt.Sprintf("run %s: its record takes %d bytes even without its history (guard actions, quarantine failures, live thresholds, warnings), "+
			"more than the NATS server takes in one message (max_payload %d), and the keeper keeps each run in one: stop the run "+
			"(a stopped run's record keeps only what a finished run needs), or raise max_payload", e.run, e.size, e.limit)
	}
	return fmt.Sprintf("run %s: its record takes %d bytes even cut to what a stopped run needs, more than the NATS server takes in one message (max_payload %d): raise max_payload",
		e.run, e.size, e.limit)
}

// putRun stores n, a stored run changed inside tx, first fitting its
// record under the NATS payload limit (fitRun): n becomes what is stored.
// A record that cannot be fitted fails with a too_large *Error wrapping
// *runTooLarge, and nothing is changed.
func (k *Keeper) putRun(tx *state.Txn, n *state.Run) error {
	f, trimmed, err := fitRun(n, k.payloadLimit())
	if err != nil {
		return err
	}
	if len(trimmed) > 0 {
		k.stats.reject(k.log, "run record over the NATS payload limit: trimmed", fmt.Errorf("run %s: left out %s", n.ID, strings.Join(trimmed, "; ")))
		if err := tx.Audit("keeper", "trim run record", n.ID, "over the NATS payload limit; left out "+strings.Join(trimmed, "; ")); err != nil {
			return err
		}
	}
	*n = *f
	return tx.PutRun(n)
}

// putRunOrSkip is putRun for a write that changes several runs: a run
// whose record is over the payload limit is counted under cause and
// skipped (true), and the write goes on with the others.
func (k *Keeper) putRunOrSkip(tx *state.Txn, n *state.Run, cause string) (bool, error) {
	err := k.putRun(tx, n)
	if err != nil && tooLargeRun(err) != "" {
		k.stats.reject(k.log, cause, err)
		return true, nil
	}
	return false, err
}

// tooLargeRun returns the run whose record err says cannot be written,
// or "".
func tooLargeRun(err error) string {
	var e *runTooLarge
	if errors.As(err, &e) {
		return e.run
	}
	return ""
}

// recordSize is the size of run's record as the store encodes it.
func recordSize(run *state.Run) int64 {
	n, err := state.RecordSize(run)
	if err != nil {
		return 1<<63 - 1 // never fits; the store would fail on it too
	}
	return n
}

// fitRun returns n when its record is within limit bytes, else a copy
// trimmed to limit−recordSlack (or as close as it gets, within limit),
// with what it left out. Trimming drops the oldest history first: guard
// actions, quarantine failures, capacity steps between the first and the
// last, live thresholds, warnings. A stopped run then drops what running
// it needed (tokens, target templates and headers, labels) and, last, its
// thresholds, guardrails and capacity search. A record still over limit
// is an error (*Error, too_large, wrapping *runTooLarge).
func fitRun(n *state.Run, limit int64) (*state.Run, []string, error) {
	size := recordSize(n)
	if size <= limit {
		return n, nil, nil
	}
	goal := limit - recordSlack
	r := *n
	var notes []string
	note := func(format string, args ...any) {
		notes = append(notes, fmt.Sprintf(format, args...))
		size = recordSize(&r)
	}
	over := func() bool { return size > goal }
	if over() && len(r.GuardActions) > 0 {
		var d int
		r.GuardActions, d = dropOldest(r.GuardActions, size-goal)
		note("the %d oldest guard actions (in the audit log)", d)
	}
	if over() && r.Quarantine != nil && len(r.Quarantine.Failures) > 0 {
		q := *r.Quarantine
		var d int
		q.Failures, d = dropOldest(q.Failures, size-goal)
		r.Quarantine = &q
		note("the %d oldest quarantine failures", d)
	}
	if over() && r.CapacityResult != nil && len(r.CapacityResult.Steps) > 2 {
		c := *r.CapacityResult
		mid, d := dropOldest(c.Steps[1:len(c.Steps)-1], size-goal)
		c.Steps = slices.Concat(c.Steps[:1], mid, c.Steps[len(c.Steps)-1:])
		r.CapacityResult = &c
		note("%d capacity steps between the first and the last (in the audit log)", d)
	}
	if over() && len(r.LiveThresholds) > 0 {
		var d int
		r.LiveThresholds, d = dropOldest(r.LiveThresholds, size-goal)
		note("%d live threshold records (their failures are in the audit log)", d)
	}
	if over() && len(r.Warnings) > 0 {
		d := len(r.Warnings)
		r.Warnings = nil
		note("%d warnings", d)
	}
	if r.State == state.RunStopped {
		// Its koi are gone: nothing runs it again.
		if over() && len(r.Target.Tokens) > 0 {
			d := len(r.Target.Tokens)
			r.Target.Tokens = nil
			note("target.tokens (%d; the run is stopped)", d)
		}
		if over() {
			r.Target = state.Target{APIBase: notify.Cut(r.Target.APIBase, 1024), WebsocketURL: notify.Cut(r.Target.WebsocketURL, 1024)}
			note("target templates, headers and subprotocols (the run is stopped)")
		}
		if over() && len(r.Labels) > 0 {
			d := len(r.Labels)
			r.Labels = nil
			note("labels (%d; the run is stopped)", d)
		}
		if over() {
			r.Thresholds, r.LiveThresholds, r.Guardrails, r.GuardActions = nil, nil, nil, nil
			r.Capacity, r.CapacityResult, r.Quarantine = nil, nil, nil
			r.Name, r.Owner, r.EndReason = notify.Cut(r.Name, maxName), notify.Cut(r.Owner, maxName), notify.Cut(r.EndReason, 1024)
			note("thresholds, guardrails, capacity search and quarantine (the run is stopped; its report judges no thresholds)")
		}
	}
	if size > limit {
		e := &runTooLarge{run: n.ID, size: size, limit: limit, active: r.Active()}
		return nil, nil, &Error{Code: CodeTooLarge, Message: e.Error(), Err: e}
	}
	r.Trimmed = append(slices.Clone(r.Trimmed), notes...)
	if len(r.Trimmed) > maxTrimmedNotes {
		r.Trimmed = r.Trimmed[len(r.Trimmed)-maxTrimmedNotes:]
	}
	if recordSize(&r) > limit { // the notes themselves
		r.Trimmed = nil
	}
	return &r, notes, nil
}

// dropOldest returns a copy of list without its first elements, as many
// as it takes for their encoding to free need bytes, and how many it
// dropped.
func dropOldest[T any](list []T, need int64) ([]T, int) {
	i, freed := 0, int64(0)
	for i < len(list) && freed < need {
		n, _ := state.RecordSize(list[i])
		freed += n + 1 // and its comma
		i++
	}
	return slices.Clone(list[i:]), i
}
