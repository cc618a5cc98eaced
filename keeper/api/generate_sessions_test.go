package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
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
		// Under a minute: sessions would begin within one minute.
		{"gap tiny", map[string]any{"sessions": true, "session_gap": "10s"}, "session_gap", "10s is outside 1m..168h"},
		// A negative gap.
		{"gap negative", map[string]any{"sessions": true, "session_gap": "-5m"}, "session_gap", "outside"},
		// Longer than a week.
		{"gap huge", map[string]any{"sessions": true, "session_gap": "9000h"}, "session_gap", "outside"},
		// No arrow.
		{"drop no arrow", map[string]any{"sessions": true, "drop_transitions": []string{"a>b", "chat.postMessage"}}, "drop_transitions", "transition 2"},
		// An empty side.
		{"drop empty side", map[string]any{"sessions": true, "drop_transitions": []string{">b"}}, "drop_transitions", "not from>to"},
		// A blank side.
		{"drop blank side", map[string]any{"sessions": true, "drop_transitions": []string{"a>  "}}, "drop_transitions", "transition 1"},
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

// sessionCalls is a raw call log of 30 users × 4 sessions 20 minutes
// apart: users.info, then conversations.history, then
// conversations.mark for even users and chat.postMessage for odd ones,
// a few seconds apart.
func sessionCalls() []byte {
	var b bytes.Buffer
	b.WriteString("user,method,timestamp\n")
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for u := range 30 {
		for s := range 4 {
			at := base.Add(time.Duration(s)*20*time.Minute + time.Duration(u)*time.Second)
			last := "conversations.mark"
			if u%2 == 1 {
				last = "chat.postMessage"
			}
			for i, m := range []string{"users.info", "conversations.history", last} {
				fmt.Fprintf(&b, "U%d,%s,%d\n", u, m, at.Add(time.Duration(3*i)*time.Second).UnixMilli())
			}
		}
	}
	return b.Bytes()
}

// apiPairs lists the (method → next method) pairs a set's sequences can
// make, following `choose` branches.
func apiPairs(set *behaviors.Set) map[string]bool {
	pairs := map[string]bool{}
	var walk func(seq *behaviors.Sequence, prev string)
	walk = func(seq *behaviors.Sequence, prev string) {
		if seq == nil {
			return
		}
		for i := range seq.Steps {
			st := &seq.Steps[i]
			if st.Request != nil && st.Request.Type == behaviors.API {
				if prev != "" {
					pairs[prev+">"+st.Request.Method] = true
				}
				prev = st.Request.Method
			}
			for _, b := range st.Choose {
				walk(b.Sequence, prev)
			}
		}
	}
	for _, b := range set.Behaviors {
		walk(b.Sequence, "")
	}
	return pairs
}

// An upload generated with sessions answers the learned transitions; one
// named in drop_transitions is marked dropped and not kept, and the set
// saved from the answer's file beside the compared sequences validates
// and never makes it, while it makes the kept ones.
func TestGenerateSessionsDropAndSave(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	api := wiretest.API{Base: "http://" + k.HTTPAddr()}
	seqs, err := os.ReadFile("../../examples/slack/sequences.json")
	if err != nil {
		t.Fatal(err)
	}
	freqs, _ := os.ReadFile("../../examples/slack/frequencies.json")
	api.Call(t, "POST", "/api/v1/behavior-sets", map[string]any{"name": "slack", "files": []map[string]string{
		{"name": "frequencies.json", "content": string(freqs)}, {"name": "sequences.json", "content": string(seqs)}}}, nil)

	const drop = "conversations.history>chat.postMessage"
	q := url.Values{"name": {"calls.csv"}, "sessions": {"true"}, "session_gap": {"5m"}, "sequences": {"slack"},
		"sequenced_only": {"true"}, "drop_transitions": {drop, drop}}
	data := sessionCalls()
	code, body := postUpload(t, api.Base, q.Encode(), bytes.NewReader(data), int64(len(data)))
	if code != http.StatusOK {
		t.Fatalf("upload: HTTP %d %.500s", code, body)
	}
	var rep struct {
		File   struct{ Name, Content string }
		Result struct {
			Sessions *struct {
				Count, Users int64
				Coverage     float64
				Transitions  []struct {
					From, To      string
					Count         int64
					Probability   float64
					Kept, Dropped bool
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	ss := rep.Result.Sessions
	if ss == nil || ss.Count != 120 || ss.Users != 30 {
		t.Fatalf("sessions %+v, want 120 sessions of 30 users", ss)
	}
	got := map[string]string{}
	for _, tr := range ss.Transitions {
		got[tr.From+">"+tr.To] = fmt.Sprintf("%d kept=%v dropped=%v", tr.Count, tr.Kept, tr.Dropped)
	}
	want := map[string]string{
		"users.info>conversations.history":         "120 kept=true dropped=false",
		"conversations.history>conversations.mark": "60 kept=true dropped=false",
		drop: "60 kept=false dropped=true",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
	if ss.Coverage < 0.74 || ss.Coverage > 0.76 {
		t.Errorf("coverage %.3f, want 0.75 (180 of 240 transitions kept)", ss.Coverage)
	}

	// Saved beside the sequences, as the page does.
	var saved struct{ Hash string }
	api.Call(t, "POST", "/api/v1/behavior-sets", map[string]any{"name": "slack-sessions", "files": []map[string]string{
		{"name": "frequencies.json", "content": rep.File.Content}, {"name": "sequences.json", "content": string(seqs)}}}, &saved)
	var full struct {
		Files []struct{ Name, Content string }
	}
	api.Call(t, "GET", "/api/v1/behavior-sets/"+saved.Hash, nil, &full)
	var files []behaviors.File
	for _, f := range full.Files {
		files = append(files, behaviors.File{Name: f.Name, Data: []byte(f.Content)})
	}
	set, diags := behaviors.Parse(files...)
	if set == nil || diags.HasErrors() {
		t.Fatalf("the saved set does not validate: %v", diags)
	}
	pairs := apiPairs(set)
	if pairs[drop] {
		t.Errorf("the saved set makes the dropped %s", drop)
	}
	for _, p := range []string{"users.info>conversations.history", "conversations.history>conversations.mark"} {
		if !pairs[p] {
			t.Errorf("the saved set lacks the kept %s: %v", p, pairs)
		}
	}
}
