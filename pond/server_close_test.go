package pond

import (
	"context"
	"net"
	"testing"
	"time"
)

// A client's spare connection that never sends a request (HTTP clients
// dial spares when requests race) does not hold Close up: without care,
// http.Server.Shutdown counts it busy for five seconds, past pond's
// shutdown timeout here.
func TestCloseIgnoresSilentConnections(t *testing.T) {
	s, err := Open(context.Background(), Config{Users: 10, Channels: 2, ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The server sees the connection before Close begins.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.freshMu.Lock()
		n := len(s.fresh)
		s.freshMu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pond never saw the silent connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close with a silent client connection: %v", err)
	}
}
