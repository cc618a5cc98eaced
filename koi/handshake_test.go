package koi_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	kmetrics "github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire/wiretest"
)

// heapSampler records the peak of the heap (live and not yet collected
// objects) every millisecond until stopped.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func heapNow() (objects, goal uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

func sampleHeap(t testing.TB) *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if v, _ := heapNow(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(h.close)
	return h
}

func (h *heapSampler) close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// A target that answers the websocket handshake with a header line that
// never ends cannot grow a koi's memory past a fixed bound: the handshake
// fails once the reply passes it, the failure names the limit, the koi
// dials again after its backoff, and whatever the handshake held of the
// school's reply budget is given back. (Unbounded, each koi's heap grew
// by hundreds of megabytes a second until the handshake timeout.)
func TestHandshakeReplyIsBounded(t *testing.T) {
	const koiN, redials = 4, 3
	addr, accepted := wiretest.EndlessHandshake(t)
	budget := koi.NewReplyBudget(64 << 20)
	rt := newRuntime(t, koi.RuntimeConfig{Set: parseSet(t, `{"behaviors": {}}`),
		Websocket: behaviors.WebsocketSpec{URL: "ws://" + addr + "/ws"}, ReplyBudget: budget,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
	tot := newTotals(rt)

	// The heap may reach the collector's goal before it collects; beyond
	// that, the koi may hold a handshake each, a few times its bound in
	// the line buffers of the header parser. 8 MiB a koi is well above
	// that and far below what an unbounded reply reaches.
	runtime.GC()
	base, goal := heapNow()
	bound := max(goal, 2*base) + koiN*(8<<20)
	h := sampleHeap(t)
	sw := startSwarm(t, rt, koiN)
	wiretest.WaitFor(t, 60*time.Second, fmt.Sprintf("each koi to dial again (%d dials)", koiN*(redials+1)), func() error {
		if p := h.peak.Load(); p > bound {
			sw.cancel()
			t.Fatalf("heap peaked at %d MiB while koi dialed a target whose handshake reply never ends (bound %d MiB, %d MiB before)",
				p>>20, bound>>20, base>>20)
		}
		if n := accepted.Load(); n < koiN*(redials+1) {
			return fmt.Errorf("%d dials; heap peak %d MiB", n, h.peak.Load()>>20)
		}
		return nil
	})
	sw.stop(t)
	h.close()
	if p := h.peak.Load(); p > bound {
		t.Errorf("heap peaked at %d MiB (bound %d MiB, %d MiB before)", p>>20, bound>>20, base>>20)
	}
	s := tot.series(t, "ws:connect")
	reasons, samples := reasonsOf(s)
	named := false
	for reason, sample := range samples {
		if strings.Contains(reason, "handshake") && strings.Contains(reason, "64 KiB") {
			named = true
			t.Logf("reason %q, sample %q", reason, sample)
		}
	}
	if !named || s.Counts[kmetrics.OK] != 0 {
		t.Errorf("ws:connect = %+v (reasons %v), want every dial failed with a reason naming the 64 KiB handshake limit", s.Counts, reasons)
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes of the reply budget still held after every handshake failed", n)
	}
	t.Logf("%d dials; heap peak %d MiB (bound %d MiB, %d MiB before); %d reply bytes read", accepted.Load(), h.peak.Load()>>20, bound>>20, base>>20, rt.ReplyBytesRead())
}

// A wss target works with the dialer's TLS configuration (the handshake
// reply is bounded on the TLS connection's plaintext), and a certificate
// the configuration does not trust is refused.
func TestWebsocketOverTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused certificate
	srv.StartTLS()
	t.Cleanup(srv.Close)
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	set := parseSet(t, `{"behaviors": {}}`)

	d := koi.NewDialer()
	d.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: url}, Dialer: d})
	tot := newTotals(rt)
	sw := startSwarm(t, rt, 1)
	wiretest.Until(t, 10*time.Second, "the hello event over wss", func() bool { return tot.series(t, "event:hello").Total() == 1 })
	sw.stop(t)

	untrusted := newRuntime(t, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: url}})
	tot = newTotals(untrusted)
	sw = startSwarm(t, untrusted, 1)
	wiretest.Until(t, 10*time.Second, "a refused dial", func() bool { return tot.series(t, "ws:connect").Failures() > 0 })
	sw.stop(t)
	if n := tot.series(t, "ws:connect").Counts[kmetrics.OK]; n != 0 {
		t.Errorf("%d dials accepted an untrusted certificate", n)
	}
}
