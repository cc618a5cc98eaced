package api

import (
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
)

// The edge's conversions: the keeper's stored and live types into the
// contract's views. A struct whose fields match one for one converts
// directly (the compiler then refuses a stored field renamed or retyped
// until its line here says how clients keep seeing it); the others are
// copied field by field. Slices keep nil as nil and empty as empty,
// since a field without omitempty shows null and [] differently.

// mapSlice converts every element of in with f; nil stays nil.
func mapSlice[S, C any](in []S, f func(S) C) []C {
	if in == nil {
		return nil
	}
	out := make([]C, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func runOut(r *state.Run) *contract.Run {
	if r == nil {
		return nil
	}
	return &contract.Run{
		ID: r.ID, Name: r.Name, Owner: r.Owner, Labels: r.Labels,
		Target:      contract.Target(r.Target),
		BehaviorSet: r.BehaviorSet, Koi: r.Koi, Ramp: r.Ramp, TimeScale: r.TimeScale,
		ActivitySigma: r.ActivitySigma, DurationMS: r.DurationMS,
		State:     contract.RunState(r.State),
		Switch:    contract.Switch(r.Switch),
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, EndedAt: r.EndedAt, EndReason: r.EndReason,
		Stop:                stopOut(r.Stop),
		Thresholds:          r.Thresholds,
		Warnings:            r.Warnings,
		ThresholdWindowSecs: r.ThresholdWindowSecs,
		LiveThresholds: mapSlice(r.LiveThresholds, func(l state.LiveThreshold) contract.LiveThreshold {
			return contract.LiveThreshold(l)
		}),
		Guardrails:  rulesOut(r.Guardrails),
		ShedPercent: r.ShedPercent,
		GuardActions: mapSlice(r.GuardActions, func(a state.GuardAction) contract.GuardAction {
			return contract.GuardAction(a)
		}),
		Capacity:       capacityOut(r.Capacity),
		CapacityResult: capacityResultOut(r.CapacityResult),
		Quarantine:     quarantineOut(r.Quarantine),
		Trimmed:        r.Trimmed,
	}
}

func stopOut(t *state.StopTrack) *contract.StopTrack {
	if t == nil {
		return nil
	}
	c := contract.StopTrack(*t)
	return &c
}

func rulesOut(rs []state.GuardrailRule) []contract.GuardrailRule {
	return mapSlice(rs, func(r state.GuardrailRule) contract.GuardrailRule { return contract.GuardrailRule(r) })
}

func capacityOut(c *state.CapacitySpec) *contract.CapacitySpec {
	if c == nil {
		return nil
	}
	out := &contract.CapacitySpec{Start: c.Start, Step: c.Step, StepSecs: c.StepSecs, Max: c.Max, Then: c.Then}
	if c.Flatten != nil {
		f := contract.CapacityFlatten(*c.Flatten)
		out.Flatten = &f
	}
	return out
}

func capacityResultOut(c *state.CapacityResult) *contract.CapacityResult {
	if c == nil {
		return nil
	}
	return &contract.CapacityResult{Sustained: c.Sustained, Done: c.Done, Reason: c.Reason, StepFrom: c.StepFrom,
		Steps: mapSlice(c.Steps, func(s state.CapacityStep) contract.CapacityStep { return contract.CapacityStep(s) })}
}

func quarantineOut(q *state.Quarantine) *contract.Quarantine {
	if q == nil {
		return nil
	}
	return &contract.Quarantine{Reason: q.Reason, At: q.At,
		Failures: mapSlice(q.Failures, func(f state.RunFailure) contract.RunFailure { return contract.RunFailure(f) })}
}

func assignmentsOut(as []state.Assignment) []contract.Assignment {
	return mapSlice(as, func(a state.Assignment) contract.Assignment { return contract.Assignment(a) })
}

func launchOut(l *state.Launch) *contract.Launch {
	if l == nil {
		return nil
	}
	return &contract.Launch{
		ID: l.ID, Run: l.Run, Formation: l.Formation, Name: l.Name, Params: l.Params,
		Start: l.Start, BeginWithinMS: l.BeginWithinMS,
		State:     contract.LaunchState(l.State),
		PlannedAt: l.PlannedAt, Connected: l.Connected, Count: l.Count,
		Shares:  mapSlice(l.Shares, func(s state.Share) contract.Share { return contract.Share(s) }),
		Started: l.Started, Finished: l.Finished, Failed: l.Failed, Cancelled: l.Cancelled, MetricKey: l.MetricKey,
		FirstStart: l.FirstStart, LastStart: l.LastStart, Outcome: l.Outcome,
		CreatedAt: l.CreatedAt, CreatedBy: l.CreatedBy, EndedAt: l.EndedAt,
	}
}

func launchesOut(ls []*state.Launch) []*contract.Launch { return mapSlice(ls, launchOut) }

func schoolOut(s *state.School) *contract.School {
	if s == nil {
		return nil
	}
	c := contract.School{ID: s.ID, Software: s.Software, Capacity: s.Capacity, FirstSeen: s.FirstSeen,
		LastSeen: s.LastSeen, ClockOffsetMS: s.ClockOffsetMS}
	if s.Status != nil {
		st := contract.SchoolStatus(*s.Status)
		c.Status = &st
	}
	return &c
}

func globalSwitchOut(g *state.GlobalSwitch) *contract.GlobalSwitch {
	if g == nil {
		return nil
	}
	return &contract.GlobalSwitch{Switch: contract.Switch(g.Switch), Stop: stopOut(g.Stop)}
}

func runViewOut(v *keeper.RunView) *contract.RunView {
	if v == nil {
		return nil
	}
	return &contract.RunView{Run: runOut(v.Run), Assigned: v.Assigned, Partial: v.Partial,
		Assignments: assignmentsOut(v.Assignments), KoiNow: v.KoiNow, Refused: v.Refused,
		StopCompleteMS: v.StopCompleteMS, GuardView: guardViewOut(v.GuardView)}
}

func guardViewOut(g keeper.GuardView) contract.GuardView {
	return contract.GuardView{EffectiveKoi: g.EffectiveKoi,
		LiveNow: mapSlice(g.LiveNow, func(l keeper.LiveThresholdView) contract.LiveThresholdView {
			return contract.LiveThresholdView(l)
		}),
		GuardNow: mapSlice(g.GuardNow, func(r keeper.GuardrailView) contract.GuardrailView { return contract.GuardrailView(r) }),
	}
}

func schoolViewsOut(vs []keeper.SchoolView) []contract.SchoolView {
	return mapSlice(vs, func(v keeper.SchoolView) contract.SchoolView {
		return contract.SchoolView{School: schoolOut(v.School), Health: v.Health,
			Assignments: assignmentsOut(v.Assignments), Assigned: v.Assigned}
	})
}

func switchViewOut(v keeper.SwitchView) contract.SwitchView {
	return contract.SwitchView{GlobalSwitch: globalSwitchOut(v.GlobalSwitch), StopCompleteMS: v.StopCompleteMS}
}

func statusOut(st *keeper.Status) *contract.Status {
	if st == nil {
		return nil
	}
	return &contract.Status{Switch: switchViewOut(st.Switch), Runs: mapSlice(st.Runs, runViewOut),
		Schools: schoolViewsOut(st.Schools), Launches: launchesOut(st.Launches), Time: st.Time}
}

// RunOf returns a stored run as the API shows it, for a command that
// runs the keeper in its own process (koipond demo).
func RunOf(r *state.Run) *contract.Run { return runOut(r) }

// StatusOf returns the keeper's status as GET /api/v1/status shows it,
// for a command that runs the keeper in its own process (koipond demo).
func StatusOf(st *keeper.Status) *contract.Status { return statusOut(st) }

func reportOut(r *state.Report) *contract.Report {
	if r == nil {
		return nil
	}
	return &contract.Report{
		Run: r.Run, Name: r.Name, State: contract.RunState(r.State), Final: r.Final, CreatedAt: r.CreatedAt,
		From: r.From, To: r.To, DurationSecs: r.DurationSecs, EndReason: r.EndReason, Koi: r.Koi,
		Keys:      mapSlice(r.Keys, reportKeyOut),
		Websocket: contract.ReportWebsocket(r.Websocket),
		Launches: mapSlice(r.Launches, func(l state.ReportLaunch) contract.ReportLaunch {
			return contract.ReportLaunch{ID: l.ID, Name: l.Name, State: contract.LaunchState(l.State), Start: l.Start,
				Planned: l.Planned, Started: l.Started, Finished: l.Finished, Failed: l.Failed, Cancelled: l.Cancelled,
				Connected: l.Connected, SpreadMS: l.SpreadMS, Key: l.Key, Steps: mapSlice(l.Steps, reportKeyOut),
				FirstDelayMS: l.FirstDelayMS, Outcome: l.Outcome,
				Schools: mapSlice(l.Schools, func(s state.ReportShare) contract.ReportShare { return contract.ReportShare(s) })}
		}),
		Thresholds: mapSlice(r.Thresholds, func(t state.ThresholdResult) contract.ThresholdResult {
			return contract.ThresholdResult(t)
		}),
		Passed:   r.Passed,
		Capacity: capacityResultOut(r.Capacity),
		GuardActions: mapSlice(r.GuardActions, func(a state.GuardAction) contract.GuardAction {
			return contract.GuardAction(a)
		}),
		ShedPercent: r.ShedPercent,
		Fidelity:    fidelityOut(r.Fidelity),
	}
}

func fidelityOut(f *state.Fidelity) *contract.Fidelity {
	if f == nil {
		return nil
	}
	return &contract.Fidelity{Verdict: f.Verdict, Summary: f.Summary, KoiMinutes: f.KoiMinutes,
		PlannedKoiMinutes: f.PlannedKoiMinutes, MaxAbsZ: f.MaxAbsZ, Notes: f.Notes,
		Behaviors: mapSlice(f.Behaviors, func(b state.FidelityBehavior) contract.FidelityBehavior {
			return contract.FidelityBehavior{Behavior: b.Behavior, Key: b.Key, Frequency: b.Frequency, Expected: b.Expected,
				SE: b.SE, Started: b.Started, Completed: b.Completed, Halted: b.Halted, Failed: b.Failed, Canceled: b.Canceled,
				Z: b.Z, ZStarted: b.ZStarted, Verdict: b.Verdict, Cause: b.Cause, HaltReasons: b.HaltReasons,
				Reasons: reasonsOut(b.Reasons)}
		}),
		Launches: mapSlice(f.Launches, func(l state.FidelityLaunch) contract.FidelityLaunch { return contract.FidelityLaunch(l) }),
	}
}

func behaviorSetOut(b *state.BehaviorSet) *contract.BehaviorSet {
	if b == nil {
		return nil
	}
	return &contract.BehaviorSet{Hash: b.Hash, Name: b.Name, Version: b.Version,
		Files:     mapSlice(b.Files, func(f state.File) contract.File { return contract.File(f) }),
		Behaviors: b.Behaviors, Warnings: b.Warnings, CreatedAt: b.CreatedAt, CreatedBy: b.CreatedBy}
}

func formationOut(f *state.Formation) *contract.Formation {
	if f == nil {
		return nil
	}
	return &contract.Formation{Hash: f.Hash, Name: f.Name, Version: f.Version, File: contract.File(f.File),
		Percent: f.Percent, BeginWithinMS: f.BeginWithinMS, Steps: f.Steps, CreatedAt: f.CreatedAt, CreatedBy: f.CreatedBy,
		Params: mapSlice(f.Params, func(p state.FormationParam) contract.FormationParam { return contract.FormationParam(p) })}
}

func auditOut(e *state.AuditEntry) *contract.AuditEntry {
	if e == nil {
		return nil
	}
	c := contract.AuditEntry(*e)
	return &c
}

func guardrailsViewOut(v *keeper.GuardrailsView) *contract.GuardrailsView {
	if v == nil {
		return nil
	}
	out := &contract.GuardrailsView{Warnings: v.Warnings}
	if g := v.Guardrails; g != nil {
		out.Guardrails = &contract.Guardrails{Rules: rulesOut(g.Rules), UpdatedAt: g.UpdatedAt, UpdatedBy: g.UpdatedBy}
	}
	return out
}

func metricsOut(m *keeper.MetricsSummary) *contract.MetricsSummary {
	if m == nil {
		return nil
	}
	return &contract.MetricsSummary{Run: m.Run, From: m.From, To: m.To,
		Keys:    mapSlice(m.Keys, keySummaryOut),
		Traffic: contract.Traffic(m.Traffic)}
}

func comparisonOut(c *verdict.Comparison) *contract.Comparison {
	if c == nil {
		return nil
	}
	return &contract.Comparison{Baseline: c.Baseline, BaselineName: c.BaselineName, Tolerance: c.Tolerance,
		ErrorTolerancePP: c.ErrorTolerancePP, MinLatencyDeltaMS: c.MinLatencyDeltaMS, SketchAccuracy: c.SketchAccuracy,
		Regressed: c.Regressed, Improved: c.Improved,
		Keys: mapSlice(c.Keys, func(k verdict.KeyComparison) contract.KeyComparison {
			return contract.KeyComparison{Key: k.Key, Verdict: k.Verdict,
				Stats: mapSlice(k.Stats, func(s verdict.StatComparison) contract.StatComparison { return contract.StatComparison(s) })}
		}),
		Thresholds: mapSlice(c.Thresholds, func(t verdict.ThresholdComparison) contract.ThresholdComparison {
			return contract.ThresholdComparison(t)
		}),
		Launches: mapSlice(c.Launches, func(l verdict.LaunchComparison) contract.LaunchComparison {
			return contract.LaunchComparison(l)
		}),
	}
}

// MetricsOf returns a run's metrics summary as GET
// /api/v1/runs/:id/metrics shows it, for koipond demo.
func MetricsOf(m *keeper.MetricsSummary) *contract.MetricsSummary { return metricsOut(m) }

// RunSpecIn returns a run request as the keeper core takes it; koipond
// demo, which runs the keeper in its own process, creates its run with
// it.
func RunSpecIn(s contract.RunSpec) keeper.RunSpec {
	return keeper.RunSpec{Name: s.Name, Owner: s.Owner, Labels: s.Labels, Target: state.Target(s.Target),
		BehaviorSet: s.BehaviorSet, Koi: s.Koi, Ramp: s.Ramp, TimeScale: s.TimeScale, ActivitySigma: s.ActivitySigma,
		DurationSecs: s.DurationSecs, Paused: s.Paused, Thresholds: s.Thresholds, ThresholdWindowSecs: s.ThresholdWindowSecs,
		Guardrails: rulesIn(s.Guardrails), Capacity: capacityIn(s.Capacity)}
}

func rulesIn(rs []contract.GuardrailRule) []state.GuardrailRule {
	return mapSlice(rs, func(r contract.GuardrailRule) state.GuardrailRule { return state.GuardrailRule(r) })
}

func capacityIn(c *contract.CapacitySpec) *state.CapacitySpec {
	if c == nil {
		return nil
	}
	out := &state.CapacitySpec{Start: c.Start, Step: c.Step, StepSecs: c.StepSecs, Max: c.Max, Then: c.Then}
	if c.Flatten != nil {
		f := state.CapacityFlatten(*c.Flatten)
		out.Flatten = &f
	}
	return out
}

func webhookViewOut(v keeper.WebhookView) contract.WebhookView {
	st := v.Status
	return contract.WebhookView{Name: v.Name, URL: v.URL, Format: v.Format, Kinds: v.Kinds, Labels: v.Labels,
		Signed: v.Signed, CreatedAt: v.CreatedAt, CreatedBy: v.CreatedBy, UpdatedAt: v.UpdatedAt,
		Status: contract.WebhookStatus{Queued: st.Queued, Delivered: st.Delivered, Failed: st.Failed, Dropped: st.Dropped,
			LastSuccess: st.LastSuccess, LastError: st.LastError, LastErrorAt: st.LastErrorAt,
			Attempts: mapSlice(st.Attempts, deliveryOut)}}
}

func deliveryOut(a notify.DeliveryAttempt) contract.DeliveryAttempt {
	return contract.DeliveryAttempt(a)
}

func triggerActionsOut(as []state.TriggerAction) []contract.TriggerAction {
	return mapSlice(as, func(a state.TriggerAction) contract.TriggerAction {
		out := contract.TriggerAction{Match: a.Match, Run: a.Run}
		if a.Launch != nil {
			l := contract.TriggerLaunch(*a.Launch)
			out.Launch = &l
		}
		return out
	})
}

func triggerActionsIn(as []contract.TriggerAction) []state.TriggerAction {
	return mapSlice(as, func(a contract.TriggerAction) state.TriggerAction {
		out := state.TriggerAction{Match: a.Match, Run: a.Run}
		if a.Launch != nil {
			l := state.TriggerLaunch(*a.Launch)
			out.Launch = &l
		}
		return out
	})
}

func triggerSpecIn(s contract.TriggerSpec) keeper.TriggerSpec {
	return keeper.TriggerSpec{Name: s.Name, Secret: s.Secret, Actions: triggerActionsIn(s.Actions)}
}

func triggerViewOut(v keeper.TriggerView) contract.TriggerView {
	return contract.TriggerView{Name: v.Name, Actions: triggerActionsOut(v.Actions), CreatedAt: v.CreatedAt,
		CreatedBy: v.CreatedBy, UpdatedAt: v.UpdatedAt, Accepted: v.Accepted, Refused: v.Refused}
}

func triggerResultOut(r *keeper.TriggerResult) *contract.TriggerResult {
	if r == nil {
		return nil
	}
	return &contract.TriggerResult{Trigger: r.Trigger, Event: r.Event, Matched: r.Matched,
		Runs:     mapSlice(r.Runs, func(x keeper.TriggerRun) contract.TriggerRun { return contract.TriggerRun(x) }),
		Launches: mapSlice(r.Launches, func(x keeper.TriggerLaunched) contract.TriggerLaunched { return contract.TriggerLaunched(x) }),
		Note:     r.Note,
		Errors:   mapSlice(r.Errors, func(x keeper.ActionError) contract.ActionError { return contract.ActionError(x) })}
}

func reasonsOut(rs []state.Reason) []contract.Reason {
	return mapSlice(rs, func(r state.Reason) contract.Reason { return contract.Reason(r) })
}

func reportKeyOut(k state.ReportKey) contract.ReportKey {
	return contract.ReportKey{Key: k.Key, Count: k.Count, Failures: k.Failures, ErrorRate: k.ErrorRate, Rate: k.Rate,
		Outcomes: k.Outcomes, Samples: k.Samples, P50: k.P50, P90: k.P90, P95: k.P95, P99: k.P99, Max: k.Max,
		Reasons: reasonsOut(k.Reasons)}
}

func keySummaryOut(k keeper.KeySummary) contract.KeySummary {
	return contract.KeySummary{Key: k.Key, Count: k.Count, Failures: k.Failures, Rate: k.Rate,
		P50: k.P50, P95: k.P95, P99: k.P99, Outcomes: k.Outcomes, Reasons: reasonsOut(k.Reasons)}
}
