package koi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// The connection lifecycle. A connection is "live" once its on_connect
// has succeeded (at once when the set has none): only then may behaviors,
// formations, boot steps and on_event sequences send on it, and only then
// do on_event handlers run. While a connection is expected but not live,
// ws sends wait (bounded by their request's timeout).
//
// Everything here is guarded by k.mu except liveFlag and eventSeqs.

// linkKey marks the context of an on_connect run: its ws requests send on
// its own connection without waiting for it to be live.
type linkKey struct{}

func withLink(ctx context.Context, c *websocket.Conn) context.Context {
	return context.WithValue(ctx, linkKey{}, c)
}

// onConnectFailedReason is what a failed on_connect's connection is
// closed with (code 1000).
const onConnectFailedReason = "on_connect failed"

// changedLocked wakes everything waiting for the link to change.
func (k *Koi) changedLocked() {
	if k.linkChange != nil {
		close(k.linkChange)
		k.linkChange = nil
	}
}

// setConnState records the connection's state; it is published as the
// koi's State only once boot is over (boot may open the socket).
func (k *Koi) setConnState(s State) {
	k.mu.Lock()
	k.connState = s
	if k.booted {
		k.state.Store(int32(s))
	}
	k.mu.Unlock()
}

// expectConnection says whether a connection is being kept (ws sends wait
// for it) or not (they fail at once).
func (k *Koi) expectConnection(on bool) {
	k.mu.Lock()
	k.expectConn = on
	k.changedLocked()
	k.mu.Unlock()
}

// noSocket records that the koi runs without a websocket: ws sends fail
// at once, and the koi is ready (connected) once booted.
func (k *Koi) noSocket() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expectConn = false
	k.everLive = true
	k.connState = Connected
	if k.booted {
		k.state.Store(int32(Connected))
		k.markReady()
	}
	k.changedLocked()
}

// goLive makes conn the connection ws sends use, if it is still the open
// one.
func (k *Koi) goLive(conn *websocket.Conn) {
	if k.markLive(conn) {
		k.releaseEarly()
	}
}

// markLive makes conn the live connection; false when it has already
// closed.
func (k *Koi) markLive(conn *websocket.Conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.conn.Load() != conn {
		return false
	}
	k.live, k.liveAt = conn, time.Now().UnixNano()
	k.liveFlag.Store(true)
	k.everLive = true
	k.connState = Connected
	if k.booted {
		k.state.Store(int32(Connected))
		k.markReady()
	}
	k.changedLocked()
	return true
}

// dropLive forgets conn once it has closed.
func (k *Koi) dropLive(conn *websocket.Conn) {
	defer k.dropEarly()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.live == conn {
		k.live = nil
		k.liveFlag.Store(false)
	}
	k.changedLocked()
}

// liveConn returns the connection a ws send may use now: the one of the
// on_connect run ctx belongs to, or the live one. With wait, it waits up
// to timeout for a connection to become live while one is expected.
func (k *Koi) liveConn(ctx context.Context, timeout time.Duration) (*websocket.Conn, error) {
	if c, ok := ctx.Value(linkKey{}).(*websocket.Conn); ok {
		if k.conn.Load() != c {
			return nil, errNotConnected
		}
		return c, nil
	}
	var t *time.Timer
	for {
		k.mu.Lock()
		live, expect := k.live, k.expectConn
		var changed chan struct{}
		if live == nil && expect {
			if k.linkChange == nil {
				k.linkChange = make(chan struct{})
			}
			changed = k.linkChange
		}
		k.mu.Unlock()
		if live != nil {
			return live, nil
		}
		if !expect {
			return nil, errNotConnected
		}
		if t == nil {
			t = time.NewTimer(timeout)
			defer t.Stop()
		}
		select {
		case <-changed:
		case <-t.C:
			return nil, errNotConnected
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sendFrame writes one frame of a ws request: on the live connection,
// waiting for one up to timeout while the koi is (re)connecting or its
// on_connect runs.
func (k *Koi) sendFrame(ctx context.Context, timeout time.Duration, msgType int, data []byte) error {
	conn, err := k.liveConn(ctx, timeout)
	if err != nil {
		return err
	}
	return k.writeTo(conn, msgType, data)
}

// connectNow opens the websocket in the middle of a boot sequence (a
// "connect" request) and returns once it is open and on_connect has
// succeeded, or the request's timeout has passed. The connection loop
// started here carries on after boot (no second dial).
func (k *Koi) connectNow(ctx context.Context, r *behaviors.Request) error {
	if k.store.Websocket().URL == "" {
		return &requestError{outcome: metrics.Error, msg: "no websocket URL to connect to: set one before the connect step (websocketURL) or in the run's target"}
	}
	k.mu.Lock()
	stop := k.stopCtx
	if stop == nil {
		k.mu.Unlock()
		return &requestError{outcome: metrics.Error, msg: "a connect request runs only in the boot of a running koi"}
	}
	if !k.loopStarted {
		k.loopStarted = true
		k.expectConn = true
		k.seqs.Add(1)
		go func() {
			defer k.seqs.Done()
			k.connLoop(stop)
		}()
	}
	k.mu.Unlock()
	timeout := k.timeout(r)
	if _, err := k.liveConn(ctx, timeout); err != nil {
		if errors.Is(err, errNotConnected) {
			return &requestError{outcome: metrics.Timeout, msg: fmt.Sprintf("websocket not open with on_connect succeeded within %v", timeout)}
		}
		return err
	}
	return nil
}

// runOnConnect runs the set's on_connect for conn (on its own goroutine,
// counted in k.seqs) once the koi is not paused: on success conn goes
// live; on failure the connection is closed ("on_connect failed") and
// failed is set, so the connection loop backs off without resetting its
// attempt counter. connCtx ends with the connection (or stop).
func (k *Koi) runOnConnect(connCtx context.Context, conn *websocket.Conn, failed func()) {
	defer k.seqs.Done()
	seq := k.rt.set.OnConnect
	for {
		actx, err := k.waitActive(connCtx)
		if err != nil {
			return
		}
		rctx, cancel := context.WithCancel(withLink(actx, conn))
		unhook := context.AfterFunc(connCtx, cancel)
		start := time.Now()
		err = k.execute(rctx, seq, &behaviors.Env{Store: k.store}, "on_connect")
		o := outcomeOf(rctx, err)
		unhook()
		cancel()
		s := k.rt.series("on_connect")
		switch {
		case err == nil:
			s.Observe(time.Since(start), metrics.OK)
			k.goLive(conn)
			return
		case errors.Is(err, behaviors.ErrHalt):
			s.Count(metrics.Halted)
			k.goLive(conn)
			return
		case connCtx.Err() != nil: // the connection ended, or stop
			if k.stopped() {
				return
			}
			// The server (or the network) ended the connection before
			// on_connect was done: a refusal, not a pause.
			s.ObserveReason(time.Since(start), metrics.Transport, reasonConnLost, "connection ended during on_connect")
			return
		case actx.Err() != nil:
			// Paused mid-way: the session is half set up, and running
			// on_connect again on the same socket would be a second login
			// most servers refuse (MQTT, Socket.IO, graphql-ws all do).
			// Close it; the connection loop dials again, and the new
			// connection's on_connect waits for the resume.
			s.Count(metrics.Canceled)
			k.closeConn(conn, pausedDuringOnConnectReason)
			return
		}
		record(s, time.Since(start), o, err)
		failed()
		k.closeConn(conn, onConnectFailedReason)
		return
	}
}

// pausedDuringOnConnectReason is the close reason of a connection whose
// on_connect a pause interrupted.
const pausedDuringOnConnectReason = "paused during on_connect"

// closeConn says goodbye with a normal close and the reason, then closes.
func (k *Koi) closeConn(conn *websocket.Conn, reason string) {
	k.wmu.Lock()
	_ = conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, reason), time.Now().Add(time.Second))
	k.wmu.Unlock()
	conn.Close()
}

func (k *Koi) stopped() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stopCtx != nil && k.stopCtx.Err() != nil
}

// runOnDisconnect runs the set's on_disconnect after a connection ended
// (not on stop), on the connection loop's goroutine. While paused it is
// skipped (counted canceled): nothing is sent during a pause.
func (k *Koi) runOnDisconnect() {
	seq := k.rt.set.OnDisconnect
	if seq == nil {
		return
	}
	k.mu.Lock()
	actx := k.actCtx
	k.mu.Unlock()
	if actx == nil {
		return // not running (yet): nothing to clean up or refresh
	}
	start := time.Now()
	err := k.execute(actx, seq, &behaviors.Env{Store: k.store}, "on_disconnect")
	s := k.rt.series("on_disconnect")
	switch o := outcomeOf(actx, err); o {
	case metrics.Halted, metrics.Canceled:
		s.Count(o)
	default:
		record(s, time.Since(start), o, err)
	}
}

// startEventSequence runs an on_event sequence handler on its own
// goroutine, at most MaxEventSequences at once per koi: a frame arriving
// while they are all busy is dropped and counted (outcome error, "busy").
// The sequence keeps the frame's reservation until it ends: its value is
// the sequence's "event" for as long as it runs.
func (k *Koi) startEventSequence(key string, seq *behaviors.Sequence, value any, fh *frameHold) {
	k.mu.Lock()
	if k.paused || k.actCtx == nil || k.actCtx.Err() != nil {
		k.mu.Unlock()
		return
	}
	if k.eventSeqs >= behaviors.MaxEventSequences {
		k.mu.Unlock()
		k.rt.series("on_event:"+key).CountReason(metrics.Error, reasonBusy, "")
		return
	}
	k.eventSeqs++
	actx := k.actCtx
	k.seqs.Add(1)
	k.mu.Unlock()
	h := fh.keep()
	go func() {
		defer func() {
			h.drop()
			k.mu.Lock()
			k.eventSeqs--
			k.mu.Unlock()
			k.seqs.Done()
		}()
		env := &behaviors.Env{Store: k.store, Vars: map[string]any{"event": value}}
		start := time.Now()
		err := k.execute(actx, seq, env, "on_event:"+key)
		record(k.rt.series("on_event:"+key), time.Since(start), outcomeOf(actx, err), err)
	}()
}

// liveDuration returns how long conn has been live (0 when it is not).
func (k *Koi) liveDuration(conn *websocket.Conn) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.live != conn {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - k.liveAt)
}
