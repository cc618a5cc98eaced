package pond

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"
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
	wiretest.Until(t, 10*time.Second, "pond to see the silent connection", func() bool {
		s.freshMu.Lock()
		defer s.freshMu.Unlock()
		return len(s.fresh) == 1
	})
	if err := s.Close(); err != nil {
		t.Fatalf("Close with a silent client connection: %v", err)
	}
}
