package koi

import (
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
)

// BenchmarkFailureRecording is what a koi spends on one failed api call
// after reading pond's ok:false reply: judging the reply (replyOutcome),
// then counting it as before reasons existed (the outcome only), or with
// its reason and sample (record).
func BenchmarkFailureRecording(b *testing.B) {
	body := []byte(`{"ok":false,"error":"not_authed"}`)
	b.Run("outcome-only", func(b *testing.B) {
		var r metrics.Recorder
		s := r.Series("api:auth.test")
		b.ReportAllocs()
		for b.Loop() {
			err := replyOutcome(200, body)
			s.Observe(time.Millisecond, err.(*requestError).outcome)
		}
	})
	b.Run("with-reason", func(b *testing.B) {
		var r metrics.Recorder
		s := r.Series("api:auth.test")
		b.ReportAllocs()
		for b.Loop() {
			err := replyOutcome(200, body)
			record(s, time.Millisecond, err.(*requestError).outcome, err)
		}
	})
}
