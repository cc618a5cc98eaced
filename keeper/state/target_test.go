package state

import "testing"

// A run's target reads well whichever of the API base and the websocket
// URL it has (notifications, the audit log and `run show` print it).
func TestTargetWhere(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{APIBase: "http://h/api"}, "http://h/api"},
		{Target{WebsocketURL: "ws://h/mqtt", WebsocketSubprotocols: []string{"mqtt", "mqttv3.1"}}, "ws://h/mqtt (mqtt, mqttv3.1)"},
		{Target{APIBase: "http://h/api", WebsocketURL: "ws://h/ws"}, "http://h/api and ws://h/ws"},
		{Target{}, "the websocket URL boot gives"},
	} {
		if got := tc.t.Where(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.t, got, tc.want)
		}
	}
}
