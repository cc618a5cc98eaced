package wiretest

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// EndlessHandshake is a hostile websocket target on loopback: it answers
// every handshake with a 101 whose one header line never ends (after
// "X-Junk: " it writes 'a' until the client goes away). It returns its
// address and the count of connections it has accepted; it closes with
// the test.
func EndlessHandshake(tb testing.TB) (string, *atomic.Int64) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
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
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a client that stopped reading without closing
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String(), &accepted
}
