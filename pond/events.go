package pond

import "encoding/json"

// Websocket event shapes. Every server frame carries SentAt ("sent_at"):
// unix milliseconds with a fractional part, taken when the event was built,
// just before fan-out.

// HelloEvent is the first frame on every websocket.
type HelloEvent struct {
	Type   string  `json:"type"` // "hello"
	SentAt float64 `json:"sent_at"`
}

// MessageEvent is fanned out to every connected member of a channel when a
// message is posted there (the poster's connections included).
type MessageEvent struct {
	Type    string  `json:"type"` // "message"
	Channel string  `json:"channel"`
	User    string  `json:"user"`
	Text    string  `json:"text"`
	TS      string  `json:"ts"`
	EventTS string  `json:"event_ts"`
	Team    string  `json:"team"`
	SentAt  float64 `json:"sent_at"`
}

// ReactionEvent is reaction_added or reaction_removed, fanned out to every
// connected member of the message's channel.
type ReactionEvent struct {
	Type     string       `json:"type"` // "reaction_added" or "reaction_removed"
	User     string       `json:"user"`
	Reaction string       `json:"reaction"`
	ItemUser string       `json:"item_user"`
	Item     ReactionItem `json:"item"`
	EventTS  string       `json:"event_ts"`
	SentAt   float64      `json:"sent_at"`
}

// ReactionItem names the message a reaction is on.
type ReactionItem struct {
	Type    string `json:"type"` // "message"
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// MarkedEvent (channel_marked) goes to the marking user's own connections.
type MarkedEvent struct {
	Type               string  `json:"type"` // "channel_marked"
	Channel            string  `json:"channel"`
	TS                 string  `json:"ts"`
	UnreadCountDisplay int     `json:"unread_count_display"`
	SentAt             float64 `json:"sent_at"`
}

// PresenceEvent (presence_change) goes to the user's own connections.
type PresenceEvent struct {
	Type     string  `json:"type"` // "presence_change"
	User     string  `json:"user"`
	Presence string  `json:"presence"` // "active" or "away"
	SentAt   float64 `json:"sent_at"`
}

type typingEvent struct {
	Type    string  `json:"type"` // "user_typing"
	Channel string  `json:"channel"`
	User    string  `json:"user"`
	SentAt  float64 `json:"sent_at"`
}

type pongEvent struct {
	Type    string          `json:"type"` // "pong"
	ReplyTo json.RawMessage `json:"reply_to,omitempty"`
	SentAt  float64         `json:"sent_at"`
}

type errorFrame struct {
	Type    string          `json:"type"` // "error"
	ReplyTo json.RawMessage `json:"reply_to,omitempty"`
	Error   frameErrBody    `json:"error"`
	SentAt  float64         `json:"sent_at"`
}

type frameErrBody struct {
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}
