package koi_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// connCounter counts the connections a test server accepted and the most
// it had at once.
type connCounter struct {
	mu            sync.Mutex
	total, active int
	peak          int
}

func (c *connCounter) track(_ net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.total++
		c.active++
		c.peak = max(c.peak, c.active)
	case http.StateClosed, http.StateHijacked:
		c.active--
	}
}

func (c *connCounter) get() (total, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, c.peak
}

func newCountingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *connCounter) {
	t.Helper()
	cc := &connCounter{}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = cc.track
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cc
}

func get(t *testing.T, c *http.Client, ctx context.Context, method, url, body string) (int, string, error) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Sequential requests share one keep-alive connection, and what each sent
// arrives whole (method, path, query, headers, body).
func TestTransportReusesOneConnection(t *testing.T) {
	srv, cc := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Koi"), r.Header.Get("Content-Type"), b)
	})
	c := koi.NewHTTPClient(0, nil)
	for i := range 50 {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/m?i=%d", srv.URL, i), strings.NewReader("a=b"))
		req.Header.Set("X-Koi", "k")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("POST /api/m?i=%d k application/x-www-form-urlencoded a=b", i); string(b) != want {
			t.Fatalf("reply %q, want %q", b, want)
		}
	}
	if total, _ := cc.get(); total != 1 {
		t.Errorf("%d connections for 50 sequential requests, want 1", total)
	}
}

// Stopping a request whose server never answers ends it at once, with the
// context's error, and the connection is not reused.
func TestTransportCancelEndsAHungRequest(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv, _ := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	c := koi.NewHTTPClient(0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, _, err := get(t, c, ctx, http.MethodGet, srv.URL, ""); errc <- err }()
	<-arrived
	at := time.Now()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if took := time.Since(at); took > 250*time.Millisecond {
			t.Errorf("returned %v after cancel, want ≤ 250ms", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a canceled request did not return within 5 s")
	}
}

// A deadline ends a reply that trickles, headers or body, with
// context.DeadlineExceeded.
func TestTransportDeadlineEndsATrickle(t *testing.T) {
	srv, _ := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		for range 1000 {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	c := koi.NewHTTPClient(0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := get(t, c, ctx, http.MethodGet, srv.URL, "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want context.DeadlineExceeded", err)
	}
}

// rawServer answers every connection with script, reading the request
// first; it counts connections.
func rawServer(t *testing.T, script func(c net.Conn, br *bufio.Reader)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
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
			conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				script(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &conns
}

// A server that sends headers without end is cut off at MaxHeaderBytes:
// an error, not a school's worth of memory.
func TestTransportBoundsReplyHeaders(t *testing.T) {
	url, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := []byte("X-Bomb: " + strings.Repeat("b", 1000) + "\r\n")
		for range 10_000 { // 10 MB
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	c := koi.NewHTTPClient(0, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := get(t, c, context.Background(), http.MethodGet, url, "")
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "headers too large") {
		t.Errorf("error %v, want the headers refused as too large", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8*koi.DefaultMaxHeaderBytes {
		t.Errorf("reading the bomb allocated %d bytes, want ≤ %d", grew, 8*koi.DefaultMaxHeaderBytes)
	}
}

// An idle connection the server closed is noticed before it is used: a
// POST after it goes out on a new connection and succeeds.
func TestTransportSkipsAnIdleConnectionTheServerClosed(t *testing.T) {
	closed := make(chan struct{}, 10)
	url, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close() // the client holds it idle
		closed <- struct{}{}
	})
	c := koi.NewHTTPClient(0, nil)
	for i := range 3 {
		code, body, err := get(t, c, context.Background(), http.MethodPost, url, "x=1")
		if err != nil || code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
		<-closed
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (one per request)", n)
	}
}

// MaxConnsPerHost holds the connections to a host at the cap: the
// requests past it wait for one, and all are answered.
func TestTransportMaxConnsPerHost(t *testing.T) {
	srv, cc := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	c := koi.NewHTTPClient(3, nil)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 30 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if code, body, err := get(t, c, ctx, http.MethodGet, srv.URL, ""); err != nil || code != 200 || body != "ok" {
				bad.Add(1)
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of 30 requests failed", bad.Load())
	}
	if total, peak := cc.get(); peak > 3 || total > 3 {
		t.Errorf("server saw %d connections, %d at once; want at most 3", total, peak)
	}
}

// A request waiting for a connection at the cap gives up when its context
// ends, and the cap still holds for the others.
func TestTransportWaitForAConnectionEndsWithTheContext(t *testing.T) {
	release := make(chan struct{})
	srv, _ := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	})
	c := koi.NewHTTPClient(1, nil)
	first := make(chan error, 1)
	go func() { _, _, err := get(t, c, context.Background(), http.MethodGet, srv.URL, ""); first <- err }()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := get(t, c, ctx, http.MethodGet, srv.URL, ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting request: %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first request: %v", err)
	}
	if code, body, err := get(t, c, context.Background(), http.MethodGet, srv.URL, ""); err != nil || code != 200 || body != "ok" {
		t.Errorf("after: %d %q %v", code, body, err)
	}
}

// A gzip-encoded reply is inflated, as net/http's transport does; the
// connection is reused after it.
func TestTransportInflatesGzip(t *testing.T) {
	want := strings.Repeat(`{"ok":true}`, 500)
	srv, cc := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			io.WriteString(w, "no gzip asked")
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, want)
		zw.Close()
	})
	c := koi.NewHTTPClient(0, nil)
	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != want || !resp.Uncompressed || resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("reply %.40q (%d bytes) uncompressed=%v encoding=%q err=%v", b, len(b), resp.Uncompressed, resp.Header.Get("Content-Encoding"), err)
		}
	}
	if total, _ := cc.get(); total != 1 {
		t.Errorf("%d connections for 3 gzip replies, want 1", total)
	}
}

// Redirects are followed (by http.Client over the transport), chunked
// replies and bodies of unknown length work, and interim 1xx replies are
// passed over.
func TestTransportRedirectsChunksAndInterimReplies(t *testing.T) {
	srv, _ := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/old":
			http.Redirect(w, r, "/new", http.StatusFound)
		case "/new":
			io.WriteString(w, "moved "+r.Method)
		case "/chunked":
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(200)
			for _, part := range []string{"a", "b", string(b)} {
				io.WriteString(w, part)
				w.(http.Flusher).Flush()
			}
		case "/early":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "final")
		}
	})
	c := koi.NewHTTPClient(0, nil)
	if code, body, err := get(t, c, context.Background(), http.MethodGet, srv.URL+"/old", ""); err != nil || code != 200 || body != "moved GET" {
		t.Errorf("redirect: %d %q %v", code, body, err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/chunked", io.MultiReader(strings.NewReader("c"), strings.NewReader("d")))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "abcd" || len(resp.TransferEncoding) == 0 {
		t.Errorf("chunked: %q %v", b, resp.TransferEncoding)
	}
	if code, body, err := get(t, c, context.Background(), http.MethodGet, srv.URL+"/early", ""); err != nil || code != 200 || body != "final" {
		t.Errorf("early hints: %d %q %v", code, body, err)
	}
}

// A body closed before its end closes the connection (its rest would be
// read as the next reply); the next request gets a fresh one and the
// right reply.
func TestTransportBodyClosedEarlyIsNotReused(t *testing.T) {
	srv, cc := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path+strings.Repeat(".", 100_000))
	})
	c := koi.NewHTTPClient(0, nil)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/one", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	io.ReadFull(resp.Body, buf)
	resp.Body.Close()
	_, body, err := get(t, c, context.Background(), http.MethodGet, srv.URL+"/two", "")
	if err != nil || !strings.HasPrefix(body, "/two.") {
		t.Errorf("second reply %.20q %v", body, err)
	}
	if total, _ := cc.get(); total != 2 {
		t.Errorf("%d connections, want 2", total)
	}
}

// https works over the transport, with the client's TLS configuration.
func TestTransportTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	}))
	t.Cleanup(srv.Close)
	tr := koi.NewTransport(0, nil)
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	c := &http.Client{Transport: tr}
	for range 2 {
		if code, body, err := get(t, c, context.Background(), http.MethodGet, srv.URL, ""); err != nil || code != 200 || body != "secure" {
			t.Fatalf("https: %d %q %v", code, body, err)
		}
	}
	if _, _, err := get(t, koi.NewHTTPClient(0, nil), context.Background(), http.MethodGet, srv.URL, ""); err == nil {
		t.Error("an untrusted certificate was accepted")
	}
}

// Headers that would split the request are refused, not sent.
func TestTransportRefusesBadHeaders(t *testing.T) {
	srv, cc := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	c := koi.NewHTTPClient(0, nil)
	for _, h := range [][2]string{{"X-Ok", "a\r\nX-Injected: 1"}, {"Bad Name", "v"}, {"X-Nul", "a\x00b"}} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header[h[0]] = []string{h[1]}
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("header %q: %q was sent", h[0], h[1])
		}
	}
	if total, _ := cc.get(); total != 0 {
		t.Errorf("%d connections for refused requests, want 0", total)
	}
}

// Many goroutines share the transport (run with -race).
func TestTransportConcurrentUse(t *testing.T) {
	srv, _ := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(bytes.ToUpper(b))
	})
	c := koi.NewHTTPClient(4, nil)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				msg := fmt.Sprintf("g%di%d", g, i)
				if _, body, err := get(t, c, context.Background(), http.MethodPost, srv.URL, msg); err != nil || body != strings.ToUpper(msg) {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of 800 requests got a wrong reply or failed", bad.Load())
	}
}

// A server that sends more than its Content-Length says: the bytes past
// the reply are not read as the next reply; the connection is dropped and
// the next request gets a fresh one and its own reply.
func TestTransportDropsAConnectionWithBytesPastTheReply(t *testing.T) {
	url, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlies")
		}
	})
	c := koi.NewHTTPClient(0, nil)
	for i := range 3 {
		if code, body, err := get(t, c, context.Background(), http.MethodGet, url, ""); err != nil || code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3: a connection with bytes past its reply was reused", n)
	}
}

// A gzip bomb (a small reply that inflates past MaxResponseBody) is
// refused as too large while it inflates: the cap applies to what the koi
// would hold, not to the bytes on the wire.
func TestGzipBombIsCappedAsItInflates(t *testing.T) {
	var zipped bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zipped, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 4 * koi.MaxResponseBody >> 20 { // 32 MiB inflated
		zw.Write(zeros)
	}
	zw.Close()
	srv, _ := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(zipped.Bytes())
	})
	set := parseSet(t, `{"behaviors": {"b": {"steps": [{"request": {"type": "api", "method": "bomb"}}]}}}`)
	rt := newRuntime(t, koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api"})
	k := rt.New(behaviors.Identity{Index: 1}, 1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := k.RunSequence(context.Background(), set.Behavior("b").Sequence, nil)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "reply larger than") {
		t.Errorf("error %v, want the reply refused as larger than %d bytes", err, koi.MaxResponseBody)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*koi.MaxResponseBody { // growing a buffer to the cap by doubling allocates about 3×; reading all would take 8×
		t.Errorf("the bomb allocated %d bytes, want ≤ %d (the cap, not the 32 MiB it inflates to)", grew, 4*koi.MaxResponseBody)
	}
	t.Logf("%d bytes on the wire; %v", zipped.Len(), err)
}
