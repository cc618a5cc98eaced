package pond

import (
	"encoding/json"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// hub indexes the open websockets for fan-out. Channels that everyone is in
// (#general, #announcements) fan out to all connections and keep no index of
// their own; other channels keep the set of their members' connections.
//
// Lock order (see the package doc): channel.fanMu → hub.mu → wsConn.mu.
type hub struct {
	mu     sync.RWMutex
	all    []*wsConn              // every registered connection; wsConn.allIdx is its index
	byUser map[int32][]*wsConn    // a user may hold several connections
	byChan []map[*wsConn]struct{} // per channel; nil for everyone-channels
}

// wsConn is one websocket. Its writes happen only in writeLoop, which runs
// only while the queue is non-empty, so idle connections hold no writer
// goroutine.
type wsConn struct {
	srv  *Server
	ws   *websocket.Conn
	user int

	// Guarded by hub.mu.
	allIdx int
	chans  []int32

	mu      sync.Mutex
	queue   []*websocket.PreparedMessage
	spare   []*websocket.PreparedMessage
	writing bool // a writeLoop is running
	closed  bool // no more writes; the reader will unregister
}

func newHub(channels int) *hub {
	return &hub{byUser: map[int32][]*wsConn{}, byChan: make([]map[*wsConn]struct{}, channels)}
}

// register adds c to the indexes of every channel its user belongs to.
// Channel membership is read without hub.mu held (see the lock order), and
// read twice: a join that lands between the first read and c's entry in
// byUser is caught by the second.
func (h *hub) register(ws *workspace, c *wsConn) {
	chans := memberOf(ws, c.user)
	h.mu.Lock()
	c.allIdx = len(h.all)
	h.all = append(h.all, c)
	u := int32(c.user)
	h.byUser[u] = append(h.byUser[u], c)
	for _, j := range chans {
		h.addLocked(int(j), c)
	}
	h.mu.Unlock()
	again := memberOf(ws, c.user)
	if len(again) != len(chans) {
		h.mu.Lock()
		for _, j := range again {
			h.addLocked(int(j), c)
		}
		h.mu.Unlock()
	}
}

// memberOf lists the ordinary channels user belongs to.
func memberOf(ws *workspace, user int) []int32 {
	var out []int32
	for j, ch := range ws.channels {
		if ch.everyone {
			continue
		}
		ch.mu.RLock()
		member := ch.members.has(user)
		ch.mu.RUnlock()
		if member {
			out = append(out, int32(j))
		}
	}
	return out
}

func (h *hub) addLocked(j int, c *wsConn) {
	m := h.byChan[j]
	if m == nil {
		m = map[*wsConn]struct{}{}
		h.byChan[j] = m
	}
	if _, ok := m[c]; !ok {
		m[c] = struct{}{}
		c.chans = append(c.chans, int32(j))
	}
}

// joined indexes user's open connections under channel j.
func (h *hub) joined(j, user int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.byUser[int32(user)] {
		h.addLocked(j, c)
	}
}

// unregister removes c from every index.
func (h *hub) unregister(c *wsConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	last := len(h.all) - 1
	if c.allIdx > last || h.all[c.allIdx] != c {
		return // not registered
	}
	h.all[c.allIdx] = h.all[last]
	h.all[c.allIdx].allIdx = c.allIdx
	h.all[last] = nil
	h.all = h.all[:last]
	u := int32(c.user)
	list := h.byUser[u]
	for i, x := range list {
		if x == c {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(h.byUser, u)
	} else {
		h.byUser[u] = list
	}
	for _, j := range c.chans {
		delete(h.byChan[j], c)
	}
	c.chans = nil
}

// toChannel queues pm on every connection of channel ch's members, except
// those of user except (-1 for none).
func (h *hub) toChannel(ch *channel, pm *websocket.PreparedMessage, except int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if ch.everyone {
		for _, c := range h.all {
			if c.user != except {
				c.enqueue(pm)
			}
		}
		return
	}
	for c := range h.byChan[ch.idx] {
		if c.user != except {
			c.enqueue(pm)
		}
	}
}

// toUser queues pm on every connection of user.
func (h *hub) toUser(user int, pm *websocket.PreparedMessage) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.byUser[int32(user)] {
		c.enqueue(pm)
	}
}

// toAll queues pm on every connection.
func (h *hub) toAll(pm *websocket.PreparedMessage) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.all {
		c.enqueue(pm)
	}
}

// snapshot returns the open connections.
func (h *hub) snapshot() []*wsConn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]*wsConn(nil), h.all...)
}

// enqueue queues pm without blocking. A full queue marks c a slow consumer:
// it is closed and counted, never allowed to grow.
func (c *wsConn) enqueue(pm *websocket.PreparedMessage) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.srv.cfg.SendQueue {
		c.closed = true
		c.queue = nil
		c.mu.Unlock()
		c.srv.stats.slowDrops.Add(1)
		c.srv.logf("pond: websocket of %s dropped: send queue full", UserID(c.user))
		c.ws.NetConn().Close() // the reader sees the error and unregisters
		return
	}
	c.queue = append(c.queue, pm)
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	if !c.srv.spawn(c.writeLoop) {
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
	}
}

// writeLoop writes queued messages until the queue is empty, then exits.
func (c *wsConn) writeLoop() {
	for {
		c.mu.Lock()
		if c.closed || len(c.queue) == 0 {
			c.writing = false
			if cap(c.queue) > 8 {
				c.queue = nil // give back the memory a burst took
			}
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.mu.Unlock()

		c.ws.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		for _, pm := range batch {
			if err := c.ws.WritePreparedMessage(pm); err != nil {
				c.mu.Lock()
				already := c.closed
				c.closed, c.queue, c.writing = true, nil, false
				c.mu.Unlock()
				var ne net.Error
				if !already && errors.As(err, &ne) && ne.Timeout() {
					c.srv.stats.slowDrops.Add(1)
					c.srv.logf("pond: websocket of %s dropped: write timed out", UserID(c.user))
				}
				c.ws.NetConn().Close()
				return
			}
			if pm != c.srv.pingMsg {
				c.srv.stats.eventsSent.Add(1)
			}
		}
		clear(batch)
		c.mu.Lock()
		if cap(batch) <= 8 {
			c.spare = batch[:0]
		}
		c.mu.Unlock()
	}
}

// closeConn marks c closed and closes its socket.
func (c *wsConn) closeConn() {
	c.mu.Lock()
	c.closed, c.queue = true, nil
	c.mu.Unlock()
	c.ws.NetConn().Close()
}

// clientFrame is what clients may send.
type clientFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Channel string          `json:"channel,omitempty"`
}

// Error codes of {"type":"error"} frames.
const (
	frameErrBadJSON     = 1
	frameErrUnknownType = 2
	frameErrBadChannel  = 3
)

// handleFrame answers one text frame from user. It never panics on any
// input and reports whether the frame was well formed.
func (s *Server) handleFrame(c *wsConn, data []byte) bool {
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		c.enqueue(s.prepare(frameError(nil, frameErrBadJSON, "malformed json frame")))
		return false
	}
	if len(f.ID) > 0 && !validID(f.ID) {
		f.ID = nil
	}
	switch f.Type {
	case "ping":
		c.enqueue(s.prepare(pongEvent{Type: "pong", ReplyTo: f.ID, SentAt: nowMillis()}))
		return true
	case "typing":
		ch := s.ws.channelByID(f.Channel)
		if ch == nil {
			c.enqueue(s.prepare(frameError(f.ID, frameErrBadChannel, "channel_not_found")))
			return false
		}
		ch.mu.RLock()
		member := ch.isMemberLocked(c.user)
		ch.mu.RUnlock()
		if !member {
			c.enqueue(s.prepare(frameError(f.ID, frameErrBadChannel, "not_in_channel")))
			return false
		}
		s.hub.toChannel(ch, s.prepare(typingEvent{Type: "user_typing", Channel: ch.id, User: s.ws.userIDs[c.user], SentAt: nowMillis()}), c.user)
		return true
	default:
		c.enqueue(s.prepare(frameError(f.ID, frameErrUnknownType, "unsupported type")))
		return false
	}
}

// validID accepts a JSON number or string as a frame id.
func validID(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v.(type) {
	case float64, string:
		return true
	}
	return false
}

func frameError(id json.RawMessage, code int, msg string) errorFrame {
	return errorFrame{Type: "error", ReplyTo: id, Error: frameErrBody{Code: code, Msg: msg}, SentAt: nowMillis()}
}

// prepare encodes an event once for every connection it goes to.
func (s *Server) prepare(v any) *websocket.PreparedMessage {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"type":"error","error":{"code":0,"msg":"encoding failed"}}`)
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		// NewPreparedMessage fails only on a compression error, and pond
		// never compresses; keep a valid message anyway.
		pm, _ = websocket.NewPreparedMessage(websocket.TextMessage, []byte(`{"type":"error"}`))
	}
	return pm
}

// nowMillis is the sent_at clock: unix milliseconds with a fraction.
func nowMillis() float64 { return float64(time.Now().UnixMicro()) / 1000 }
