package school_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// connTarget is an API target that counts the connections open to it and
// the calls it has answered.
type connTarget struct {
	srv   *httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	open  map[net.Conn]bool
}

func newConnTarget(t testing.TB) *connTarget {
	t.Helper()
	c := &connTarget{open: map[net.Conn]bool{}}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // calls overlap: the koi need several connections
		c.calls.Add(1)
		io.WriteString(w, `{"ok":true}`)
	}))
	c.srv.Config.ConnState = func(nc net.Conn, s http.ConnState) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch s {
		case http.StateNew:
			c.open[nc] = true
		case http.StateClosed, http.StateHijacked:
			delete(c.open, nc)
		}
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *connTarget) conns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}

// connsClosed waits until the target has no connection open; the
// school's pool keeps idle ones until something asks for that host
// again, so without a close they stay open as long as the school runs.
func (c *connTarget) connsClosed(t *testing.T, what string) {
	t.Helper()
	wiretest.WaitFor(t, 30*time.Second, what, func() error {
		if n := c.conns(); n > 0 {
			return fmt.Errorf("%d connections still open", n)
		}
		return nil
	})
}

// Once a run's koi have stopped, the school leaves no connection open to
// its target: not after the run's own stop (while another run goes on,
// and keeps working), nor after a global stop. (The pool used to keep
// their idle keep-alive connections, up to 128 a host.)
func TestStoppedRunsLeaveNoConnectionsOpen(t *testing.T) {
	const n = 16
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	a, b := newConnTarget(t), newConnTarget(t)
	h := addSet(t, k, `{"behaviors": {"a": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`)
	assign := func(run string, target *connTarget) wire.Assignment {
		return wire.Assignment{Run: run, From: 0, To: n, Spec: wire.RunSpec{Name: run, BehaviorSet: h,
			APIBase: target.srv.URL + "/api", Token: "t{{.Index}}", TimeScale: 60}}
	}
	k.set(func(k *fakeKeeper) { k.assignments["*"] = []wire.Assignment{assign("a", a), assign("b", b)} })
	s := openSchool(t, url, school.Config{ID: "s1"})
	wiretest.Until(t, 30*time.Second, "both runs calling their targets", func() bool {
		return a.calls.Load() >= 2*n && b.calls.Load() >= 2*n && a.conns() > 0 && b.conns() > 0
	})

	// Run a stops; run b keeps calling its target.
	k.publish(wire.Control{Run: "a", Epoch: 2, State: wire.Stopped, By: "test", At: time.Now()})
	a.connsClosed(t, "run a's connections closed after its stop")
	after := b.calls.Load()
	wiretest.Until(t, 30*time.Second, "run b still calling", func() bool { return b.calls.Load() >= after+2*n })

	// A global stop.
	k.publish(wire.Control{Epoch: 2, State: wire.Stopped, By: "test", At: time.Now()})
	wiretest.Until(t, 30*time.Second, "every koi stopped", func() bool { return s.Status().KoiRunning == 0 })
	b.connsClosed(t, "run b's connections closed after the global stop")
	if n := a.conns(); n != 0 {
		t.Errorf("%d connections open to run a's target", n)
	}
}
