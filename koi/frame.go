package koi

import "time"

// Frame is one incoming websocket message after classification: what
// awaits match against, what on_event handlers and post_actions see as `.`.
type Frame struct {
	// Binary is true for a binary message, false for a text one.
	Binary bool
	// Raw is the payload as received.
	Raw []byte
	// Type is the frame's classified type ("" when no rule names it).
	Type string
	// Value is what templates see as `.`: the decoded JSON value for a JSON
	// frame, otherwise the payload as a string (bytes for a binary frame).
	Value any
	// JSON reports whether the payload parsed as JSON.
	JSON bool
	// SentAt is the server's send time, when the frame carried one.
	SentAt time.Time
}
