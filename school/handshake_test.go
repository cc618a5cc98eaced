package school_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// endlessHandshakeServer answers every websocket handshake with a 101
// whose one header line never ends. It returns its address and the count
// of connections it has accepted.
func endlessHandshakeServer(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for { // the request's headers
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if l == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Junk: "))
				chunk := bytes.Repeat([]byte("a"), 64<<10)
				for {
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// A run whose target answers every websocket handshake with a header
// line that never ends keeps the school under its memory ceiling while
// its koi dial, fail and dial again. (Unbounded, 200 koi took a school
// with a ceiling 256 MiB above its baseline to 3.7 times the ceiling.)
func TestEndlessHandshakeRepliesStayUnderTheCeiling(t *testing.T) {
	const n = 200
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	addr, accepted := endlessHandshakeServer(t)
	h := addSet(t, k, `{"behaviors": {}}`)
	k.set(func(k *fakeKeeper) {
		k.leaseMS = (10 * time.Minute).Milliseconds() // about memory, not leases (see openCalmSchool)
		k.assignments["*"] = []wire.Assignment{{Run: "hdr", From: 0, To: n, Spec: wire.RunSpec{Name: "hdr", BehaviorSet: h,
			WebsocketURL: "ws://" + addr + "/ws", Token: "t{{.Index}}", TimeScale: 1}}}
	})
	runtime.GC()
	limit := goMemory() + 256<<20
	s := openSchool(t, url, school.Config{ID: "s1", MemoryLimit: limit, PressureHold: time.Hour})
	var peak int64
	wiretest.WaitFor(t, 60*time.Second, fmt.Sprintf("every koi to dial again (%d dials)", 2*n), func() error {
		peak = max(peak, goMemory())
		if peak > limit {
			poll, _ := k.lastPoll("s1")
			t.Fatalf("Go memory reached %s, over the %s ceiling, with %d handshakes (school: %s)",
				school.FormatBytes(peak), school.FormatBytes(limit), accepted.Load(), pressureOf(poll, s))
		}
		if got := accepted.Load(); got < 2*n {
			return fmt.Errorf("%d dials; peak Go memory %s", got, school.FormatBytes(peak))
		}
		return nil
	})
	t.Logf("ceiling %s; peak Go memory %s over %d handshakes", school.FormatBytes(limit), school.FormatBytes(peak), accepted.Load())
}
