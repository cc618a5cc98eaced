package koi

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/net/http/httpguts"
)

// Transport is the koi's HTTP/1.1 client transport. Each exchange runs on
// the goroutine that asked for it: the request is written and its reply
// read there, over a pooled keep-alive connection, with no reader and
// writer goroutines per connection and no hand-offs between them (what
// net/http's Transport spends most of a small request's CPU on). A context
// ends an exchange at once, whatever it is waiting for, by expiring the
// connection's deadline. Replies may be gzip-encoded, as net/http asks for
// by default; redirects are http.Client's to follow.
//
// Everything a peer sends is bounded: response headers by MaxHeaderBytes,
// bodies by whoever reads them, and time by the request's context.
type Transport struct {
	// Dial opens a connection (default: a net.Dialer with a 10 s timeout).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSClientConfig is used for https (default: the system roots).
	TLSClientConfig *tls.Config
	// MaxConnsPerHost caps the connections open to one host, idle ones
	// included; a request waits for one to come free (0: no cap).
	MaxConnsPerHost int
	// MaxIdlePerHost and MaxIdle bound the idle connections kept.
	MaxIdlePerHost, MaxIdle int
	// IdleTimeout closes a connection idle that long (servers close
	// theirs after 60 s or more; reusing one they are closing fails).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a reply's status line and headers.
	MaxHeaderBytes int64

	mu    sync.Mutex
	hosts map[string]*hostConns
	idle  int // idle connections, all hosts
}

// Defaults for NewTransport.
const (
	DefaultMaxIdlePerHost = 128 // a boot burst must not leave thousands of idle connections (4 KiB each)
	DefaultMaxIdle        = 1024
	DefaultIdleTimeout    = 50 * time.Second
	DefaultMaxHeaderBytes = 64 << 10
)

// NewTransport returns a Transport with the defaults above, dialing with
// dial (nil: a plain net.Dialer).
func NewTransport(maxConnsPerHost int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Transport {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return &Transport{Dial: dial, MaxConnsPerHost: maxConnsPerHost, MaxIdlePerHost: DefaultMaxIdlePerHost,
		MaxIdle: DefaultMaxIdle, IdleTimeout: DefaultIdleTimeout, MaxHeaderBytes: DefaultMaxHeaderBytes}
}

// hostConns is one host's connections: idle ones newest last, how many are
// open or being dialed, and the requests waiting for one (a nil handed to
// a waiter is leave to dial, already counted in open).
type hostConns struct {
	idle    []*persistConn
	open    int
	waiters []chan *persistConn
}

// persistConn is one keep-alive connection.
type persistConn struct {
	t      *Transport
	key    string
	conn   net.Conn
	lr     *limitedReader // under br: bounds the headers, counts what a reply read
	br     *bufio.Reader  // from bufReaders during an exchange only (nil while idle)
	idleAt time.Time
	reused bool
}

// limitedReader reads at most n bytes before failing with errHeaderTooLarge
// (n < 0: no limit) and counts what it read.
type limitedReader struct {
	r    io.Reader
	n    int64
	read int64
}

var errHeaderTooLarge = errors.New("reply headers too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.n > 0 {
		l.n -= int64(n)
	}
	return n, err
}

// errServerClosedIdle: a reused connection ended before any of the reply
// came back; the server closed it while it sat idle.
var errServerClosedIdle = errors.New("server closed an idle connection")

// Buffers are taken for an exchange and given back after it, so an idle
// connection holds none. A reader of 16 KiB takes a typical API reply in
// one read.
var (
	bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
	bufReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	if err != nil && req.Body != nil {
		req.Body.Close()
	}
	return resp, err
}

func (t *Transport) roundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		return nil, errors.New("koi transport: request has no URL")
	}
	scheme := req.URL.Scheme
	if scheme != "http" && scheme != "https" {
		return nil, fmt.Errorf("unsupported protocol scheme %q", scheme)
	}
	if req.URL.Host == "" {
		return nil, errors.New("koi transport: URL has no host")
	}
	for name, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("invalid header field name %q", name)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("invalid header field value for %q", name)
			}
		}
	}
	addr := hostPort(req.URL)
	key := scheme + "://" + addr
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pc, err := t.getConn(ctx, key, scheme, addr)
		if err != nil {
			return nil, err
		}
		resp, err := pc.exchange(ctx, req)
		if err == nil {
			return resp, nil
		}
		if attempt > 0 || !pc.reused || !errors.Is(err, errServerClosedIdle) || !replayable(req) {
			return nil, err
		}
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// replayable says whether a request may be sent again after a reused
// connection failed it, as net/http decides: idempotent methods, or a
// request that says it is idempotent, whose body can be had again.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

// hostPort is u's host with the scheme's port when it names none.
func hostPort(u *url.URL) string {
	if port := u.Port(); port != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// getConn returns an idle connection to key that is still open, else a
// new one, waiting while the host is at MaxConnsPerHost.
func (t *Transport) getConn(ctx context.Context, key, scheme, addr string) (*persistConn, error) {
	t.mu.Lock()
	h := t.host(key)
	for len(h.idle) > 0 {
		pc := h.idle[len(h.idle)-1]
		h.idle[len(h.idle)-1] = nil
		h.idle = h.idle[:len(h.idle)-1]
		t.idle--
		t.mu.Unlock()
		if time.Since(pc.idleAt) < t.IdleTimeout && pc.usable() {
			pc.reused = true
			return pc, nil
		}
		t.closeConn(pc)
		t.mu.Lock()
		h = t.host(key) // closing the last connection forgot the host
	}
	if t.MaxConnsPerHost <= 0 || h.open < t.MaxConnsPerHost {
		h.open++
		t.mu.Unlock()
		return t.dial(ctx, key, scheme, addr)
	}
	ch := make(chan *persistConn, 1)
	h.waiters = append(h.waiters, ch)
	t.mu.Unlock()
	select {
	case pc := <-ch:
		if pc == nil {
			return t.dial(ctx, key, scheme, addr)
		}
		pc.reused = true
		return pc, nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	for i, w := range h.waiters {
		if w == ch {
			h.waiters = append(h.waiters[:i], h.waiters[i+1:]...)
			t.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	t.mu.Unlock()
	// Handed something just as the context ended: pass it on.
	if pc := <-ch; pc != nil {
		t.putIdle(pc)
	} else {
		t.forget(key)
	}
	return nil, ctx.Err()
}

// host returns key's connections, made on first use; t.mu is held.
func (t *Transport) host(key string) *hostConns {
	if t.hosts == nil {
		t.hosts = make(map[string]*hostConns)
	}
	h := t.hosts[key]
	if h == nil {
		h = &hostConns{}
		t.hosts[key] = h
	}
	return h
}

// dial opens a connection counted in its host's open already.
func (t *Transport) dial(ctx context.Context, key, scheme, addr string) (*persistConn, error) {
	conn, err := t.Dial(ctx, "tcp", addr)
	if err == nil && scheme == "https" {
		var tc *tls.Conn
		if tc, err = tlsClient(ctx, conn, t.TLSClientConfig, addr); err != nil {
			conn.Close()
		} else {
			conn = tc
		}
	}
	if err != nil {
		t.forget(key)
		return nil, err
	}
	pc := &persistConn{t: t, key: key, conn: conn}
	pc.lr = &limitedReader{r: conn, n: -1}
	return pc, nil
}

// forget drops one open connection of key from the count, waking a waiter
// to dial in its place.
func (t *Transport) forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.hosts[key]
	if len(h.waiters) > 0 {
		w := h.waiters[0]
		h.waiters = h.waiters[1:]
		w <- nil // leave to dial: open stays counted for it
		return
	}
	h.open--
	if h.open == 0 && len(h.idle) == 0 {
		delete(t.hosts, key)
	}
}

func (t *Transport) closeConn(pc *persistConn) {
	pc.dropReader()
	pc.conn.Close()
	t.forget(pc.key)
}

// putIdle gives pc to a waiting request, else keeps it idle within the
// bounds, closing what is past them or idle too long.
func (t *Transport) putIdle(pc *persistConn) {
	now := time.Now()
	var stale []*persistConn
	t.mu.Lock()
	h := t.hosts[pc.key]
	if len(h.waiters) > 0 {
		w := h.waiters[0]
		h.waiters = h.waiters[1:]
		t.mu.Unlock()
		w <- pc
		return
	}
	for len(h.idle) > 0 && now.Sub(h.idle[0].idleAt) >= t.IdleTimeout {
		stale = append(stale, h.idle[0])
		h.idle = h.idle[1:]
		t.idle--
	}
	keep := len(h.idle) < t.MaxIdlePerHost && t.idle < t.MaxIdle
	if keep {
		pc.idleAt = now
		h.idle = append(h.idle, pc)
		t.idle++
	}
	t.mu.Unlock()
	if !keep {
		stale = append(stale, pc)
	}
	for _, s := range stale {
		t.closeConn(s)
	}
}

// CloseIdleConnections closes every idle connection.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*persistConn
	for _, h := range t.hosts {
		all = append(all, h.idle...)
		t.idle -= len(h.idle)
		h.idle = nil
	}
	t.mu.Unlock()
	for _, pc := range all {
		t.closeConn(pc)
	}
}

// usable says whether an idle connection can carry a request: nothing is
// waiting to be read on it (a server that closed it, or sent something
// unasked, has).
func (pc *persistConn) usable() bool { return connQuiet(pc.conn) }

// dropReader gives pc's reader back; it says whether the reader held
// nothing more (bytes after a reply: the connection cannot be trusted).
func (pc *persistConn) dropReader() bool {
	if pc.br == nil {
		return true
	}
	clean := pc.br.Buffered() == 0
	pc.br.Reset(nil)
	bufReaders.Put(pc.br)
	pc.br = nil
	return clean
}

// aLongTimeAgo is a deadline that has passed: set on a connection, it
// ends whatever read or write is under way.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes req on pc and reads its reply's headers; the body is
// read by the caller, and pc goes back to the pool when it has been read
// to the end (or is closed when it is not).
func (pc *persistConn) exchange(ctx context.Context, req *http.Request) (*http.Response, error) {
	if dl, ok := ctx.Deadline(); ok {
		pc.conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { pc.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.t.closeConn(pc)
		return nil, ctxError(ctx, err)
	}
	gz := req.Method != http.MethodHead && req.Header.Get("Accept-Encoding") == "" && req.Header.Get("Range") == ""
	if err := pc.writeRequest(req, gz); err != nil {
		if pc.reused {
			err = fmt.Errorf("%w: %w", errServerClosedIdle, err)
		}
		return fail(err)
	}
	pc.lr.n, pc.lr.read = pc.t.MaxHeaderBytes, 0
	pc.br = bufReaders.Get().(*bufio.Reader)
	pc.br.Reset(pc.lr)
	var resp *http.Response
	var err error
	for informational := 0; ; informational++ {
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols || informational == 8 {
			break
		}
	}
	if err != nil {
		if pc.reused && pc.lr.read == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)) {
			err = fmt.Errorf("%w: %w", errServerClosedIdle, err)
		}
		return fail(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body.Close()
		return fail(fmt.Errorf("HTTP %d: an interim reply where a final one was due", resp.StatusCode))
	}
	pc.lr.n = -1
	b := &replyBody{pc: pc, ctx: ctx, r: resp.Body, stop: stop, keep: !resp.Close && !req.Close}
	resp.Body = b
	if gz && resp.Header.Get("Content-Encoding") == "gzip" && req.Method != http.MethodHead && resp.ContentLength != 0 {
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Uncompressed = true
		resp.Body = &gzipBody{body: b}
	}
	return resp, nil
}

// requestHeadersWritten are the headers writeRequest writes itself.
var requestHeadersWritten = map[string]bool{"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Connection": true}

// writeRequest writes req as HTTP/1.1: request line, headers, body.
func (pc *persistConn) writeRequest(req *http.Request, gz bool) error {
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(pc.conn)
	defer func() {
		bw.Reset(nil)
		bufWriters.Put(bw)
	}()
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("invalid Host %q", host)
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if _, ok := req.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	}
	if req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	chunked := false
	switch {
	case body != nil && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n")
	case body != nil:
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	if err := req.Header.WriteSubset(bw, requestHeadersWritten); err != nil {
		return err
	}
	if gz {
		bw.WriteString("Accept-Encoding: gzip\r\n")
	}
	bw.WriteString("\r\n")
	if body != nil {
		defer body.Close()
		if chunked {
			cw := httputil.NewChunkedWriter(bw)
			if _, err := io.Copy(cw, body); err != nil {
				return err
			}
			if err := cw.Close(); err != nil {
				return err
			}
			bw.WriteString("\r\n")
		} else {
			n, err := io.Copy(bw, io.LimitReader(body, req.ContentLength))
			if err != nil {
				return err
			}
			if n != req.ContentLength {
				return fmt.Errorf("request body: %d bytes, Content-Length says %d", n, req.ContentLength)
			}
		}
	}
	return bw.Flush()
}

// replyBody is a reply's body on its connection: read to the end, the
// connection goes back to the pool; closed before that, it is closed.
type replyBody struct {
	pc   *persistConn
	ctx  context.Context
	r    io.ReadCloser
	stop func() bool
	keep bool
	done bool
}

func (b *replyBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.finish(b.keep)
	case err != nil:
		b.finish(false)
		err = ctxError(b.ctx, err)
	}
	return n, err
}

func (b *replyBody) Close() error {
	b.finish(false)
	return nil
}

// finish ends the exchange once: the connection is reused when keep and
// the context did not end it, else closed.
func (b *replyBody) finish(keep bool) {
	if b.done {
		return
	}
	b.done = true
	if b.stop() && b.pc.dropReader() && keep {
		b.pc.conn.SetDeadline(time.Time{})
		b.pc.t.putIdle(b.pc)
		return
	}
	b.pc.t.closeConn(b.pc)
}

// gzipBody inflates a gzip-encoded reply as it is read.
type gzipBody struct {
	body *replyBody
	zr   *gzip.Reader
	err  error
}

var gzipReaders sync.Pool

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.zr == nil {
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(g.body)
		} else {
			err = zr.Reset(g.body)
		}
		if err != nil {
			g.err = err
			return 0, err
		}
		g.zr = zr
	}
	n, err := g.zr.Read(p)
	if err == io.EOF {
		// The stream ended: read the body's end too (a chunked body's last
		// chunk), so that the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(g.body, 4<<10))
		g.body.finish(false) // no-op when the body ended; else bytes follow the stream: do not reuse
	}
	if err != nil {
		g.err = err
	}
	return n, err
}

func (g *gzipBody) Close() error {
	if g.zr != nil {
		g.zr.Close()
		gzipReaders.Put(g.zr)
		g.zr = nil
	}
	if g.err == nil {
		g.err = errors.New("read on a closed body")
	}
	return g.body.Close()
}

// ctxError is err, or the context's error when the context ended the
// exchange: canceled, or past its deadline (which the connection's own
// deadline, set from it, can notice a moment before the context does).
func ctxError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// isReset says whether err is a connection reset by the peer.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
