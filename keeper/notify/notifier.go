package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/keeper/state"
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
	// maxStatus is how many bytes of a receiver's status line an attempt
	// keeps (it is shown to viewers).
	maxStatus = 200
)

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

// Config is what a Notifier reads.
type Config struct {
	// Webhooks returns the stored webhooks; Sync reads it.
	Webhooks func() []*state.Webhook
	// Links returns the API and UI addresses of a run, for payloads.
	Links func(run string) map[string]string
	// Logger receives delivery logs (default slog.Default()).
	Logger *slog.Logger
	// Timeout bounds one delivery attempt (default DefaultWebhookTimeout).
	Timeout time.Duration
	// Backoff is the wait before a first retry, doubled for each next
	// one (default DefaultWebhookBackoff).
	Backoff time.Duration
}

// Notifier owns one delivery worker per stored webhook. Start starts
// them, Sync follows the stored webhooks, Close stops them and waits.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	timeout time.Duration
	backoff time.Duration

	ctx    context.Context // the workers' parent; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers

	mu      sync.Mutex // guards workers; hookWorker.mu may be taken inside it, never the reverse
	workers map[string]*hookWorker
}

// New returns a Notifier with no worker yet: Start starts them.
func New(cfg Config) *Notifier {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	backoff := cfg.Backoff
	if backoff <= 0 {
		backoff = DefaultWebhookBackoff
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Links == nil {
		cfg.Links = func(string) map[string]string { return nil }
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	n := &Notifier{cfg: cfg, log: log, timeout: timeout, backoff: backoff, workers: map[string]*hookWorker{},
		client: &http.Client{Transport: tr, Timeout: timeout}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n
}

// Start starts a worker for every stored webhook.
func (n *Notifier) Start() { n.Sync() }

// Close stops every worker (queued notices are dropped, an attempt in
// flight is cancelled) and waits for them. It is idempotent.
func (n *Notifier) Close() {
	n.mu.Lock()
	n.cancel()
	n.mu.Unlock()
	n.wg.Wait()
}

// Sync starts a worker for every stored webhook without one, gives the
// others their current definition and stops the workers of deleted
// webhooks. After Close it does nothing.
func (n *Notifier) Sync() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	// Read under n.mu: of two syncs racing, the later read is applied
	// last, so a deleted webhook never gets its worker back.
	hooks := n.cfg.Webhooks()
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
		w.ctx, w.cancel = context.WithCancel(n.ctx)
		n.workers[h.Name] = w
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
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

// Enqueue hands a notice to every webhook that wants it. It never blocks
// on delivery.
func (n *Notifier) Enqueue(nt Notice) {
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

func (n *Notifier) worker(name string) *hookWorker {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.workers[name]
}

// Status returns how a webhook's deliveries are going (its latest
// attempts too when detail); the zero status for an unknown webhook.
func (n *Notifier) Status(name string, detail bool) WebhookStatus {
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

// Wants reports whether the webhook subscribes to the notice: its kind
// matches one of the kinds (none: all), and for a run's notice, the run
// carries every label of the webhook.
func Wants(h *state.Webhook, nt *Notice) bool {
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
	n      *Notifier
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
	if !Wants(w.hook, &nt) {
		w.mu.Unlock()
		return
	}
	if len(w.queue) >= WebhookQueue {
		dropped := w.queue[0]
		w.queue = w.queue[1:]
		w.st.Dropped++
		if w.st.Dropped == 1 || w.st.Dropped%100 == 0 { // a receiver down for long must not flood the log
			w.n.log.Warn("webhook queue full: dropping the oldest notice", "webhook", w.hook.Name, "kind", dropped.Kind, "dropped_total", w.st.Dropped)
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
	log := w.n.log
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
	a.DurationMS = float64(time.Since(start)) / float64(time.Millisecond)
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
	status := Clip(resp.Status, maxStatus) // the receiver's words, shown to viewers
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

// Test sends a test notice to a webhook at once (one attempt, outside
// its queue) and returns the outcome; false when no such webhook has a
// worker.
func (n *Notifier) Test(ctx context.Context, actor, name string) (*DeliveryAttempt, bool) {
	w := n.worker(name)
	if w == nil {
		return nil, false
	}
	w.mu.Lock()
	hook := w.hook
	w.mu.Unlock()
	nt := Notice{Kind: "test", At: time.Now(), Actor: actor, Title: "koipond test notice",
		Text: fmt.Sprintf("%s sent this test notice to webhook %q.", actor, name)}
	a, _, _ := w.send(ctx, hook, nt, 1)
	w.record(a)
	return &a, true
}
