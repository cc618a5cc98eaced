// Package keeper is koipond's server core: the single source of truth for
// behavior sets, formations, runs, launches, schools and the global
// switch, and what acts on them.
//
// A Keeper stores state in go-memdb (package keeper/state) written through
// to a JetStream KV bucket, answers school polls on NATS (wire.SubjectPoll),
// serves blobs (wire.SubjectBlob), publishes the switch
// (wire.SubjectControl), merges metrics reports (wire.SubjectMetrics) and
// checkpoints them, assigns koi to schools (the scheduler), plans formation
// launches, runs capacity searches, quarantines runs whose schools keep
// failing, evaluates live thresholds and guardrails every second and acts
// on them (the guard loop), and fires triggers. Around it: keeper/verdict
// judges (thresholds, rules, comparisons), keeper/notify delivers notices
// to webhooks, keeper/api is the HTTP edge.
//
// Open connects NATS (embedded or external) synchronously and starts the
// Keeper's goroutines; keeper/api binds the HTTP port and hands its handler
// to Serve. Every goroutine (responders, scheduler, guard loop, the HTTP
// server) is started by Open or Serve and owned by the Keeper's context
// and WaitGroup; the webhook workers are the notifier's, which the Keeper
// starts and closes. Close stops the HTTP server first, then NATS and the
// rest, and waits for all of them.
//
// Lock order: Keeper.mu (rejections, scheduler bookkeeping) is a leaf lock;
// the aggregator's lock is a leaf lock, taken under the window cache's
// (guardwindow.go) and nothing else; the guard's lock is a leaf lock; none
// is held across a store write or a NATS call.
package keeper
