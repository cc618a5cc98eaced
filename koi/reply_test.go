package koi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

// A reply that no post_action reads is only scanned: it must be judged
// exactly as the decoded one is (same outcome, same error text).
func TestUnreadRepliesJudgedLikeDecodedOnes(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	set := parseSet(t, `{"behaviors": {
	  "read":   {"steps": [{"request": {"type": "api", "method": "m", "post_actions": ["{{ setKoi \"r\" . }}"]}}]},
	  "unread": {"steps": [{"request": {"type": "api", "method": "m", "post_actions": ["{{ setKoi \"u\" 1 }}"]}}]},
	  "none":   {"steps": [{"request": {"type": "api", "method": "m"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api"})
	k := rt.New(behaviors.Identity{Token: "t"}, 1)
	for _, tc := range []struct {
		body, err string // err: a part of the error ("" for none)
	}{
		{`{"ok":true,"messages":[]}`, ""},                                           // fine
		{`{"ok":false,"error":"channel_not_found"}`, "ok:false: channel_not_found"}, // refused
		{`{"ok":false,"error":"a \"quoted\" \u00e9"}`, `ok:false: a "quoted" é`},    // an escaped error text
		{`{"ok":false}`, "ok:false: "},                                              // refused without a reason
		{`{"ok":false,"error":42}`, "ok:false: "},                                   // a reason that is no string
		{`{"ok":true,"ok":false}`, "ok:false"},                                      // a repeated key: the last wins
		{`{"ok":"false"}`, ""},                                                      // a string is not false
		{`[1,2]`, ""},                                                               // JSON, not an object
		{`<html>bad gateway</html>`, "reply is not JSON"},                           // not JSON
		{`{"ok":true`, "reply is not JSON"},                                         // cut short
	} {
		body = tc.body
		var errs [3]string
		for i, name := range []string{"read", "unread", "none"} {
			err := k.RunSequence(context.Background(), set.Behavior(name).Sequence, nil)
			if err != nil {
				errs[i] = err.Error()
			}
			if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s, %s: err = %v, want %q", tc.body, name, err, tc.err)
			}
		}
		// The texts after the step's place agree.
		strip := func(s string) string {
			if i := strings.Index(s, "error: "); i >= 0 {
				return s[i:]
			}
			return s
		}
		if tc.err != "" && !strings.Contains(tc.err, "not JSON") && (strip(errs[0]) != strip(errs[1]) || strip(errs[1]) != strip(errs[2])) {
			t.Errorf("%s: errors differ: %q", tc.body, errs)
		}
	}
	snap := rt.Metrics().Snapshot()
	if m := snap.Series["api:m"]; m == nil || m.Counts[metrics.Error] != 3*7 || m.Counts[metrics.OK] != 3*3 {
		t.Errorf("api:m = %+v, want 21 errors and 9 ok", m)
	}
}
