package keeper

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// Notice kinds: what the keeper tells people about (webhooks subscribe to
// them by kind).
const (
	NoticeRunStarted      = "run.started"
	NoticeRunEnded        = "run.ended"
	NoticeRunPaused       = "run.paused"
	NoticeRunResumed      = "run.resumed"
	NoticeRunStopped      = "run.stopped"
	NoticeSwitch          = "switch.changed"
	NoticeThresholdFailed = "threshold.failed"
	NoticeGuardrail       = "guardrail.fired"
	NoticeTrigger         = "trigger.fired"
	NoticeCapacity        = "capacity.done"
	// NoticeRunQuarantined: the keeper paused a run whose schools kept
	// failing (see quarantine.go).
	NoticeRunQuarantined = "run.quarantined"
)

// Notice is one thing worth telling the people who own a run: a run's
// start or end, a pause or stop, a failed threshold, a guardrail's action.
type Notice struct {
	Kind    string            `json:"kind"`
	At      time.Time         `json:"at"`
	Run     string            `json:"run,omitempty"`
	RunName string            `json:"run_name,omitempty"`
	Actor   string            `json:"actor,omitempty"`
	Title   string            `json:"title"`
	Text    string            `json:"text,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
	// Labels are the run's labels (filled in by notify), which webhooks
	// may filter on.
	Labels map[string]string `json:"labels,omitempty"`
}

// notify hands a notice to every webhook that subscribes to it (queued
// per webhook, delivered by the webhook's worker, see webhooks.go). It
// never blocks and never fails: a notice is a side effect of something
// already committed. A run's notice gains the run's name and labels.
func (k *Keeper) notify(n Notice) {
	if n.At.IsZero() {
		n.At = time.Now()
	}
	k.log.Info("notice", "kind", n.Kind, "run", n.Run, "title", n.Title)
	if n.Run != "" && (n.Labels == nil || n.RunName == "") {
		if run := k.store.Read().Run(nil, n.Run); run != nil {
			if n.Labels == nil {
				n.Labels = run.Labels
			}
			if n.RunName == "" {
				n.RunName = run.Name
			}
		}
	}
	if k.hooks != nil {
		k.hooks.enqueue(n)
	}
}

// runStartedNotice tells that a run was created (running, or paused when
// created paused).
func runStartedNotice(run *state.Run, actor string) Notice {
	how := "started"
	if run.State == state.RunPaused {
		how = "created paused"
	}
	dur := "always-on"
	if run.DurationMS > 0 {
		dur = (time.Duration(run.DurationMS) * time.Millisecond).String()
	}
	return Notice{Kind: NoticeRunStarted, Run: run.ID, RunName: run.Name, Actor: actor, Labels: run.Labels,
		Title: fmt.Sprintf("Run %s %s", run.Name, how),
		Text:  fmt.Sprintf("%s %s run %q: %d koi at %g/s against %s.", actor, how, run.Name, run.Koi, run.Ramp, run.Target.Where()),
		Fields: map[string]string{"koi": strconv.Itoa(run.Koi), "target": run.Target.Where(), "duration": dur,
			"owner": run.Owner, "thresholds": strconv.Itoa(len(run.Thresholds))}}
}

// runSwitchNotice tells that a person paused, resumed or stopped a run.
func runSwitchNotice(run *state.Run, st wire.State, actor string) Notice {
	kind := map[wire.State]string{wire.Paused: NoticeRunPaused, wire.Running: NoticeRunResumed, wire.Stopped: NoticeRunStopped}[st]
	done := map[wire.State]string{wire.Paused: "paused", wire.Running: "resumed", wire.Stopped: "stopped"}[st]
	return Notice{Kind: kind, Run: run.ID, RunName: run.Name, Actor: actor, Labels: run.Labels,
		Title:  fmt.Sprintf("Run %s %s by %s", run.Name, done, actor),
		Text:   fmt.Sprintf("%s %s run %q (epoch %d).", actor, done, run.Name, run.Switch.Epoch),
		Fields: map[string]string{"state": string(run.State), "epoch": strconv.FormatUint(run.Switch.Epoch, 10)}}
}

// switchNotice tells that the global switch moved.
func switchNotice(g *state.GlobalSwitch, actor string) Notice {
	what := map[wire.State]string{wire.Paused: "Every koi paused", wire.Running: "Every koi resumed", wire.Stopped: "Every koi stopped"}[g.State]
	return Notice{Kind: NoticeSwitch, Actor: actor, Title: fmt.Sprintf("%s by %s", what, actor),
		Text:   fmt.Sprintf("%s moved the global switch to %s (epoch %d).", actor, g.State, g.Epoch),
		Fields: map[string]string{"state": string(g.State), "epoch": strconv.FormatUint(g.Epoch, 10)}}
}

// runEndedNotice tells that a run ended and its final report is written:
// why it ended and, with thresholds, the verdict and the failed ones.
func runEndedNotice(run *state.Run, rep *state.Report) Notice {
	n := Notice{Kind: NoticeRunEnded, Run: run.ID, RunName: run.Name, Actor: "keeper", Labels: run.Labels,
		Title: fmt.Sprintf("Run %s ended", run.Name),
		Fields: map[string]string{"reason": run.EndReason, "duration": fmt.Sprintf("%.0f s", rep.DurationSecs),
			"metric_keys": strconv.Itoa(len(rep.Keys))}}
	text := fmt.Sprintf("Run %q ended (%s) after %.0f s.", run.Name, run.EndReason, rep.DurationSecs)
	if rep.Passed != nil {
		var failed []string
		for _, t := range rep.Thresholds {
			if !t.Passed {
				obs := "no data"
				if t.Observed != nil {
					obs = strconv.FormatFloat(*t.Observed, 'g', 4, 64) + " " + t.Unit
				}
				failed = append(failed, fmt.Sprintf("%s %s (observed %s)", t.Key, t.Expr, obs))
			}
		}
		if *rep.Passed {
			n.Title += ": thresholds passed"
			n.Fields["verdict"] = "passed"
			text += fmt.Sprintf(" All %d thresholds passed.", len(rep.Thresholds))
		} else {
			n.Title += ": THRESHOLDS FAILED"
			n.Fields["verdict"] = "failed"
			n.Fields["failed"] = strings.Join(failed, "; ")
			text += fmt.Sprintf(" %d of %d thresholds failed: %s.", len(failed), len(rep.Thresholds), strings.Join(failed, "; "))
		}
	}
	n.Text = text
	return n
}
