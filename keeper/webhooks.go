package keeper

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
)

// safeName is what webhook and trigger names may be: they are URL path
// segments.
var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

func checkPathName(field, name string) *Error {
	if !safeName.MatchString(name) {
		return invalid(field, "%q must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

func checkLabels(field string, labels map[string]string) *Error {
	for k, v := range labels {
		if err := checkName(field, k); err != nil {
			return err
		}
		if len(v) > 200 {
			return invalid(field+"."+k, "longer than 200 bytes")
		}
	}
	return nil
}

// WebhookSpec is what a caller gives to add or replace a webhook.
type WebhookSpec struct {
	Name   string            `json:"name"`
	URL    string            `json:"url"`
	Format string            `json:"format,omitempty"` // json (default) or slack
	Kinds  []string          `json:"kinds,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Secret signs deliveries. On a replace, nil keeps the stored secret
	// and "" removes it.
	Secret *string `json:"secret,omitempty"`
}

func (s *WebhookSpec) check() *Error {
	if err := checkPathName("name", s.Name); err != nil {
		return err
	}
	if err := checkURL("url", s.URL, "http", "https"); err != nil {
		return err
	}
	switch s.Format {
	case "", "json", "slack":
	default:
		return invalid("format", "%q is not json or slack", s.Format)
	}
	for i, k := range s.Kinds {
		field := fmt.Sprintf("kinds[%d]", i)
		if _, err := path.Match(k, ""); err != nil || k == "" {
			return invalid(field, "%q is not a kind or glob", k)
		}
		matched := false
		for _, known := range notify.Kinds {
			if ok, _ := path.Match(k, known); ok {
				matched = true
			}
		}
		if !matched {
			return invalid(field, "%q matches no notice kind; kinds are %s", k, strings.Join(notify.Kinds, ", "))
		}
	}
	if err := checkLabels("labels", s.Labels); err != nil {
		return err
	}
	if s.Secret != nil && *s.Secret != "" && (len(*s.Secret) < 8 || len(*s.Secret) > 1024) {
		return invalid("secret", "is %d bytes; give 8 to 1024", len(*s.Secret))
	}
	return nil
}

// PutWebhook adds a webhook (create true: refused if the name is taken) or
// replaces one (create false: added when missing). Deliveries start at
// once.
func (k *Keeper) PutWebhook(ctx context.Context, actor string, spec WebhookSpec, create bool) (*state.Webhook, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	var out *state.Webhook
	err := k.write(ctx, "storing the webhook", func(tx *state.Txn) error {
		old := tx.Webhook(nil, spec.Name)
		if old != nil && create {
			return conflict("webhook %q exists; replace it with PUT /api/v1/webhooks/%s", spec.Name, spec.Name)
		}
		w := &state.Webhook{Name: spec.Name, URL: spec.URL, Format: spec.Format, Kinds: spec.Kinds, Labels: spec.Labels,
			CreatedAt: tx.Now(), CreatedBy: actor, UpdatedAt: tx.Now()}
		if w.Format == "" {
			w.Format = "json"
		}
		action := "add webhook"
		if old != nil {
			w.CreatedAt, w.CreatedBy, w.Secret = old.CreatedAt, old.CreatedBy, old.Secret
			action = "replace webhook"
		}
		if spec.Secret != nil {
			w.Secret = *spec.Secret
		}
		out = w
		if err := tx.PutWebhook(w); err != nil {
			return err
		}
		kinds := "all kinds"
		if len(w.Kinds) > 0 {
			kinds = strings.Join(w.Kinds, ",")
		}
		return tx.Audit(actor, action, w.Name, fmt.Sprintf("%s %s, %s, signed %v", w.Format, notify.HostOnlyURL(w.URL), kinds, w.Secret != ""))
	})
	if err != nil {
		return nil, err
	}
	k.hooks.Sync()
	return out, nil
}

// DeleteWebhook removes a webhook; its queued notices are dropped.
func (k *Keeper) DeleteWebhook(ctx context.Context, actor, name string) error {
	err := k.write(ctx, "deleting the webhook", func(tx *state.Txn) error {
		if tx.Webhook(nil, name) == nil {
			return notFound("name", "no webhook %q", name)
		}
		if err := tx.DeleteWebhook(name); err != nil {
			return err
		}
		return tx.Audit(actor, "delete webhook", name, "")
	})
	if err != nil {
		return err
	}
	k.hooks.Sync()
	return nil
}

// WebhookView is a webhook as the API shows it: never its secret, the URL
// redacted, with its delivery status.
type WebhookView struct {
	Name string `json:"name"`
	// URL is scheme and host only, except for admins (notify.RedactURL).
	URL       string               `json:"url"`
	Format    string               `json:"format"`
	Kinds     []string             `json:"kinds"`
	Labels    map[string]string    `json:"labels,omitempty"`
	Signed    bool                 `json:"signed"`
	CreatedAt time.Time            `json:"created_at"`
	CreatedBy string               `json:"created_by,omitempty"`
	UpdatedAt time.Time            `json:"updated_at"`
	Status    notify.WebhookStatus `json:"status"`
}

// WebhookView returns a webhook's view as any role may see it (the URL's
// scheme and host only; attempts included when detail).
func (k *Keeper) WebhookView(w *state.Webhook, detail bool) WebhookView {
	v := WebhookView{Name: w.Name, URL: notify.HostOnlyURL(w.URL), Format: w.Format, Kinds: w.Kinds, Labels: w.Labels,
		Signed: w.Secret != "", CreatedAt: w.CreatedAt, CreatedBy: w.CreatedBy, UpdatedAt: w.UpdatedAt}
	if v.Kinds == nil {
		v.Kinds = []string{}
	}
	v.Status = k.hooks.Status(w.Name, detail)
	return v
}

// TestWebhook sends a test notice to a webhook at once (one attempt,
// outside its queue) and returns the outcome.
func (k *Keeper) TestWebhook(ctx context.Context, actor, name string) (*notify.DeliveryAttempt, error) {
	a, ok := k.hooks.Test(ctx, actor, name)
	if !ok {
		return nil, notFound("name", "no webhook %q", name)
	}
	return a, nil
}

// links returns the API and UI addresses of a run.
func (k *Keeper) links(run string) map[string]string {
	if run == "" {
		return nil
	}
	base := strings.TrimSuffix(k.cfg.PublicURL, "/")
	if base == "" {
		base = "http://" + k.HTTPAddr()
	}
	id := url.PathEscape(run)
	return map[string]string{"run": base + "/api/v1/runs/" + id, "report": base + "/api/v1/runs/" + id + "/report",
		"ui": base + "/#/runs/" + id}
}

// writeNotifyMetrics adds the webhook and trigger counters to /metrics.
func (k *Keeper) writeNotifyMetrics(b *strings.Builder, metric func(name, typ, help string)) {
	metric("koipond_webhook_deliveries_total", "counter", "Webhook notices by outcome: delivered, failed (after every attempt) or dropped (queue full).")
	for _, w := range k.store.Read().Webhooks(nil) {
		st := k.hooks.Status(w.Name, false)
		for _, r := range []struct {
			name string
			n    uint64
		}{{"delivered", st.Delivered}, {"failed", st.Failed}, {"dropped", st.Dropped}} {
			fmt.Fprintf(b, "koipond_webhook_deliveries_total{webhook=%q,result=%q} %d\n", w.Name, r.name, r.n)
		}
	}
	metric("koipond_webhook_queued", "gauge", "Notices waiting per webhook.")
	for _, w := range k.store.Read().Webhooks(nil) {
		fmt.Fprintf(b, "koipond_webhook_queued{webhook=%q} %d\n", w.Name, k.hooks.Status(w.Name, false).Queued)
	}
	k.trig.mu.Lock()
	defer k.trig.mu.Unlock()
	metric("koipond_trigger_calls_total", "counter", "Trigger calls accepted.")
	for _, name := range sortedNames(k.trig.accepted) {
		fmt.Fprintf(b, "koipond_trigger_calls_total{trigger=%q} %d\n", name, k.trig.accepted[name])
	}
	metric("koipond_trigger_refused_total", "counter", "Trigger calls refused, by reason.")
	for _, name := range sortedNames(k.trig.refused) {
		for _, reason := range sortedNames(k.trig.refused[name]) {
			fmt.Fprintf(b, "koipond_trigger_refused_total{trigger=%q,reason=%q} %d\n", name, reason, k.trig.refused[name][reason])
		}
	}
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
