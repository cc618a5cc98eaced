package metrics

import "testing"

// Every kind of request key counts once; connection events, frames and
// sequences (whose steps are counted under their request key) do not.
func TestIsRequestKey(t *testing.T) {
	for key, want := range map[string]bool{
		"api:chat.postMessage": true,
		"http:GET http://h/x":  true,
		"ws:send":              true,
		"ws:match":             true,
		"ws:pong":              true, // an await by type
		"ws:login":             true, // a request named by "key"
		"ws:connect":           true, // dials
		"connect:open":         true, // connect steps in boot
		"connect:first":        true, // a named connect step
		"ws:close:1006":        false,
		"ws:disconnect":        false,
		"event:message":        false,
		"event:other":          false,
		"behavior:chat":        false,
		"boot":                 false,
		"formation:standup":    false,
		"formation:standup:2":  false, // the step's request is also under its own key
		"on_connect":           false,
		"on_connect:1":         false,
		"on_disconnect":        false,
		"apis:x":               false,
		"":                     false,
	} {
		if got := IsRequestKey(key); got != want {
			t.Errorf("IsRequestKey(%q) = %v, want %v", key, got, want)
		}
	}
}
