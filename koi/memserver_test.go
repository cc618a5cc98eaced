package koi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// memServerEnv, when set in the environment, turns the test binary into a
// bare websocket server (see runMemServer) instead of running tests. The
// idle-koi memory benchmark re-executes the binary this way so that the
// server's memory is not counted as the koi's.
const memServerEnv = "KOI_MEMSERVER"

func TestMain(m *testing.M) {
	if os.Getenv(memServerEnv) == "1" {
		os.Exit(runMemServer())
	}
	if spec := os.Getenv(pondServerEnv); spec != "" {
		os.Exit(runPondServer(spec))
	}
	os.Exit(m.Run())
}

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit and returns
// the resulting soft limit.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// runMemServer is a minimal websocket server on 127.0.0.1: every
// connection gets a {"type":"hello"} frame and is then only read from (so
// pings are answered). It prints its ws:// URL on stdout and exits when
// stdin closes.
func runMemServer() int {
	if _, err := raiseNoFile(); err != nil {
		fmt.Fprintln(os.Stderr, "memserver: rlimit:", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "memserver:", err)
		return 1
	}
	up := websocket.Upgrader{ReadBufferSize: 256, WriteBufferSize: 256}
	hello := []byte(`{"type":"hello"}`)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, hello); err != nil {
			return
		}
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "ws://%s/ws\n", ln.Addr())
	w.Flush()
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "memserver:", err)
		return 1
	}
	return 0
}
