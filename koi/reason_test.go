package koi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire/wiretest"
)

// reasonsOf returns a series' reasons as "reason=count" strings, and the
// samples by reason.
func reasonsOf(ss *metrics.SeriesSnapshot) (got []string, samples map[string]string) {
	samples = map[string]string{}
	if ss == nil {
		return nil, samples
	}
	for _, r := range ss.Reasons {
		got = append(got, fmt.Sprintf("%s=%d", r.Reason, r.Count))
		samples[r.Reason] = r.Sample
	}
	return got, samples
}

// Every kind of failure is counted under its reason: the target's own
// `error` string for an ok:false reply (whether or not a post_action reads
// the reply), "http NNN", "timeout", "transport: <cause>" and
// "template: <first line>"; the sequence's key gets the reason of the step
// that failed. Halts are not failures and have no reason.
func TestFailureReasons(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"ok":false,"error":"not_authed"}`)
	})
	mux.HandleFunc("/api/conversations.history", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"ok":false,"error":"channel_not_found"}`)
	})
	mux.HandleFunc("/api/users.info", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded, try later", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/api/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on

	set := parseSet(t, `{"behaviors": {
	  "post": {"steps": [{"request": {"type": "api", "method": "chat.postMessage"}}]},
	  "history": {"steps": [{"request": {"type": "api", "method": "conversations.history",
	       "post_actions": ["{{ set \"n\" .messages }}"]}}]},
	  "info": {"steps": [{"request": {"type": "api", "method": "users.info"}}]},
	  "slow": {"steps": [{"request": {"type": "api", "method": "slow", "timeout_ms": 50}}]},
	  "refused": {"steps": [{"request": {"type": "http", "url": "`+deadURL+`/x"}}]},
	  "template": {"steps": [{"request": {"type": "api", "method": "auth.test", "args": {"x": "{{ index (list 1) 5 }}"}}}]},
	  "halt": {"steps": [{"pre_actions": ["{{ halt \"nothing to do\" }}"], "request": {"type": "api", "method": "chat.postMessage"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api"})
	k := rt.New(behaviors.Identity{}, 1)
	ctx := context.Background()
	for _, name := range []string{"post", "post", "history", "info", "slow", "refused", "template", "halt"} {
		if err := k.RunSequence(ctx, set.Behavior(name).Sequence, nil); err == nil {
			t.Fatalf("%s: no error", name)
		}
	}
	snap := rt.Metrics().Snapshot()
	tests := []struct {
		key, want, sample string
	}{
		// ok:false, reply read by nothing (the scanning path).
		{"api:chat.postMessage", "not_authed=2", `{"ok":false,"error":"not_authed"}`},
		// ok:false, reply decoded for a post_action.
		{"api:conversations.history", "channel_not_found=1", `{"ok":false,"error":"channel_not_found"}`},
		// An HTTP status, with the body's start as sample.
		{"api:users.info", "http 503=1", "overloaded, try later"},
		// The request's own timeout.
		{"api:slow", "timeout=1", ""},
		// A refused connection, named by its innermost cause.
		{"http:GET " + deadURL + "/x", "transport: connection refused=1", ""},
	}
	for _, tt := range tests {
		ss := snap.Series[tt.key]
		got, samples := reasonsOf(ss)
		if strings.Join(got, ",") != tt.want {
			t.Errorf("%s: reasons %v, want %s (keys %v)", tt.key, got, tt.want, snap.Keys())
			continue
		}
		if tt.sample != "" && samples[strings.Split(tt.want, "=")[0]] != tt.sample {
			t.Errorf("%s: sample %q, want %q", tt.key, samples[strings.Split(tt.want, "=")[0]], tt.sample)
		}
	}
	// A template failing at run time, rendering the request.
	got, samples := reasonsOf(snap.Series["api:auth.test"])
	if len(got) != 1 || !strings.HasPrefix(got[0], "template: ") || !strings.Contains(got[0], "index") {
		t.Errorf("api:auth.test: reasons %v, want one naming the template's failure", got)
	}
	t.Logf("template reason %v, sample %v", got, samples)
	// A halt is no failure: nothing is counted under any reason for it.
	for _, key := range snap.Keys() {
		for _, r := range snap.Series[key].Reasons {
			if strings.Contains(r.Reason, "nothing to do") || strings.Contains(r.Sample, "nothing to do") {
				t.Errorf("%s: a halt counted as a failure: %v", key, r)
			}
		}
	}
}

// A hostile target answers every call with a different, huge error string
// full of control bytes: what the koi keep stays within MaxReasons
// entries of bounded, printable text per key, counts no failure twice and
// loses none, and the encoded snapshot stays small.
func TestHostileReasonsBounded(t *testing.T) {
	const calls = 10_000
	// The first 100 errors are 1 MiB each, the rest 1 KiB: all distinct,
	// without pushing 10 GB through loopback on a shared CI machine
	// (metrics' own test records 10,000 errors of 1 MiB each).
	var i atomic.Int64
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := i.Add(1)
		size := 1 << 10
		if n <= 100 {
			size = 1 << 20
		}
		fmt.Fprintf(w, `{"ok":false,"error":"%05d%s"}`, n, strings.Repeat(`\u0000\u00e9x`, size/13))
	}))
	t.Cleanup(hostile.Close)
	api := parseSet(t, `{"behaviors": {"api": {"steps": [{"request": {"type": "api", "method": "m"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: api, APIBase: hostile.URL + "/api"})
	k := rt.New(behaviors.Identity{}, 1)
	ctx := context.Background()
	start := time.Now()
	for range calls {
		if err := k.RunSequence(ctx, api.Behavior("api").Sequence, nil); err == nil {
			t.Fatal("hostile ok:false accepted")
		}
	}
	t.Logf("%d hostile calls in %v", calls, time.Since(start))
	snap := rt.Metrics().Snapshot()
	for _, key := range snap.Keys() {
		ss := snap.Series[key]
		if len(ss.Reasons) > metrics.MaxReasons {
			t.Fatalf("%s: %d reasons", key, len(ss.Reasons))
		}
		var sum uint64
		for _, r := range ss.Reasons {
			sum += r.Count
			if len(r.Reason) > metrics.MaxReasonLen || len(r.Sample) > metrics.MaxSampleLen {
				t.Fatalf("%s: %d-byte reason, %d-byte sample kept", key, len(r.Reason), len(r.Sample))
			}
			for _, c := range []byte(r.Reason + r.Sample) {
				if c < 0x20 || c > 0x7e {
					t.Fatalf("%s: unprintable byte %#x kept in %q", key, c, r.Reason)
				}
			}
		}
		if sum != ss.Failures() || sum != calls {
			t.Fatalf("%s: reasons count %d, failures %d, calls %d", key, sum, ss.Failures(), calls)
		}
	}
	b, err := snap.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if limit := 2 * metrics.MaxReasons * (metrics.MaxReasonLen + metrics.MaxSampleLen + 16); len(b) > limit+1024 {
		t.Fatalf("snapshot encodes to %d bytes", len(b))
	}
	t.Logf("snapshot: %d bytes", len(b))
}

// A server closing every connection with 1011 and a close text full of
// control bytes and non-ASCII: the closes are counted under "close 1011" with the
// text as a bounded, printable sample.
func TestCloseReason(t *testing.T) {
	text := strings.Repeat("\x00boom é", 15) // valid UTF-8 (or the client says 1006); at most 123 bytes
	srv := newHostileServer(t, func(c *hconn) {
		if c.n <= 3 {
			c.close(websocket.CloseInternalServerErr, text)
			return
		}
		for range c.recv { // then stay up until stop
		}
	})
	rt, _, stop := runOne(t, srv, koi.RuntimeConfig{Set: parseSet(t, `{"behaviors": {}}`),
		BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	tot := newTotals(rt)
	defer func() {
		if t.Failed() {
			for _, k := range tot.all.Keys() {
				t.Logf("%s %v %v", k, tot.all.Series[k], tot.all.Series[k].Reasons)
			}
		}
	}()
	wiretest.Until(t, 20*time.Second, "three closes", func() bool {
		return tot.series(t, "ws:close:1011").Counts[metrics.Transport] == 3
	})
	ss := tot.series(t, "ws:close:1011")
	if len(ss.Reasons) != 1 || ss.Reasons[0].Reason != "close 1011" || ss.Reasons[0].Count != ss.Failures() {
		t.Fatalf("ws:close:1011 reasons %+v, failures %d", ss.Reasons, ss.Failures())
	}
	if s := ss.Reasons[0].Sample; len(s) > metrics.MaxSampleLen || !strings.HasPrefix(s, `\x00boom \xc3\xa9`) {
		t.Errorf("sample %q", s)
	}
	wiretest.Until(t, 5*time.Second, "a socket open to stop", func() bool { _, o, _, _ := srv.state(); return o > 0 })
	stop()
}
