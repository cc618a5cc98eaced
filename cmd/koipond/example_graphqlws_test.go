package main

import "testing"

// examples/graphql-ws against its real graphql-ws server: 50 koi in ten
// rooms log in (connection_init → connection_ack, then a subscription
// matched by its own id), post messages (mutations awaited by their
// operation ids, fanned out to the room's subscriptions), ping the server
// and answer its pings.
func TestGraphQLWSExample(t *testing.T) {
	runNodeExample(t, exampleCase{
		name:   "graphql-ws",
		env:    []string{"PING_MS=2000"},
		wsPath: "/graphql",
		koi:    50,
		checks: []exampleCheck{
			{keys: []string{"ws:postMessage"}, stat: "posted", freq: 0.5},
			{keys: []string{"ws:ping"}, stat: "messages.ping", freq: 0.3},
			{keys: []string{"ws:connection_init"}, stat: "messages.connection_init"},
			{keys: []string{"ws:subscribe", "ws:postMessage"}, stat: "messages.subscribe"},
			{keys: []string{"ws:pong"}, stat: "messages.pong"},
			{keys: []string{"event:message"}, stat: "delivered", event: true},
		},
		fanout: []string{"event:message"},
		loggedIn: func(st serverStats, n int) bool {
			return st.num("open") == float64(n) && st.num("acked") == float64(n) && st.num("subscribed") == float64(n)
		},
	})
}
