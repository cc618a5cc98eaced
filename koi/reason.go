package koi

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// Failure reasons the koi gives besides the target's own words (a
// Slack-style `error` field) and "http NNN" / "close NNNN".
const (
	reasonTimeout      = "timeout"
	reasonNotJSON      = "reply not JSON"
	reasonNotConnected = "websocket not connected"
	reasonErrorFrame   = "error frame"
	reasonNoAPIBase    = "no api_base"
	reasonReplyBudget  = "reply budget"
	reasonReplyTooBig  = "reply too large"
	reasonBusy         = "busy"
	reasonConnLost     = "connection lost"
	reasonOKFalse      = "ok:false" // an ok:false reply without an error string
)

// record counts how a request or sequence ended: with its latency, except
// for a halted one (it stopped itself on purpose; its time says nothing
// about the target, and ~0 ms samples would drag the percentiles down).
// A failure is counted with its reason, taken from err (see reasonOf).
func record(s *metrics.Series, took time.Duration, o metrics.Outcome, err error) {
	switch {
	case o == metrics.Halted:
		s.Count(o)
	case o.Failure():
		reason, sample := reasonOf(err)
		s.ObserveReason(took, o, reason, sample)
	default:
		s.Observe(took, o)
	}
}

// countFailure counts a failure without a latency, with its reason.
func countFailure(s *metrics.Series, o metrics.Outcome, err error) {
	reason, sample := reasonOf(err)
	s.CountReason(o, reason, sample)
}

// reasonOf names why a request or sequence failed, shortly enough to
// group failures by (metrics bounds and escapes it), with a sample of
// what was said: the reason a requestError carries, "timeout", or
// "template: <first line>" for a template that failed, else the first
// line of the innermost error.
func reasonOf(err error) (reason, sample string) {
	if err == nil {
		return "", ""
	}
	re, ok := err.(*requestError) // a step's request: no search, no allocation
	if !ok {
		re = findRequestError(err)
	}
	if re != nil {
		if re.reason != "" {
			return re.reason, re.sampleOrMsg()
		}
		return firstLine(re.msg), re.msg
	}
	// Messages can be huge (a template's output quoted in its error): cut
	// them before building anything from them.
	var ee *behaviors.ExecError
	if errors.As(err, &ee) {
		return "template: " + cut(templateCause(ee.Msg), metrics.MaxReasonLen), cut(ee.Where, metrics.MaxSampleLen/2) + ": " + cut(ee.Msg, metrics.MaxSampleLen)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return reasonTimeout, cut(err.Error(), metrics.MaxSampleLen)
	}
	var se *StepError
	if errors.As(err, &se) {
		err = se.Err
	}
	msg := err.Error()
	return cut(firstLine(msg), metrics.MaxReasonLen), cut(msg, metrics.MaxSampleLen)
}

// cut returns at most the first n bytes of s (metrics escapes what a cut
// rune leaves).
func cut(s string, n int) string { return s[:min(len(s), n)] }

// findRequestError returns the requestError in err's chain, or nil. (Its
// own function: the variable errors.As writes escapes to the heap.)
func findRequestError(err error) *requestError {
	var re *requestError
	errors.As(err, &re)
	return re
}

// sampleOrMsg is the error's sample, or its message when it has none.
func (e *requestError) sampleOrMsg() string {
	if e.sample != "" {
		return e.sample
	}
	return e.msg
}

// templateCause shortens a template engine's message to its cause:
// "at <index (list 1) 5>: error calling index: index out of range: 5"
// becomes "error calling index: index out of range: 5" (the sample keeps
// the whole message and where it was written).
func templateCause(msg string) string {
	msg = firstLine(cut(strings.TrimPrefix(msg, "template: "), 4*metrics.MaxReasonLen))
	if strings.HasPrefix(msg, "at <") {
		if i := strings.Index(msg, ">: "); i >= 0 {
			msg = msg[i+len(">: "):]
		}
	}
	return msg
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// transportReason is "transport: <cause>" with the innermost cause of a
// failed connection or exchange, e.g. "transport: connection refused".
func transportReason(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	return "transport: " + firstLine(err.Error())
}

// bodySample copies the start of a reply body as a failure's sample (the
// body's buffer goes back to the reply budget), without trailing
// whitespace.
func bodySample(body []byte) string {
	return string(bytes.TrimRight(body[:min(len(body), metrics.MaxSampleLen)], " \t\r\n"))
}

// httpReasons holds "http NNN" for every status code 100–999, built once,
// so a failing status is named without allocating.
var httpReasons = sync.OnceValue(func() []string {
	r := make([]string, 900)
	for i := range r {
		r[i] = "http " + strconv.Itoa(100+i)
	}
	return r
})

// httpReason returns "http NNN" for a status code.
func httpReason(code int) string {
	if code >= 100 && code < 1000 {
		return httpReasons()[code-100]
	}
	return "http " + strconv.Itoa(code)
}

// closeReason returns "close NNNN" for a websocket close code.
func closeReason(code int) string { return "close " + strconv.Itoa(code) }
