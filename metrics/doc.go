// Package metrics records what koi observe — latencies and outcomes per
// metric key — and ships them between processes.
//
// A school owns one Recorder. Koi call [Recorder.Series] once per key, keep
// the *Series handle, and call [Series.Observe] (latency + outcome) or
// [Series.Count] (outcome only) from as many goroutines as they like. Once
// per interval the school calls [Recorder.Snapshot], which returns everything
// recorded since the previous snapshot and starts a new interval, encodes it
// with [Snapshot.MarshalBinary] and publishes it. The keeper decodes reports
// from every school with [Snapshot.UnmarshalBinary] and folds them together
// with [Snapshot.Merge]: outcome counts add exactly, latency distributions
// merge as DDSketches, so merged quantiles keep the sketch's 1% relative
// accuracy.
//
// A failure can carry a reason ([Series.ObserveReason], [Series.CountReason]):
// the target's own word for it ("not_authed"), "http 503", "close 1011",
// "timeout". Each series keeps at most [MaxReasons] reasons per interval
// with one sample each, the rest counted under [OtherReason]; reasons and
// samples are bounded and escaped to printable ASCII before they are
// kept, and a reason seen before is counted without allocating. Merge adds
// their counts and keeps the most frequent.
//
// Keys are kind:name strings built with [Key], for example
// "api:conversations.history", "ws:connect", "event:message" or
// "formation:<name>:<step>". A key is at most [MaxKeyLen] bytes of UTF-8
// without control characters ([KeyProblem]): a Recorder records any other
// under its [CleanKey], and a receiver refuses a snapshot holding one
// ([Snapshot.CheckKeys]) after decoding it.
//
// Latencies are stored in milliseconds (as float64) inside the sketch;
// callers only ever see time.Duration.
//
// Lock order: Recorder.snapMu, then Recorder.mu or a shard's mu. No code path
// holds two shard locks at once.
package metrics
