package keeper

import "time"

// Notice kinds: what the keeper tells people about (webhooks subscribe to
// them by kind).
const (
	NoticeRunStarted      = "run.started"
	NoticeRunEnded        = "run.ended"
	NoticeRunPaused       = "run.paused"
	NoticeRunResumed      = "run.resumed"
	NoticeSwitch          = "switch.changed"
	NoticeThresholdFailed = "threshold.failed"
	NoticeGuardrail       = "guardrail.fired"
	NoticeTrigger         = "trigger.fired"
	NoticeCapacity        = "capacity.done"
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
}

// notify hands a notice to delivery. It never blocks and never fails: a
// notice is a side effect of something already committed.
func (k *Keeper) notify(n Notice) {
	if n.At.IsZero() {
		n.At = time.Now()
	}
	k.log.Info("notice", "kind", n.Kind, "run", n.Run, "title", n.Title)
}
