package koi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Event is one decoded websocket frame.
type Event struct {
	// Type is the frame's "type" field ("" when absent or not JSON).
	Type string
	// Data is the decoded JSON value: usually map[string]any; numbers are
	// json.Number. For a frame that is not JSON it is the raw text.
	Data any
	// SentAt is the server's send time, when the frame carried one.
	SentAt time.Time
	// JSON reports whether the frame parsed as JSON.
	JSON bool
}

// ErrBadEvent marks a frame that could not be decoded as JSON.
var ErrBadEvent = errors.New("websocket frame is not valid JSON")

// DecodeEvent decodes a frame. timeField names the field holding the
// server's send time in unix milliseconds (a number or numeric string). A
// frame that is not JSON returns an Event with the raw text and
// ErrBadEvent: the caller counts it and carries on.
func DecodeEvent(raw []byte, timeField string) (Event, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		return Event{Data: string(raw)}, ErrBadEvent
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Event{Data: string(raw)}, fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	if dec.More() {
		return Event{Data: string(raw)}, fmt.Errorf("%w: data after the JSON value", ErrBadEvent)
	}
	ev := Event{Data: v, JSON: true}
	m, ok := v.(map[string]any)
	if !ok {
		return ev, nil
	}
	ev.Type, _ = m["type"].(string)
	if timeField != "" {
		var ms float64
		var have bool
		switch t := m[timeField].(type) {
		case json.Number:
			f, err := t.Float64()
			ms, have = f, err == nil
		case string:
			f, err := json.Number(t).Float64()
			ms, have = f, err == nil
		}
		// Plausible unix milliseconds only (2001–2286): anything else is
		// not a send time.
		if have && !math.IsNaN(ms) && ms > 1e12 && ms < 1e13 {
			sec, frac := math.Modf(ms / 1000)
			ev.SentAt = time.Unix(int64(sec), int64(frac*1e9))
		}
	}
	return ev, nil
}
