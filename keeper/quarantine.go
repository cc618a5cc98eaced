package keeper

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// Quarantine: a run whose schools keep failing — a school lost its lease
// while holding the run's koi (a crash), or a school closed the run's koi
// at its memory ceiling — is paused by the keeper once QuarantineAfter
// failures fall within QuarantineWindow, with the reason on the run, in
// the audit log (actor "quarantine") and in a run.quarantined notice.
// Without it a run that kills schools (a memory bomb) would be handed to
// the next school, and kill that one too. Resuming the run clears the
// count.

// Quarantine defaults.
const (
	DefaultQuarantineAfter  = 3
	DefaultQuarantineWindow = 15 * time.Minute
	// quarantineActor is the audit and switch actor of a quarantine.
	quarantineActor = "quarantine"
	// maxFailureDetail bounds a failure's detail (it comes from a school).
	maxFailureDetail = 300
)

// quarantineAfter returns the failure count that pauses a run (0: never).
func (c Config) quarantineAfter() int {
	switch {
	case c.QuarantineAfter < 0:
		return 0
	case c.QuarantineAfter == 0:
		return DefaultQuarantineAfter
	}
	return c.QuarantineAfter
}

func (c Config) quarantineWindow() time.Duration {
	if c.QuarantineWindow == 0 {
		return DefaultQuarantineWindow
	}
	return c.QuarantineWindow
}

// validateQuarantine returns the quarantine settings' problems.
func (c Config) validateQuarantine() []error {
	var errs []error
	if c.QuarantineAfter < -1 || c.QuarantineAfter > 1000 {
		errs = append(errs, fmt.Errorf("quarantine after: %d is outside -1 (never) .. 1000", c.QuarantineAfter))
	}
	if c.QuarantineWindow < 0 {
		errs = append(errs, fmt.Errorf("quarantine window: %v is negative", c.QuarantineWindow))
	}
	return errs
}

// quarantined is a run paused by the quarantine in a write: what to
// publish and tell once the write commits.
type quarantined struct {
	control wire.Control
	notice  notify.Notice
}

// runFailure is a failure to count against a run.
type runFailure struct {
	run string
	state.RunFailure
}

// pressureFailures lists the runs a polling school says it closed at its
// memory ceiling, of those it holds koi of (held): a school cannot blame
// a run it was never given.
func pressureFailures(req *wire.PollRequest, held map[string]int, now time.Time) []runFailure {
	var out []runFailure
	for _, rs := range req.Runs {
		if rs.Pressure == "" || held[rs.Run] <= 0 {
			continue
		}
		ep := rs.PressureAt.UTC().Format(time.RFC3339Nano)
		out = append(out, runFailure{run: rs.Run, RunFailure: state.RunFailure{At: now, School: req.School,
			Cause: state.FailureMemory, Detail: notify.Clip(rs.Pressure, maxFailureDetail), Episode: ep}})
	}
	return out
}

// lostSchoolFailures lists, for one run, the schools that lost their
// lease while holding its koi (an assignment with koi, a last status
// with koi of the run not idle): they crashed, were killed, or were cut
// off — a run that keeps doing that to schools is suspect.
func lostSchoolFailures(tx *state.Txn, run string, cur []*state.Assignment, live []*state.School, now time.Time) []runFailure {
	if len(live) == 0 {
		return nil // every school lost at once: the keeper is cut off, not the schools crashed
	}
	var out []runFailure
	for _, a := range cur {
		if a.Count() <= 0 || slices.ContainsFunc(live, func(s *state.School) bool { return s.ID == a.School }) {
			continue
		}
		sc := tx.School(nil, a.School)
		if sc == nil || sc.Status == nil || runIdle(sc.Status.Runs, run) {
			continue
		}
		out = append(out, runFailure{run: run, RunFailure: state.RunFailure{At: now, School: a.School, Cause: state.FailureCrash,
			Detail: fmt.Sprintf("school %s lost its lease (last poll %s) holding koi [%d, %d) of the run",
				notify.Clip(a.School, 80), sc.LastSeen.UTC().Format(time.RFC3339), a.From, a.To),
			Episode: sc.LastSeen.UTC().Format(time.RFC3339Nano)}})
	}
	return out
}

// noteFailuresTx records failures on their runs inside a write and pauses
// the runs they take to the limit. Only running runs count (a paused run
// has no koi to blame); a failure already recorded (same school, cause and
// episode) counts once.
func (k *Keeper) noteFailuresTx(tx *state.Txn, fs []runFailure) ([]quarantined, error) {
	after := k.cfg.quarantineAfter()
	if after == 0 || len(fs) == 0 {
		return nil, nil
	}
	window := k.cfg.quarantineWindow()
	var out []quarantined
	for _, f := range fs {
		run := tx.Run(nil, f.run)
		if run == nil || run.State != state.RunRunning || run.Quarantined() {
			continue
		}
		q := &state.Quarantine{}
		if run.Quarantine != nil {
			for _, old := range run.Quarantine.Failures {
				if f.At.Sub(old.At) < window {
					q.Failures = append(q.Failures, old)
				}
			}
		}
		if slices.ContainsFunc(q.Failures, func(o state.RunFailure) bool {
			return o.School == f.School && o.Cause == f.Cause && o.Episode == f.Episode
		}) {
			continue
		}
		q.Failures = append(q.Failures, f.RunFailure)
		if n := len(q.Failures) - max(after, 10); n > 0 {
			q.Failures = q.Failures[n:] // bounded; the newest count
		}
		n := *run
		n.Quarantine = q
		if len(q.Failures) < after {
			k.log.Warn("school failure counted against a run", "run", run.ID, "school", f.School, "cause", f.Cause,
				"failures", len(q.Failures), "quarantine_after", after, "detail", f.Detail)
			// A record that cannot change leaves the other failures to count.
			if _, err := k.putRunOrSkip(tx, &n, "quarantine: a run's record over the NATS payload limit"); err != nil {
				return nil, err
			}
			continue
		}
		q.Reason = fmt.Sprintf("paused after %d school failures within %v (last: %s on school %s: %s)",
			len(q.Failures), window, f.Cause, notify.Clip(f.School, 80), f.Detail)
		q.At = tx.Now()
		if skipped, err := k.putRunOrSkip(tx, &n, "quarantine: a run's record over the NATS payload limit"); err != nil {
			return nil, err
		} else if skipped {
			continue
		}
		c, paused, err := k.setRunStateTx(tx, quarantineActor, run.ID, wire.Paused)
		if err != nil {
			return nil, err
		}
		if err := tx.Audit(quarantineActor, "quarantine run", run.ID, q.Reason); err != nil {
			return nil, err
		}
		out = append(out, quarantined{control: c, notice: quarantineNotice(paused)})
	}
	return out, nil
}

// afterQuarantine publishes the pauses of a committed write and tells
// about them.
func (k *Keeper) afterQuarantine(qs []quarantined) {
	for _, q := range qs {
		k.publishControl(q.control)
		k.log.Warn("run quarantined: paused for its school failures", "run", q.notice.Run, "reason", q.notice.Text)
		k.notify(q.notice)
	}
	if len(qs) > 0 {
		k.Kick()
	}
}

// quarantineNotice tells that the keeper paused a run for its failures.
func quarantineNotice(run *state.Run) notify.Notice {
	q := run.Quarantine
	fields := map[string]string{"failures": strconv.Itoa(len(q.Failures)), "epoch": strconv.FormatUint(run.Switch.Epoch, 10)}
	if len(q.Failures) > 0 {
		last := q.Failures[len(q.Failures)-1]
		fields["last_cause"], fields["last_school"] = last.Cause, last.School
	}
	return notify.Notice{Kind: notify.NoticeRunQuarantined, Run: run.ID, RunName: run.Name, Actor: quarantineActor, Labels: run.Labels,
		Title:  fmt.Sprintf("Run %s quarantined: paused after %d school failures", run.Name, len(q.Failures)),
		Text:   fmt.Sprintf("Run %q %s. Resume it once the cause is fixed.", run.Name, q.Reason),
		Fields: fields}
}
