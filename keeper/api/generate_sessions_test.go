package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/koipond/koipond/wire/wiretest"
)

// The sessions options are checked at the edge, each refusal naming its
// field and saying what would do, for JSON requests and uploads alike.
func TestGenerateSessionOptionsRefused(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	base := "http://" + k.HTTPAddr()
	many := make([]string, maxDropTransitions+1)
	for i := range many {
		many[i] = "a>b"
	}
	for _, c := range []struct {
		name  string
		body  map[string]any
		field string
		want  string
	}{
		// A gap without sessions would be silently ignored.
		{"gap alone", map[string]any{"session_gap": "10m"}, "session_gap", "needs sessions"},
		// So would drops.
		{"drops alone", map[string]any{"drop_transitions": []string{"a>b"}}, "drop_transitions", "needs sessions"},
		// Not a duration.
		{"gap words", map[string]any{"sessions": true, "session_gap": "half an hour"}, "session_gap", "not a duration"},
		// Every call its own session.
		{"gap tiny", map[string]any{"sessions": true, "session_gap": "10ms"}, "session_gap", "outside 1s..168h"},
		// A negative gap.
		{"gap negative", map[string]any{"sessions": true, "session_gap": "-5m"}, "session_gap", "outside"},
		// Longer than a week.
		{"gap huge", map[string]any{"sessions": true, "session_gap": "9000h"}, "session_gap", "outside"},
		// No arrow.
		{"drop no arrow", map[string]any{"sessions": true, "drop_transitions": []string{"a>b", "chat.postMessage"}}, "drop_transitions", "transition 2"},
		// An empty side.
		{"drop empty side", map[string]any{"sessions": true, "drop_transitions": []string{">b"}}, "drop_transitions", "not from>to"},
		// One huge entry, quoted back clipped.
		{"drop huge", map[string]any{"sessions": true, "drop_transitions": []string{strings.Repeat("m", 5000) + ">b"}}, "drop_transitions", "at most 512"},
		// Too many.
		{"drops many", map[string]any{"sessions": true, "drop_transitions": many}, "drop_transitions", "at most 1000"},
	} {
		c.body["from"] = "s3://bucket/calls/"
		var rep struct {
			Error struct{ Code, Field, Message string }
		}
		code := (wiretest.API{Base: base}).Do(t, "POST", "/api/v1/behavior-sets/generate", c.body, &rep)
		if code != http.StatusBadRequest || rep.Error.Field != c.field || !strings.Contains(rep.Error.Message, c.want) || len(rep.Error.Message) > 300 {
			t.Errorf("%s: HTTP %d %+v, want 400 on %s saying %q", c.name, code, rep.Error, c.field, c.want)
		}
		// The same through an upload's query.
		q := url.Values{"name": {"calls.csv"}}
		for k, v := range c.body {
			switch v := v.(type) {
			case string:
				if k != "from" {
					q.Set(k, v)
				}
			case bool:
				q.Set(k, "true")
			case []string:
				q[k] = v
			}
		}
		data := uploadCalls()
		ucode, body := postUpload(t, base, q.Encode(), bytes.NewReader(data), int64(len(data)))
		var urep struct {
			Error struct{ Field, Message string }
		}
		json.Unmarshal([]byte(body), &urep)
		if ucode != http.StatusBadRequest || urep.Error.Field != c.field || !strings.Contains(urep.Error.Message, c.want) {
			t.Errorf("%s (upload): HTTP %d %.300s", c.name, ucode, body)
		}
	}
	// sessions must be a flag in a query too.
	data := uploadCalls()
	if code, body := postUpload(t, base, "name=calls.csv&sessions=often", bytes.NewReader(data), int64(len(data))); code != http.StatusBadRequest || !strings.Contains(body, "sessions must be true or false") {
		t.Errorf("sessions=often: HTTP %d %.300s", code, body)
	}
}
