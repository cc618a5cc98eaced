package keeper

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// A run is one record in the state bucket, one NATS message: it must fit
// the server's max_payload (1 MiB by default on an external NATS) not
// only when it is created but for its whole life, as the keeper adds to
// it (a stop, its tracking, guard actions, live threshold failures,
// capacity steps, quarantine failures). A record that grows past the
// limit cannot be written again, and the writes that carry it (the
// scheduler's pass is one write over every run) fail with it. So a run is
// refused at creation unless its fields are within the bounds below and
// its record, grown as far as its own spec lets it (every threshold
// failing live, every capacity step taken), leaves RunRecordHeadroom
// free under the payload limit.

// Limits on what a run carries.
const (
	// MaxRunLabels bounds a run's labels (each key at most maxName bytes,
	// each value at most maxLabelValue).
	MaxRunLabels = 64
	// maxLabelValue is the longest label value.
	maxLabelValue = 200
	// MaxThresholdConditions bounds a run's threshold conditions over
	// every key: each becomes a live threshold on the run's record.
	MaxThresholdConditions = 200
	// maxConditionText is the longest threshold or guardrail condition as
	// written ("p95 < 300ms" takes 11).
	maxConditionText = 200
	// maxGuardFor is the longest guardrail duration as written ("5m").
	maxGuardFor = 64
	// RunRecordHeadroom is what a run's record keeps free under the NATS
	// payload limit at creation, for what the keeper adds to it whatever
	// its spec: the stop (switch, end reason, ~1 KiB), the newest
	// state.MaxGuardActions guard actions (at most ~1 KiB each with
	// 200-byte rule names and keys: ~50 KiB), the quarantine's failures
	// (10 by default, ~0.5 KiB each) and a stop track over the schools
	// (~0.3 KiB per school of 128-byte id; the rest of the 64 KiB covers
	// tens of them, hundreds of short ids). It costs a run 6% of a 1 MiB
	// payload. Whatever still overflows it is trimmed when written
	// (fitRun), oldest history first.
	RunRecordHeadroom = 64 << 10
)

// checkRunBounds checks the run spec's fields that have no bound
// elsewhere, each against its limit.
func checkRunBounds(s *RunSpec) *Error {
	if s.Owner != "" {
		if err := checkName("owner", s.Owner); err != nil {
			return err
		}
	}
	if len(s.Labels) > MaxRunLabels {
		return invalid("labels", "%d labels; at most %d (keys of at most %d bytes, values of at most %d)", len(s.Labels), MaxRunLabels, maxName, maxLabelValue)
	}
	n := 0
	for key, exprs := range s.Thresholds {
		for i, e := range exprs {
			n++
			if len(e) > maxConditionText {
				return invalid(fmt.Sprintf("thresholds[%q][%d]", clipName(key), i), "is %d bytes long; at most %d", len(e), maxConditionText)
			}
		}
	}
	if n > MaxThresholdConditions {
		return invalid("thresholds", "%d conditions in all; at most %d", n, MaxThresholdConditions)
	}
	for i, r := range s.Guardrails {
		field := fmt.Sprintf("guardrails[%d]", i)
		switch {
		case len(r.When) > maxConditionText:
			return invalid(field+".when", "is %d bytes long; at most %d", len(r.When), maxConditionText)
		case len(r.For) > maxGuardFor:
			return invalid(field+".for", "is %d bytes long; at most %d", len(r.For), maxGuardFor)
		case len(r.Action) > maxGuardFor:
			return invalid(field+".action", "is %d bytes long; at most %d", len(r.Action), maxGuardFor)
		}
	}
	// Schools refuse a run spec with longer templates (wire.RunSpec).
	for _, t := range []struct{ field, text string }{{"target.api_base", s.Target.APIBase}, {"target.websocket_url", s.Target.WebsocketURL},
		{"target.token", s.Target.Token}, {"target.user_id", s.Target.UserID}} {
		if len(t.text) > wire.MaxTemplate {
			return invalid(t.field, "is %d bytes long; at most %d", len(t.text), wire.MaxTemplate)
		}
	}
	for i, t := range s.Target.Tokens {
		if len(t) > wire.MaxTemplate {
			return invalid(fmt.Sprintf("target.tokens[%d]", i), "is %d bytes long; at most %d", len(t), wire.MaxTemplate)
		}
	}
	return nil
}

// checkRunRecord refuses (too_large, on the run's largest field) a new
// run whose record, grown as far as its spec lets it, would not leave
// RunRecordHeadroom under the NATS connection's payload limit.
func (k *Keeper) checkRunRecord(run *state.Run) error {
	limit := k.payloadLimit()
	if limit <= RunRecordHeadroom {
		return nil // a NATS this small takes no run: the write says so
	}
	n, err := grownRunSize(run)
	if err != nil {
		return err
	}
	budget := limit - RunRecordHeadroom
	if n <= budget {
		return nil
	}
	parts := runParts(run)
	var list []string
	for _, p := range parts {
		if p.size > 0 {
			list = append(list, fmt.Sprintf("%s %d", p.field, p.size))
		}
	}
	return &Error{Code: CodeTooLarge, Field: parts[0].field, Message: fmt.Sprintf("the run's record would take %d bytes as it grows (%s bytes); "+
		"the keeper keeps each run in one NATS message and keeps %d of the server's max_payload of %d bytes free for what it adds to a run later "+
		"(its stop, guard actions, quarantine), so at most %d: make it smaller, or raise max_payload",
		n, strings.Join(list, ", "), RunRecordHeadroom, limit, budget)}
}

// grownRunSize is the size of run's record once its spec has added all it
// can: a live threshold for every condition, failing, and every step of
// its capacity search.
func grownRunSize(run *state.Run) (int64, error) {
	g := *run
	at := time.Date(2006, 1, 2, 15, 4, 5, 999999999, time.UTC)
	for key, exprs := range run.Thresholds {
		for _, e := range exprs {
			g.LiveThresholds = append(g.LiveThresholds, state.LiveThreshold{Key: key, Expr: e, Failures: 1 << 30, FailedSecs: 1e9 + 0.123456789, LastFailedAt: at})
		}
	}
	if c := run.Capacity; c != nil && c.Step > 0 {
		res := state.CapacityResult{Sustained: c.Max, Done: true, StepFrom: at}
		if run.CapacityResult != nil {
			res = *run.CapacityResult
		}
		key := capacityKey(c)
		p := 1e9 + 0.123456789
		steps := min(max(0, (c.Max-c.Start)/c.Step+1), maxCapacitySteps)
		res.Steps = slices.Repeat([]state.CapacityStep{{Koi: c.Max, From: at, To: at, Key: key, Count: 1 << 60, Rate: p, ErrorRate: p, P95: &p}}, steps)
		g.CapacityResult = &res
	}
	return state.RecordSize(&g)
}

// runPart is a part of a run's record that its creator chose, and what
// it takes of the grown record.
type runPart struct {
	field string
	size  int64
}

// runParts returns the parts of run's grown record its creator chose,
// largest first: each the size it adds.
func runParts(run *state.Run) []runPart {
	full, _ := grownRunSize(run)
	without := func(field string, drop func(*state.Run)) runPart {
		r := *run
		drop(&r)
		n, _ := grownRunSize(&r)
		return runPart{field, full - n}
	}
	parts := []runPart{
		without("target.tokens", func(r *state.Run) { r.Target.Tokens = nil }),
		without("target", func(r *state.Run) { r.Target = state.Target{Tokens: r.Target.Tokens} }),
		without("labels", func(r *state.Run) { r.Labels = nil }),
		without("thresholds", func(r *state.Run) { r.Thresholds = nil }),
		without("guardrails", func(r *state.Run) { r.Guardrails = nil }),
		without("capacity", func(r *state.Run) { r.Capacity, r.CapacityResult = nil, nil }),
		without("warnings", func(r *state.Run) { r.Warnings = nil }),
		without("name", func(r *state.Run) { r.Name = "" }),
		without("owner", func(r *state.Run) { r.Owner = "" }),
	}
	slices.SortStableFunc(parts, func(a, b runPart) int { return int(b.size - a.size) })
	return parts
}
