package metrics

import "strings"

// IsRequestKey reports whether a metric key counts requests a koi sent:
// api:*, http:* and ws:* (ws sends and awaits under any name, and the
// dials, ws:connect). These are what a run's req/s and errors/s figures
// sum. Not requests: the close and disconnect counts of connections
// (ws:close:*, ws:disconnect), incoming frames (event:*), and sequences
// (behavior:*, boot, formation:*, on_connect, on_disconnect), whose steps
// (formation:NAME:N, on_connect:N) are requests already counted under
// their request key.
func IsRequestKey(key string) bool {
	switch {
	case strings.HasPrefix(key, "api:"), strings.HasPrefix(key, "http:"), strings.HasPrefix(key, "connect:"):
		return true
	case strings.HasPrefix(key, "ws:"):
		return key != "ws:disconnect" && !strings.HasPrefix(key, "ws:close:")
	}
	return false
}
