package koi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// writeWait bounds one websocket write.
const writeWait = 10 * time.Second

// connLoop keeps the websocket open until ctx is done: dial, run
// on_connect beside the reader until the connection fails, run
// on_disconnect, back off, dial again. A dial the server refuses with an
// HTTP status runs on_disconnect too. A connection whose on_connect
// failed does not reset the backoff.
func (k *Koi) connLoop(ctx context.Context) {
	attempt := 0
	everConnected := false
	defer k.expectConnection(false)
	for ctx.Err() == nil {
		spec := k.store.Websocket()
		if spec.URL == "" {
			k.noSocket()
			<-ctx.Done()
			return
		}
		k.expectConnection(true)
		if everConnected {
			k.setConnState(Reconnecting)
		} else {
			k.setConnState(Connecting)
		}
		start := time.Now()
		conn, resp, err := k.dial(ctx, spec.URL, k.handshakeHeader(spec))
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A refused status is named by it; a handshake answered
			// without an upgrade (2xx, 3xx) failed as a transport would.
			o, reason := metrics.Transport, transportReason(err)
			if resp != nil {
				if so := statusOutcome(resp.StatusCode); so != metrics.OK {
					o, reason = so, httpReason(resp.StatusCode)
				}
			}
			k.rt.series("ws:connect").ObserveReason(time.Since(start), o, reason, err.Error())
			if resp != nil && resp.StatusCode >= 400 {
				// The server refused the handshake: the URL or token is
				// stale (a Slack rtm.connect URL expires, a restarted
				// target forgets its tickets). on_disconnect is where a
				// set fetches fresh ones, so it runs again before the
				// next dial instead of the koi redialling a URL that will
				// never work.
				k.runOnDisconnect()
			}
			if !sleepCtx(ctx, k.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		k.rt.series("ws:connect").Observe(time.Since(start), metrics.OK)
		if everConnected {
			k.count(func(s *Stats) { s.Reconnects++ })
		}
		everConnected = true
		liveFor, failed := k.serve(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		if !failed {
			k.rt.series("ws:disconnect").CountReason(metrics.Transport, reasonConnLost, "")
		}
		k.setConnState(Reconnecting)
		k.runOnDisconnect()
		if !failed && liveFor >= k.rt.cfg.BackoffReset {
			attempt = 0
		}
		if !sleepCtx(ctx, k.backoff(attempt)) {
			return
		}
		attempt++
	}
}

func (k *Koi) handshakeHeader(spec behaviors.WebsocketSpec) http.Header {
	if len(spec.Subprotocols) == 0 {
		return spec.Header
	}
	h := spec.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, p := range spec.Subprotocols {
		h.Add("Sec-WebSocket-Protocol", p)
	}
	return h
}

// serve reads from an open connection until it fails or ctx is done, with
// a keepalive ping on a runtime timer (no goroutine of its own), and runs
// on_connect beside it. It returns how long the connection was live, and
// whether on_connect failed (and closed it).
func (k *Koi) serve(ctx context.Context, conn *websocket.Conn) (live time.Duration, onConnectFailed bool) {
	k.conn.Store(conn)
	var failed atomic.Bool
	endConn := context.CancelFunc(func() {})
	if k.rt.set.OnConnect != nil { // its own context, ended with the connection
		var connCtx context.Context
		connCtx, endConn = context.WithCancel(ctx)
		k.seqs.Add(1)
		go k.runOnConnect(connCtx, conn, func() { failed.Store(true) })
	} else {
		k.goLive(conn)
	}
	conn.SetReadLimit(k.rt.cfg.ReadLimit)
	pongWait := k.rt.cfg.PongWait
	_ = conn.SetReadDeadline(time.Now().Add(pongWait))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	// Keepalive: ping only after PingInterval without any frame received.
	// Most servers ping (or send events) themselves; doubling their pings
	// costs a write and a read per koi per interval for nothing.
	var lastRead atomic.Int64
	lastRead.Store(time.Now().UnixNano())
	var ping *time.Timer
	var closed atomic.Bool // set before ping.Stop, so a running callback does not re-arm
	ping = time.AfterFunc(k.jitter(k.rt.cfg.PingInterval), func() {
		if closed.Load() {
			return
		}
		next := k.jitter(k.rt.cfg.PingInterval)
		if idle := time.Since(time.Unix(0, lastRead.Load())); idle < k.rt.cfg.PingInterval {
			next = k.rt.cfg.PingInterval - idle + next/10
		} else if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
			return
		}
		if !closed.Load() {
			ping.Reset(next)
		}
	})
	conn.SetPingHandler(func(data string) error {
		lastRead.Store(time.Now().UnixNano())
		_ = conn.SetReadDeadline(time.Now().Add(pongWait))
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	stopWatch := context.AfterFunc(ctx, func() {
		// Stop: say goodbye, then unblock the reader.
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, "koi stopped"), time.Now().Add(time.Second))
		conn.Close()
	})
	defer func() {
		stopWatch()
		closed.Store(true)
		ping.Stop()
		k.conn.Store(nil)
		endConn()
		k.dropLive(conn)
		conn.Close()
	}()
	for {
		err := k.readFrame(ctx, conn)
		if err != nil {
			if ctx.Err() == nil && !failed.Load() {
				k.recordClose(err)
			}
			return k.liveDuration(conn), failed.Load()
		}
		lastRead.Store(time.Now().UnixNano())
		_ = conn.SetReadDeadline(time.Now().Add(pongWait))
	}
}

// readFrame reads and handles one frame, holding its bytes (and its
// decoded value's) reserved in the school's reply budget until handled,
// or until whatever kept its value lets go (see frameHold). A frame that
// does not fit the budget is read through without being kept (the
// connection stays up) and counted under ReplyBudgetKey.
func (k *Koi) readFrame(ctx context.Context, conn *websocket.Conn) error {
	mt, rd, err := conn.NextReader()
	if err != nil {
		return err
	}
	data, held, err := k.rt.readReply(rd, k.rt.cfg.ReadLimit, -1, false)
	fh := frameHold{rt: k.rt, n: held}
	defer fh.done()
	if errors.Is(err, ErrReplyBudget) {
		k.rt.series(ReplyBudgetKey).CountReason(metrics.Error, reasonReplyBudget, err.Error())
		n, err := io.Copy(io.Discard, rd)
		k.rt.replyBytes.Add(uint64(n))
		k.count(func(s *Stats) { s.Events++; s.BytesIn += n })
		return err
	}
	if errors.Is(err, errReplyTooLarge) {
		return websocket.ErrReadLimit
	}
	if err != nil {
		return err
	}
	k.handleFrame(ctx, mt == websocket.BinaryMessage, data, &fh)
	return nil
}

// jitter returns d scaled by a random factor in [0.8, 1.2].
func (k *Koi) jitter(d time.Duration) time.Duration {
	k.mu.Lock()
	f := 0.8 + 0.4*k.rng.Float64()
	k.mu.Unlock()
	return time.Duration(float64(d) * f)
}

// handleFrame classifies one frame, records it under its type (with the
// fan-out delay when it carries a send time), wakes any waiting ws request
// and, once the connection is live, runs the on_event handlers. What
// keeps the frame's value past the call keeps a reference to fh.
func (k *Koi) handleFrame(ctx context.Context, binary bool, data []byte, fh *frameHold) {
	k.count(func(s *Stats) { s.Events++; s.BytesIn += int64(len(data)) })
	now := time.Now()
	set := k.rt.set
	c, scanned := set.Frames.ClassifyType(binary, data, k.rt.cfg.EventTimeField)
	if !scanned {
		c = set.Frames.Classify(ctx, k.store, binary, data, k.rt.cfg.EventTimeField)
	}
	if s := k.rt.eventSeries(c.Type); !c.SentAt.IsZero() {
		s.Observe(max(0, now.Sub(c.SentAt)), metrics.OK)
	} else {
		s.Count(metrics.OK)
	}
	if scanned && k.framesRead(c.Type) {
		c.Value = behaviors.DecodeFrame(data) // once, for every reader
	}
	k.deliver(&Frame{Binary: binary, Raw: data, Type: c.Type, Value: c.Value, JSON: c.Kind == behaviors.FrameJSON, SentAt: c.SentAt}, fh)
	if c.Type == "" || len(set.OnEvent) == 0 {
		return
	}
	k.handleEvent(c.Type, c.Value, fh)
}

// runEventHandlers runs a frame's on_event handlers: the actions of its
// type and of "*" on the reader, sequences on their own goroutines, each
// keeping a reference to fh (the frame's reservation) until it ends. A
// stop ends the actions' templates; one it ends is not counted as a
// failure.
func (k *Koi) runEventHandlers(typ string, value any, fh *frameHold) {
	set := k.rt.set
	ctx := k.runCtx()
	var env *behaviors.Env
	for _, key := range [2]string{typ, "*"} {
		h := set.OnEvent[key]
		if h == nil {
			continue
		}
		for _, a := range h.Actions {
			if env == nil {
				env = &behaviors.Env{Store: k.store}
			}
			if err := set.Prog.Run(ctx, env, a, value); err != nil && !errors.Is(err, behaviors.ErrHalt) {
				if ctx.Err() == nil { // else a stop ended it
					countFailure(k.rt.series("on_event:"+key), metrics.Error, err)
				}
				break
			}
		}
		if h.Sequence != nil {
			k.startEventSequence(key, h.Sequence, value, fh)
		}
	}
}

// send writes one frame on the open connection, serialized with other
// writers.
func (k *Koi) send(msgType int, data []byte) error {
	conn := k.conn.Load()
	if conn == nil {
		return errNotConnected
	}
	return k.writeTo(conn, msgType, data)
}

// writeTo writes one frame on conn, serialized with other writers.
func (k *Koi) writeTo(conn *websocket.Conn, msgType int, data []byte) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
	if err := conn.WriteMessage(msgType, data); err != nil {
		return err
	}
	k.count(func(s *Stats) { s.FramesOut++; s.BytesOut += int64(len(data)) })
	return nil
}

// recordClose counts how a connection ended, by close code
// ("ws:close:1006" for an abnormal close without a close frame,
// "ws:close:1009" for a frame over the read limit; closeSeries).
func (k *Koi) recordClose(err error) {
	code := websocket.CloseAbnormalClosure
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		code = ce.Code
	case errors.Is(err, websocket.ErrReadLimit): // a frame over the read limit: the koi closed with 1009
		code = websocket.CloseMessageTooBig
	}
	s := k.rt.closeSeries(code)
	if code == websocket.CloseNormalClosure || code == websocket.CloseGoingAway {
		s.Count(metrics.OK)
		return
	}
	sample := ""
	if ce != nil {
		sample = ce.Text
	} else if err != nil {
		sample = err.Error()
	}
	s.CountReason(metrics.Transport, closeReason(code), sample)
}

var errNotConnected = &requestError{outcome: metrics.Transport, msg: "websocket not connected", reason: reasonNotConnected}

// Connected reports whether the koi's websocket is open. (A koi whose run
// has no websocket is in State Connected once booted, yet Connected is
// false: the state says "ready", this says "socket open".)
func (k *Koi) Connected() bool { return k.conn.Load() != nil }
