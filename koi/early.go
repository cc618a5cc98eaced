package koi

import (
	"sync"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// Frames a server sends right behind on_connect's last reply (MQTT
// retained messages after a SUBACK, Socket.IO events after the connect
// ack) may reach the reader before on_connect has marked the connection
// live. They are held, within bounds, and handed to on_event in order the
// moment on_connect succeeds; they are dropped with the connection if it
// fails. A frame that does not fit is counted as an error of the on_event
// handler it was for.
//
// A held frame keeps its reservation in the reply budget until it is
// handed over or dropped, and maxEarlyBytes bounds what the held frames
// hold reserved: their bytes and what decoding them costs, not only their
// length (a 2 KB frame of empty objects is 40 KB decoded).
const (
	maxEarlyFrames = 32
	maxEarlyBytes  = 64 << 10
)

// earlyGate exists only for koi whose set has both on_connect and on_event
// handlers, so other koi pay nothing for it.
type earlyGate struct {
	mu    sync.Mutex // held while a frame's handlers start, so order is kept
	live  bool       // the connection's held frames have been handed over
	held  []earlyFrame
	bytes int64 // the held frames' reservations
}

type earlyFrame struct {
	typ   string
	value any
	hold  *hold // the frame's reservation
}

func newEarlyGate(set *behaviors.Set) *earlyGate {
	if set.OnConnect == nil || len(set.OnEvent) == 0 {
		return nil
	}
	return &earlyGate{}
}

// handleEvent runs the on_event handlers of a frame now, or holds it
// (and a reference to its reservation, fh) until on_connect succeeds.
func (k *Koi) handleEvent(typ string, value any, fh *frameHold) {
	g := k.early
	if g == nil {
		if k.liveFlag.Load() {
			k.runEventHandlers(typ, value, fh)
		}
		return
	}
	set := k.rt.set
	key := typ // the handler the frame is for: its type's, else "*"
	if set.OnEvent[typ] == nil {
		if set.OnEvent["*"] == nil {
			return
		}
		key = "*"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.live {
		k.runEventHandlers(typ, value, fh)
		return
	}
	size := fh.size()
	if len(g.held) >= maxEarlyFrames || g.bytes+size > maxEarlyBytes {
		// Under the handler's key, as its other failures are: a key the
		// set names, never one the server chooses.
		k.rt.series("on_event:"+key).CountReason(metrics.Error, "early frames dropped", "")
		return
	}
	g.held = append(g.held, earlyFrame{typ: typ, value: value, hold: fh.keep()})
	g.bytes += size
}

// releaseEarly hands the held frames to on_event once on_connect has
// succeeded on the live connection.
func (k *Koi) releaseEarly() {
	g := k.early
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !k.liveFlag.Load() {
		return
	}
	for _, f := range g.held {
		fh := frameHold{rt: k.rt, h: f.hold} // the gate's reference, passed on
		k.runEventHandlers(f.typ, f.value, &fh)
		fh.done()
	}
	clear(g.held)
	g.held, g.bytes, g.live = g.held[:0], 0, true
}

// dropEarly forgets what a closed connection held, and gives its
// reservations back.
func (k *Koi) dropEarly() {
	g := k.early
	if g == nil {
		return
	}
	g.mu.Lock()
	for _, f := range g.held {
		f.hold.drop()
	}
	clear(g.held)
	g.held, g.bytes, g.live = g.held[:0], 0, false
	g.mu.Unlock()
}
