package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/keeper/contract"
)

// progressRun is a run view with connected koi and live thresholds in the
// given states.
func progressRun(state contract.RunState, connected int, live ...string) *runView {
	v := &runView{}
	v.Run = api.Run{ID: "run-1", State: state, Koi: 100}
	v.KoiNow.Connected = connected
	for i, st := range live {
		v.LiveNow = append(v.LiveNow, api.LiveThresholdView{Key: "api:chat.postMessage", Expr: fmt.Sprintf("p95 < %dms", 100*(i+1)), State: st, Unit: "ms"})
	}
	return v
}

// progressSequence is two minutes of a run: ramping, one threshold
// flipping to FAIL at 30 s and back at 50 s, the keeper down from 61 s to
// 64 s, a top failure reason from 70 s.
func progressSequence() []progressSample {
	var seq []progressSample
	for sec := 1; sec <= 120; sec++ {
		s := progressSample{Elapsed: time.Duration(sec) * time.Second, Rate: 10, ErrRate: 0}
		switch {
		case sec >= 61 && sec <= 64:
			s.Down = time.Duration(sec-60) * time.Second
			s.DownErr = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
			seq = append(seq, s)
			continue
		case sec >= 30 && sec < 50:
			s.Run = progressRun(contract.RunRunning, 100, api.LivePass, api.LiveFail, api.LivePass)
		case sec < 5:
			s.Run = progressRun(contract.RunRunning, 20*sec, api.LiveNoData, api.LiveNoData, api.LiveNoData)
		default:
			s.Run = progressRun(contract.RunRunning, 100, api.LivePass, api.LivePass, api.LivePass)
		}
		if sec >= 70 {
			s.TopKey, s.Top, s.TopCount, s.ErrRate = "api:chat.postMessage", "not_authed", 12, 2.4
		}
		seq = append(seq, s)
	}
	return seq
}

// TestLineProgress: in a log a full line comes with the first sample,
// every 10 s, and at once when a threshold flips or the keeper goes or
// comes back; under it the failing thresholds and the one that recovered.
func TestLineProgress(t *testing.T) {
	var b strings.Builder
	p := &lineProgress{w: &b, every: 10 * time.Second}
	for _, s := range progressSequence() {
		p.Update(s)
	}
	p.Event("        GUARDRAIL \"x\"")
	p.Finish()
	want := `    1s  running  20/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 3 no data
    5s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 3 pass
   15s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 3 pass
   25s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 3 pass
   30s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 2 pass, 1 FAIL
        live: api:chat.postMessage p95 < 200ms  FAIL
   40s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 2 pass, 1 FAIL
        live: api:chat.postMessage p95 < 200ms  FAIL
   50s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 3 pass
        live: api:chat.postMessage p95 < 200ms  ok
  1m0s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 3 pass
  1m1s  keeper unreachable for 1s, retrying (connection refused)
  1m5s  running  100/100 koi connected  10.0 req/s  0.00 errors/s  thresholds 3 pass
 1m15s  running  100/100 koi connected  10.0 req/s  2.40 errors/s  thresholds 3 pass  top error: api:chat.postMessage not_authed ×12
 1m25s  running  100/100 koi connected  10.0 req/s  2.40 errors/s  thresholds 3 pass  top error: api:chat.postMessage not_authed ×12
 1m35s  running  100/100 koi connected  10.0 req/s  2.40 errors/s  thresholds 3 pass  top error: api:chat.postMessage not_authed ×12
 1m45s  running  100/100 koi connected  10.0 req/s  2.40 errors/s  thresholds 3 pass  top error: api:chat.postMessage not_authed ×12
 1m55s  running  100/100 koi connected  10.0 req/s  2.40 errors/s  thresholds 3 pass  top error: api:chat.postMessage not_authed ×12
        GUARDRAIL "x"
`
	if got := b.String(); got != want {
		t.Errorf("plain progress:\n%s\nwant:\n%s", got, want)
	}
	if n := strings.Count(b.String(), "\n"); n > 25 {
		t.Errorf("%d lines for two minutes; the old progress wrote 480", n)
	}
}

// TestTTYProgress: on a terminal each sample redraws one line in place,
// cut to the terminal's width; an event goes above it; Finish leaves it.
func TestTTYProgress(t *testing.T) {
	var b strings.Builder
	width := 60
	p := &ttyProgress{w: &b, width: func() int { return width }}
	seq := progressSequence()
	p.Update(seq[0])
	p.Update(seq[60]) // keeper down
	p.Event("GUARDRAIL \"x\"")
	width = 200
	p.Update(seq[69])
	p.Finish()
	want := "\r    1s  running  20/100 koi connected  10.0 req/s  0.00 er…\x1b[K" +
		"\r  1m1s  keeper unreachable for 1s, retrying (connection re…\x1b[K" +
		"\rGUARDRAIL \"x\"\x1b[K\n  1m1s  keeper unreachable for 1s, retrying (connection re…" +
		"\r 1m10s  running  100/100 koi connected  10.0 req/s  2.40 errors/s  thresholds 3 pass  top error: api:chat.postMessage not_authed ×12\x1b[K" +
		"\n"
	if got := b.String(); got != want {
		t.Errorf("terminal progress:\n%q\nwant:\n%q", got, want)
	}
	for _, l := range strings.Split(b.String(), "\r") {
		if n := len([]rune(strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\x1b[K"))); n > 199 {
			t.Errorf("line of %d columns on a terminal of 200: %q", n, l)
		}
	}
}

// TestProgressCleansReasons: a failure reason is text from the target; a
// terminal escape or a newline in it must not reach the terminal.
func TestProgressCleansReasons(t *testing.T) {
	s := progressSample{Elapsed: time.Second, Run: progressRun(contract.RunRunning, 1),
		TopKey: "api:x\r", Top: "\x1b[2J\x1b]0;owned\x07bad\nline" + strings.Repeat("y", 500), TopCount: 1}
	line := progressLine(s)
	if strings.ContainsAny(line, "\x1b\r\n\x07") {
		t.Errorf("control characters reach the terminal: %q", line)
	}
	if len([]rune(line)) > 200 {
		t.Errorf("an unbounded reason makes a line of %d runes", len([]rune(line)))
	}
}

func TestFitMiddle(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		// short keys stay whole
		{"api:chat.postMessage", "api:chat.postMessage"},
		// a long formation step keeps its kind and its end
		{"formation:announcement-reaction-with-a-very-long-name:step 3", "formation:announce…y-long-name:step 3"},
	} {
		if got := fitMiddle(c.in, 37); got != c.want {
			t.Errorf("fitMiddle(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestKeeperUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		// nothing listens: a restart in progress
		{fmt.Errorf("reaching the keeper: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		// the client marked it already
		{fmt.Errorf("x: %w", errUnavailable), true},
		// a proxy in front of a keeper that is down
		{&apiError{Status: 503, Code: "unavailable"}, true},
		// a refusal is an answer
		{&apiError{Status: 404, Code: "not_found"}, false},
		// so is a bad body
		{errors.New("decoding the keeper's answer: invalid character"), false},
		// the user's own interrupt is not an outage
		{context.Canceled, false},
		// a keeper that accepted the connection and never answered
		{fmt.Errorf("reading the keeper's answer: %w", context.DeadlineExceeded), true},
		// the keeper closed the connection under the request
		{&url.Error{Op: "Get", URL: "http://k/api/v1/runs/x", Err: io.EOF}, true},
		// a truncated body is the keeper's answer, not an outage
		{fmt.Errorf("decoding the keeper's answer: %w", io.ErrUnexpectedEOF), false},
	} {
		if got := keeperUnavailable(c.err); got != c.want {
			t.Errorf("keeperUnavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
