package main

import "testing"

// examples/socketio against its real Socket.IO server: 50 koi in ten
// rooms log in (CONNECT with a token, join with an acked event), chat
// (acked events broadcast to the room) and type, and answer the Engine.IO
// heartbeat (every 2 s here, so a koi that did not answer would be
// dropped within the run).
func TestSocketIOExample(t *testing.T) {
	runNodeExample(t, exampleCase{
		name:   "socketio",
		env:    []string{"PING_INTERVAL_MS=2000", "PING_TIMEOUT_MS=10000"},
		wsPath: "/socket.io/?EIO=4&transport=websocket",
		koi:    50,
		checks: []exampleCheck{
			{keys: []string{"ws:chat"}, stat: "chat", freq: 0.5},
			{keys: []string{"ws:typing"}, stat: "typing", freq: 0.3},
			{keys: []string{"ws:login"}, stat: "connects"},
			{keys: []string{"ws:join"}, stat: "join"},
			{keys: []string{"ws:pong"}, stat: "pong"},
		},
		fanout: []string{"event:event:chat", "event:event:typing"},
		loggedIn: func(st serverStats, n int) bool {
			return st.num("open") == float64(n) && st.num("joined") == float64(n)
		},
	})
}
