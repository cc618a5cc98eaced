package keeper

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/koipond/koipond/keeper/state"
	"github.com/labstack/echo/v4"
)

// Webhook delivery defaults and bounds.
const (
	// DefaultWebhookTimeout bounds one delivery attempt.
	DefaultWebhookTimeout = 5 * time.Second
	// DefaultWebhookBackoff is the wait before the first retry; each
	// retry doubles it (1 s, 2 s, 4 s, 8 s), ±20% jitter.
	DefaultWebhookBackoff = time.Second
	// WebhookAttempts is how often one notice is tried before it counts
	// as failed.
	WebhookAttempts = 5
	// WebhookQueue is how many notices wait per webhook; when full the
	// oldest is dropped (and counted).
	WebhookQueue = 100
	// webhookHistory is how many delivery attempts per webhook the API
	// shows.
	webhookHistory = 50
	// maxRetryAfter caps how long a Retry-After header may make a worker
	// wait.
	maxRetryAfter = time.Minute
)

// Signature headers, on webhook deliveries and on trigger calls:
// X-Koipond-Signature is "sha256=" + hex(HMAC-SHA256(secret, timestamp +
// "." + body)), the timestamp being X-Koipond-Timestamp (unix seconds).
const (
	HeaderTimestamp = "X-Koipond-Timestamp"
	HeaderSignature = "X-Koipond-Signature"
)

// Sign returns the X-Koipond-Signature value of body sent at ts (unix
// seconds) under secret.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// noticeKinds lists every kind a webhook may subscribe to.
var noticeKinds = []string{NoticeRunStarted, NoticeRunPaused, NoticeRunResumed, NoticeRunStopped, NoticeRunEnded,
	NoticeSwitch, NoticeThresholdFailed, NoticeGuardrail, NoticeTrigger, NoticeCapacity}

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
		for _, known := range noticeKinds {
			if ok, _ := path.Match(k, known); ok {
				matched = true
			}
		}
		if !matched {
			return invalid(field, "%q matches no notice kind; kinds are %s", k, strings.Join(noticeKinds, ", "))
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
		return tx.Audit(actor, action, w.Name, fmt.Sprintf("%s %s, %s, signed %v", w.Format, hostOnlyURL(w.URL), kinds, w.Secret != ""))
	})
	if err != nil {
		return nil, err
	}
	k.hooks.sync()
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
	k.hooks.sync()
	return nil
}

// Who sees how much of a webhook URL (a Slack hook URL, a path or query
// token: the URL is a credential of its receiver, written once):
//   - viewers and operators, the audit log, delivery errors and the log:
//     scheme and host only (hostOnlyURL);
//   - admins, who add and replace webhooks: redactURL, the path without
//     its secret parts;
//   - nobody reads the full URL back, as nobody reads the secret.

// hostOnlyURL reduces a webhook URL to its scheme and host, with "/…" when
// it has more (a path or a query).
func hostOnlyURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Opaque != "" || u.Fragment != "" {
		out += "/…"
	}
	return out
}

// redactURL hides what in a webhook URL is a credential: user info, query
// values and, for Slack URLs (whose path is the secret, whatever format
// the webhook sends), the last path segment.
func redactURL(raw, format string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q.Set(k, "***")
		}
		u.RawQuery = q.Encode()
	}
	if format == "slack" || strings.EqualFold(u.Hostname(), "hooks.slack.com") {
		if i := strings.LastIndex(u.Path, "/"); i >= 0 && i < len(u.Path)-1 {
			u.Path = u.Path[:i+1] + "***"
		}
	}
	return strings.ReplaceAll(u.String(), "%2A%2A%2A", "***")
}

// deliveryError is err as viewers may read it: net/http's errors quote the
// whole URL (a Slack hook's secret path, a ?token=), so the URL is replaced
// by its scheme and host.
func deliveryError(hook *state.Webhook, err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("%s %s: %v", ue.Op, hostOnlyURL(hook.URL), ue.Err)
	}
	return strings.ReplaceAll(err.Error(), hook.URL, hostOnlyURL(hook.URL))
}

// DeliveryAttempt is one try to deliver a notice.
type DeliveryAttempt struct {
	At         time.Time `json:"at"`
	Kind       string    `json:"kind"`
	Attempt    int       `json:"attempt"`
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
	// Result is delivered, retry (another attempt follows) or failed.
	Result string `json:"result"`
}

// WebhookStatus is how a webhook's deliveries are going, since the keeper
// started.
type WebhookStatus struct {
	Queued      int       `json:"queued"`
	Delivered   uint64    `json:"delivered"`
	Failed      uint64    `json:"failed"`
	Dropped     uint64    `json:"dropped"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Attempts are the latest delivery attempts, oldest first (only in a
	// single webhook's view).
	Attempts []DeliveryAttempt `json:"attempts,omitempty"`
}

// WebhookView is a webhook as the API shows it: never its secret, the URL
// redacted, with its delivery status.
type WebhookView struct {
	Name string `json:"name"`
	// URL is scheme and host only, except for admins (redactURL).
	URL       string            `json:"url"`
	Format    string            `json:"format"`
	Kinds     []string          `json:"kinds"`
	Labels    map[string]string `json:"labels,omitempty"`
	Signed    bool              `json:"signed"`
	CreatedAt time.Time         `json:"created_at"`
	CreatedBy string            `json:"created_by,omitempty"`
	UpdatedAt time.Time         `json:"updated_at"`
	Status    WebhookStatus     `json:"status"`
}

// WebhookView returns a webhook's view as any role may see it (the URL's
// scheme and host only; attempts included when detail).
func (k *Keeper) WebhookView(w *state.Webhook, detail bool) WebhookView {
	v := WebhookView{Name: w.Name, URL: hostOnlyURL(w.URL), Format: w.Format, Kinds: w.Kinds, Labels: w.Labels,
		Signed: w.Secret != "", CreatedAt: w.CreatedAt, CreatedBy: w.CreatedBy, UpdatedAt: w.UpdatedAt}
	if v.Kinds == nil {
		v.Kinds = []string{}
	}
	v.Status = k.hooks.status(w.Name, detail)
	return v
}

// notifier owns one delivery worker per stored webhook.
type notifier struct {
	k       *Keeper
	client  *http.Client
	timeout time.Duration
	backoff time.Duration

	mu      sync.Mutex // guards workers; hookWorker.mu may be taken inside it, never the reverse
	workers map[string]*hookWorker
}

func newNotifier(k *Keeper) *notifier {
	timeout := k.cfg.WebhookTimeout
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	backoff := k.cfg.WebhookBackoff
	if backoff <= 0 {
		backoff = DefaultWebhookBackoff
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	return &notifier{k: k, timeout: timeout, backoff: backoff, workers: map[string]*hookWorker{},
		client: &http.Client{Transport: tr, Timeout: timeout}}
}

// sync starts a worker for every stored webhook without one, gives the
// others their current definition and stops the workers of deleted
// webhooks. After Close it does nothing.
func (n *notifier) sync() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.k.ctx.Err() != nil {
		return
	}
	// Read under n.mu: of two syncs racing, the later read is applied
	// last, so a deleted webhook never gets its worker back.
	hooks := n.k.store.Read().Webhooks(nil)
	keep := map[string]bool{}
	for _, h := range hooks {
		keep[h.Name] = true
		if w := n.workers[h.Name]; w != nil {
			w.mu.Lock()
			w.hook = h
			w.mu.Unlock()
			continue
		}
		w := &hookWorker{n: n, hook: h, wake: make(chan struct{}, 1)}
		w.ctx, w.cancel = context.WithCancel(n.k.ctx)
		n.workers[h.Name] = w
		n.k.wg.Add(1)
		go func() {
			defer n.k.wg.Done()
			w.loop()
		}()
	}
	for name, w := range n.workers {
		if !keep[name] {
			w.cancel()
			delete(n.workers, name)
		}
	}
}

// enqueue hands a notice to every webhook that wants it. It never blocks
// on delivery.
func (n *notifier) enqueue(nt Notice) {
	n.mu.Lock()
	ws := make([]*hookWorker, 0, len(n.workers))
	for _, w := range n.workers {
		ws = append(ws, w)
	}
	n.mu.Unlock()
	for _, w := range ws {
		w.enqueue(nt)
	}
}

func (n *notifier) worker(name string) *hookWorker {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.workers[name]
}

func (n *notifier) status(name string, detail bool) WebhookStatus {
	w := n.worker(name)
	if w == nil {
		return WebhookStatus{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.st
	s.Queued = len(w.queue)
	s.Attempts = nil
	if detail {
		s.Attempts = append([]DeliveryAttempt{}, w.st.Attempts...)
	}
	return s
}

// wants reports whether the webhook subscribes to the notice: its kind
// matches one of the kinds (none: all), and for a run's notice, the run
// carries every label of the webhook.
func wants(h *state.Webhook, nt *Notice) bool {
	if len(h.Kinds) > 0 {
		ok := false
		for _, k := range h.Kinds {
			if m, _ := path.Match(k, nt.Kind); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(h.Labels) > 0 && nt.Run != "" {
		for k, v := range h.Labels {
			if nt.Labels[k] != v {
				return false
			}
		}
	}
	return true
}

// hookWorker delivers one webhook's notices in order, one at a time.
type hookWorker struct {
	n      *notifier
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}

	mu    sync.Mutex // guards hook, queue, st
	hook  *state.Webhook
	queue []Notice
	st    WebhookStatus
}

func (w *hookWorker) enqueue(nt Notice) {
	w.mu.Lock()
	if !wants(w.hook, &nt) {
		w.mu.Unlock()
		return
	}
	if len(w.queue) >= WebhookQueue {
		dropped := w.queue[0]
		w.queue = w.queue[1:]
		w.st.Dropped++
		if w.st.Dropped == 1 || w.st.Dropped%100 == 0 { // a receiver down for long must not flood the log
			w.n.k.log.Warn("webhook queue full: dropping the oldest notice", "webhook", w.hook.Name, "kind", dropped.Kind, "dropped_total", w.st.Dropped)
		}
	}
	w.queue = append(w.queue, nt)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *hookWorker) pop() (Notice, *state.Webhook, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return Notice{}, nil, false
	}
	nt := w.queue[0]
	w.queue = w.queue[1:]
	return nt, w.hook, true
}

func (w *hookWorker) loop() {
	for {
		nt, _, ok := w.pop()
		if !ok {
			select {
			case <-w.ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		w.deliver(nt)
		if w.ctx.Err() != nil {
			return
		}
	}
}

// deliver tries a notice up to WebhookAttempts times with exponential
// backoff and jitter, honouring Retry-After on 429 and 503 and giving up
// at once on other 4xx answers.
func (w *hookWorker) deliver(nt Notice) {
	for attempt := 1; ; attempt++ {
		w.mu.Lock()
		hook := w.hook
		w.mu.Unlock()
		a, retryAfter, retryable := w.send(w.ctx, hook, nt, attempt)
		if w.ctx.Err() != nil {
			return // shutting down or deleted: not the receiver's failure
		}
		final := a.Result == "delivered" || !retryable || attempt >= WebhookAttempts
		if !final {
			a.Result = "retry"
		}
		w.record(a)
		if final {
			return
		}
		wait := w.n.backoff << (attempt - 1)
		wait = time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		if retryAfter > wait {
			wait = min(retryAfter, maxRetryAfter)
		}
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// record notes an attempt in the status and the log.
func (w *hookWorker) record(a DeliveryAttempt) {
	w.mu.Lock()
	name := w.hook.Name
	switch a.Result {
	case "delivered":
		w.st.Delivered++
		w.st.LastSuccess = a.At
	case "failed":
		w.st.Failed++
	}
	if a.Error != "" {
		w.st.LastError, w.st.LastErrorAt = a.Error, a.At
	}
	w.st.Attempts = append(w.st.Attempts, a)
	if len(w.st.Attempts) > webhookHistory {
		w.st.Attempts = w.st.Attempts[len(w.st.Attempts)-webhookHistory:]
	}
	w.mu.Unlock()
	log := w.n.k.log
	switch a.Result {
	case "delivered":
		log.Debug("webhook delivered", "webhook", name, "kind", a.Kind, "attempt", a.Attempt, "status", a.Status)
	case "retry":
		log.Info("webhook delivery failed; retrying", "webhook", name, "kind", a.Kind, "attempt", a.Attempt, "err", a.Error)
	default:
		log.Warn("webhook delivery failed", "webhook", name, "kind", a.Kind, "attempt", a.Attempt, "err", a.Error)
	}
}

// send makes one delivery attempt. It returns the attempt (Result
// delivered or failed), the Retry-After the receiver asked for, and
// whether a failure is worth retrying.
func (w *hookWorker) send(ctx context.Context, hook *state.Webhook, nt Notice, attempt int) (DeliveryAttempt, time.Duration, bool) {
	start := time.Now()
	a := DeliveryAttempt{At: start, Kind: nt.Kind, Attempt: attempt, Result: "failed"}
	body, err := w.n.payload(hook, nt)
	if err != nil {
		a.Error = "building the payload: " + err.Error()
		return a, 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, w.n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = deliveryError(hook, err)
		return a, 0, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "koipond-keeper")
	req.Header.Set("X-Koipond-Event", nt.Kind)
	if hook.Secret != "" {
		ts := time.Now().Unix()
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		req.Header.Set(HeaderSignature, Sign(hook.Secret, ts, body))
	}
	resp, err := w.n.client.Do(req)
	a.DurationMS = ms(time.Since(start))
	if err != nil {
		a.Error = deliveryError(hook, err)
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
			a.Error = fmt.Sprintf("timed out after %v: %v", w.n.timeout, a.Error)
		}
		return a, 0, true
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.Status = resp.StatusCode
	status := clip(resp.Status, maxQuote) // the receiver's words, shown to viewers
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		a.Result = "delivered"
		return a, 0, false
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		a.Error = "receiver answered " + status
		return a, retryAfter(resp.Header.Get("Retry-After")), true
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		a.Error = "receiver answered " + status + " (not retried)"
		return a, 0, false
	default:
		a.Error = "receiver answered " + status
		return a, 0, true
	}
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// TestWebhook sends a test notice to a webhook at once (one attempt,
// outside its queue) and returns the outcome.
func (k *Keeper) TestWebhook(ctx context.Context, actor, name string) (*DeliveryAttempt, error) {
	w := k.hooks.worker(name)
	if w == nil {
		return nil, notFound("name", "no webhook %q", name)
	}
	w.mu.Lock()
	hook := w.hook
	w.mu.Unlock()
	nt := Notice{Kind: "test", At: time.Now(), Actor: actor, Title: "koipond test notice",
		Text: fmt.Sprintf("%s sent this test notice to webhook %q.", actor, name)}
	a, _, _ := w.send(ctx, hook, nt, 1)
	w.record(a)
	return &a, nil
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

// jsonPayload is the body of a json-format delivery.
type jsonPayload struct {
	Notice
	Webhook string            `json:"webhook"`
	Links   map[string]string `json:"links,omitempty"`
}

// payload builds a delivery's body in the webhook's format.
func (n *notifier) payload(h *state.Webhook, nt Notice) ([]byte, error) {
	links := n.k.links(nt.Run)
	if h.Format != "slack" {
		return json.Marshal(jsonPayload{Notice: nt, Webhook: h.Name, Links: links})
	}
	return json.Marshal(slackPayload(nt, links))
}

// slackText is a Slack text object.
type slackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// slackBlock is a Slack Block Kit block (header or section).
type slackBlock struct {
	Type   string      `json:"type"`
	Text   *slackText  `json:"text,omitempty"`
	Fields []slackText `json:"fields,omitempty"`
}

// SlackMessage is the body of a Slack incoming-webhook call: text is the
// notification fallback, blocks the rendered message.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// slackEscape escapes the three characters Slack treats as markup.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// clip shortens s to at most n bytes (so at most n characters, Slack's
// limits), ending in "…" when cut, never splitting a rune; it is linear
// in n, whatever the length of s.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut at n-3 bytes (room for the ellipsis), backed up to a rune start.
	cut := max(n-len("…"), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// slackPayload renders a notice as a Slack incoming-webhook message: a
// header (the title), a section with the text and a link to the run, and
// a section with up to ten fields (Slack's limit).
func slackPayload(nt Notice, links map[string]string) SlackMessage {
	text := nt.Text
	if text == "" {
		text = nt.Title
	}
	body := slackEscape(text)
	if u := links["ui"]; u != "" {
		body += fmt.Sprintf("\n<%s|Run %s>", slackEscape(u), slackEscape(cmp.Or(nt.RunName, nt.Run)))
	}
	m := SlackMessage{Text: clip(nt.Title+": "+text, 3000), Blocks: []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: clip(nt.Title, 150), Emoji: true}},
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: clip(body, 3000)}},
	}}
	fields := []slackText{{Type: "mrkdwn", Text: "*Kind*\n" + nt.Kind}}
	if nt.Actor != "" {
		fields = append(fields, slackText{Type: "mrkdwn", Text: "*By*\n" + slackEscape(nt.Actor)})
	}
	keys := make([]string, 0, len(nt.Fields))
	for k := range nt.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(fields) == 10 {
			break
		}
		fields = append(fields, slackText{Type: "mrkdwn", Text: clip("*"+slackEscape(k)+"*\n"+slackEscape(nt.Fields[k]), 2000)})
	}
	m.Blocks = append(m.Blocks, slackBlock{Type: "section", Fields: fields})
	return m
}

// --- HTTP

// webhookViewFor is a webhook's view for the caller's role: admins see
// the URL's path (without its secret parts), others its host only.
func (k *Keeper) webhookViewFor(c echo.Context, w *state.Webhook, detail bool) WebhookView {
	v := k.WebhookView(w, detail)
	if role, _ := c.Get(ctxRole).(Role); role >= RoleAdmin {
		v.URL = redactURL(w.URL, w.Format)
	}
	return v
}

func (k *Keeper) listWebhooks(c echo.Context) error {
	out := []WebhookView{}
	for _, w := range k.store.Read().Webhooks(nil) {
		out = append(out, k.webhookViewFor(c, w, false))
	}
	return c.JSON(http.StatusOK, out)
}

func (k *Keeper) getWebhook(c echo.Context) error {
	w := k.store.Read().Webhook(nil, c.Param("name"))
	if w == nil {
		return notFound("name", "no webhook %s", quoteInput(c.Param("name")))
	}
	return c.JSON(http.StatusOK, k.webhookViewFor(c, w, true))
}

func (k *Keeper) postWebhook(c echo.Context) error {
	var spec WebhookSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	w, err := k.PutWebhook(c.Request().Context(), actor(c), spec, true)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, k.webhookViewFor(c, w, false))
}

func (k *Keeper) putWebhook(c echo.Context) error {
	var spec WebhookSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	if spec.Name == "" {
		spec.Name = c.Param("name")
	}
	if spec.Name != c.Param("name") {
		return invalid("name", "%s differs from the name in the path %s", quoteInput(spec.Name), quoteInput(c.Param("name")))
	}
	w, err := k.PutWebhook(c.Request().Context(), actor(c), spec, false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, k.webhookViewFor(c, w, false))
}

func (k *Keeper) deleteWebhook(c echo.Context) error {
	if err := k.DeleteWebhook(c.Request().Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (k *Keeper) testWebhook(c echo.Context) error {
	a, err := k.TestWebhook(c.Request().Context(), actor(c), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a)
}

// writeNotifyMetrics adds the webhook and trigger counters to /metrics.
func (k *Keeper) writeNotifyMetrics(b *strings.Builder, metric func(name, typ, help string)) {
	metric("koipond_webhook_deliveries_total", "counter", "Webhook notices by outcome: delivered, failed (after every attempt) or dropped (queue full).")
	for _, w := range k.store.Read().Webhooks(nil) {
		st := k.hooks.status(w.Name, false)
		for _, r := range []struct {
			name string
			n    uint64
		}{{"delivered", st.Delivered}, {"failed", st.Failed}, {"dropped", st.Dropped}} {
			fmt.Fprintf(b, "koipond_webhook_deliveries_total{webhook=%q,result=%q} %d\n", w.Name, r.name, r.n)
		}
	}
	metric("koipond_webhook_queued", "gauge", "Notices waiting per webhook.")
	for _, w := range k.store.Read().Webhooks(nil) {
		fmt.Fprintf(b, "koipond_webhook_queued{webhook=%q} %d\n", w.Name, k.hooks.status(w.Name, false).Queued)
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
