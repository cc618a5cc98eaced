package state

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
)

func webhookKey(name string) string     { return prefixWebhook + enc(name) }
func triggerKey(name string) string     { return prefixTrigger + enc(name) }
func triggerSeenKey(name string) string { return prefixTriggerSeen + enc(name) }

// Webhook is where notices go: a URL receiving a JSON or Slack
// incoming-webhook payload for the notice kinds it subscribes to.
type Webhook struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Format is "json" (the notice as JSON) or "slack" (text + blocks).
	Format string `json:"format"`
	// Kinds are notice kinds or globs (path.Match, e.g. "run.*"); empty:
	// every kind.
	Kinds []string `json:"kinds,omitempty"`
	// Secret, when set, signs every delivery (X-Koipond-Signature). The
	// API never returns it.
	Secret string `json:"secret,omitempty"`
	// Labels, when set, limit run notices to runs carrying every one of
	// them; notices about no run (the global switch) are always sent.
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Trigger maps signed calls from outside (a deploy pipeline) to actions:
// runs started from templates, formations launched on labelled runs.
type Trigger struct {
	Name string `json:"name"`
	// Secret keys the HMAC-SHA256 signature every call must carry. The
	// API never returns it.
	Secret    string          `json:"secret"`
	Actions   []TriggerAction `json:"actions"`
	CreatedAt time.Time       `json:"created_at"`
	CreatedBy string          `json:"created_by,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// TriggerAction is one thing a trigger does when every Match label is in
// the call's labels: start a run (Run, a run spec whose strings are
// templates over the call's payload) or launch a formation (Launch).
type TriggerAction struct {
	Match  map[string]string `json:"match,omitempty"`
	Run    json.RawMessage   `json:"run,omitempty"`
	Launch *TriggerLaunch    `json:"launch,omitempty"`
}

// TriggerLaunch launches a formation over every active run carrying
// RunLabels, AtSecs after the call. Label and parameter values are
// templates over the call's payload.
type TriggerLaunch struct {
	Formation string            `json:"formation"`
	RunLabels map[string]string `json:"run_labels,omitempty"`
	AtSecs    float64           `json:"at_secs,omitempty"`
	Params    map[string]string `json:"params,omitempty"`
}

// TriggerSeen holds the signatures of one trigger's accepted calls with
// their timestamps (unix seconds), so a call replayed within the
// timestamp window is refused, also after a keeper restart. Entries older
// than the window are dropped when the record is next written.
type TriggerSeen struct {
	Trigger string           `json:"trigger"`
	Seen    map[string]int64 `json:"seen"`
}

// Webhook returns the webhook with that name, or nil.
func (r *Reader) Webhook(ws memdb.WatchSet, name string) *Webhook {
	return first[Webhook](r, ws, TableWebhooks, indexID, name)
}

// Webhooks returns every webhook, by name.
func (r *Reader) Webhooks(ws memdb.WatchSet) []*Webhook {
	return all[Webhook](r, ws, TableWebhooks, indexID)
}

// PutWebhook stores a webhook.
func (t *Txn) PutWebhook(w *Webhook) error {
	if w.Name == "" {
		return fmt.Errorf("state: a webhook needs a name")
	}
	return put(t, TableWebhooks, webhookKey(w.Name), w, t.Webhook(nil, w.Name))
}

// DeleteWebhook removes a webhook; a missing one is not an error.
func (t *Txn) DeleteWebhook(name string) error {
	return del(t, TableWebhooks, webhookKey(name), t.Webhook(nil, name))
}

// Trigger returns the trigger with that name, or nil.
func (r *Reader) Trigger(ws memdb.WatchSet, name string) *Trigger {
	return first[Trigger](r, ws, TableTriggers, indexID, name)
}

// Triggers returns every trigger, by name.
func (r *Reader) Triggers(ws memdb.WatchSet) []*Trigger {
	return all[Trigger](r, ws, TableTriggers, indexID)
}

// PutTrigger stores a trigger.
func (t *Txn) PutTrigger(tr *Trigger) error {
	if tr.Name == "" {
		return fmt.Errorf("state: a trigger needs a name")
	}
	return put(t, TableTriggers, triggerKey(tr.Name), tr, t.Trigger(nil, tr.Name))
}

// DeleteTrigger removes a trigger (not its seen signatures); a missing one
// is not an error.
func (t *Txn) DeleteTrigger(name string) error {
	// The signatures it accepted stay (they age out with the next call):
	// a trigger deleted and re-created with the same secret must still
	// refuse replays of calls it took within the window.
	return del(t, TableTriggers, triggerKey(name), t.Trigger(nil, name))
}

// TriggerSeen returns the signatures a trigger accepted, or nil.
func (r *Reader) TriggerSeen(ws memdb.WatchSet, name string) *TriggerSeen {
	return first[TriggerSeen](r, ws, TableTriggerSeen, indexID, name)
}

// PutTriggerSeen stores a trigger's accepted signatures.
func (t *Txn) PutTriggerSeen(s *TriggerSeen) error {
	if s.Trigger == "" {
		return fmt.Errorf("state: seen signatures need their trigger")
	}
	return put(t, TableTriggerSeen, triggerSeenKey(s.Trigger), s, t.TriggerSeen(nil, s.Trigger))
}
