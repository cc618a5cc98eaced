// Package notify tells people what the keeper did: notices (a run's
// start, end, pause or stop, a failed threshold, a guardrail's action, a
// trigger call), delivered to webhooks as JSON or Slack messages, signed
// with the webhook's secret (Sign, also used to verify trigger calls).
//
// A Notifier is constructed with what it reads (the stored webhooks, a
// run's links) and a logger. It owns its goroutines: one delivery worker
// per webhook, started by Start and Sync, stopped by Sync when the
// webhook is deleted and by Close, which waits for them. Enqueue never
// blocks on delivery: each worker has a bounded queue that drops its
// oldest notice when full.
//
// Lock order: Notifier.mu, then a worker's mu; never the reverse.
package notify
