package api

import (
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/labstack/echo/v4"
)

// The HTTP edge: every request passes edgeGuard before a handler (or the
// token check) runs. What it enforces, in order:
//
//  1. A keeper without API tokens answers only to its loopback names: the
//     Host header must be localhost or a loopback address (any port:
//     ssh -L and port-forwards change it, and DNS rebinding shows up in
//     the name, not the port), else 403. A page on evil.example that
//     re-points its name at 127.0.0.1 still sends Host: evil.example.
//  2. Cross-origin browser requests are refused (403): writes by
//     net/http's CrossOriginProtection (Sec-Fetch-Site, else Origin
//     against Host), with or without tokens; on a keeper without tokens,
//     also any request whose Origin is present and not the request's own
//     origin. With tokens, a cross-site page cannot send the bearer token
//     at all (a form cannot set the header; a fetch that sets it is
//     preflighted and the keeper answers no CORS), so the write check
//     there is defense in depth.
//  3. Writes under /api/v1 (POST, PUT, PATCH, DELETE) must say
//     Content-Type: application/json, else 415: a JSON type cannot be
//     sent cross-site without a CORS preflight, and no HTML form sends
//     it. The signed trigger call (POST /api/v1/triggers/NAME) is exempt:
//     its HMAC over the body is its credential, and deploy pipelines
//     calling it with curl -d send form types. An export upload (POST
//     /api/v1/behavior-sets/generate/upload) is the file itself and says
//     application/octet-stream, which is not a CORS-safelisted type
//     either: a cross-site page cannot send it without a preflight.
//  4. Bodies are bounded while they are read, per route (bodyLimit): a
//     declared Content-Length over the limit is refused before a byte is
//     read, and the body reader stops at the limit. They are bounded in
//     time too (bodyClock): after Config.BodyTimeout, a body must keep
//     arriving at minBodyRate on average, else it is cut (408) and its
//     connection closed; a body left unread is waited for no longer. So
//     a caller that declares a body and sends it slowly, or never,
//     holds its goroutine (and any upload slot) for a bounded time: on
//     the unauthenticated trigger route too. At most uploadSlots uploads
//     are read and parsed at once; more wait their turn, at most
//     Config.UploadWait, then are answered 503 with Retry-After.

// Body limits per route. Uploads carry whole behavior or formation files
// (JSON-encoded in the request); everything else is a small command.
const (
	// MaxUploadBody bounds a behavior-set or formation upload request.
	MaxUploadBody = behaviors.MaxFileSize
	// MaxCommandBody bounds every other API request body.
	MaxCommandBody = 1 << 20
	// uploadSlots is how many uploads (up to MaxUploadBody each, and the
	// copies parsing makes) the keeper holds at once.
	uploadSlots = 2
	// minBodyRate is the slowest a request body may arrive, on average
	// after Config.BodyTimeout, in bytes a second: a 16 MiB upload gets
	// BodyTimeout plus 4 min 16 s.
	minBodyRate = 64 << 10
)

// maxQuote is how many bytes of a caller's input an error message may
// quote; maxErrorLine bounds one line of an error message (a quote plus
// the words around it) and maxErrorLines their number.
const (
	maxQuote      = 200
	maxErrorLine  = 320
	maxErrorLines = 50
)

// triggerCallRoute is the route of signed trigger calls.
const triggerCallRoute = "/api/v1/triggers/:name"

// bodyLimit returns the largest body the route may carry.
func bodyLimit(method, route string) int64 {
	switch {
	case method == http.MethodPost && (route == "/api/v1/behavior-sets" || route == "/api/v1/formations"):
		return MaxUploadBody
	case method == http.MethodPost && route == triggerCallRoute:
		return keeper.MaxTriggerBody
	case method == http.MethodPost && route == exportUploadRoute:
		return MaxExportUpload
	}
	return MaxCommandBody
}

// isWrite reports whether a method changes state.
func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// edgeGuard returns the middleware applying the edge rules above to every
// request.
func (s *server) edgeGuard() echo.MiddlewareFunc {
	csrf := http.NewCrossOriginProtection()
	uploads := make(chan struct{}, uploadSlots)
	if u, err := url.Parse(s.cfg.PublicURL); err == nil && u.Host != "" {
		// Pages served under the public name are the keeper's own, even
		// behind a proxy that rewrites Host.
		_ = csrf.AddTrustedOrigin(u.Scheme + "://" + u.Host)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			return s.guardRequest(c, csrf, uploads, next)
		}
	}
}

// guardRequest checks one request and passes it on.
func (s *server) guardRequest(c echo.Context, csrf *http.CrossOriginProtection, uploads chan struct{}, next echo.HandlerFunc) error {
	r := c.Request()
	route := c.Path()
	if !s.k.AuthEnabled() {
		if err := s.checkLoopbackHost(r.Host); err != nil {
			return err
		}
		if err := checkSameOrigin(r); err != nil {
			return err
		}
	}
	if isWrite(r.Method) {
		if err := csrf.Check(r); err != nil {
			return &keeper.Error{Code: keeper.CodeForbidden, Message: fmt.Sprintf("cross-origin write refused (%v): the keeper's API takes writes only from its own pages and from non-browser clients", err)}
		}
		if r.Method == http.MethodPost && route == exportUploadRoute {
			if err := checkUploadType(r.Header.Get("Content-Type")); err != nil {
				return err
			}
		} else if strings.HasPrefix(r.URL.Path, "/api/") && !(r.Method == http.MethodPost && route == triggerCallRoute) {
			if err := checkJSONType(r.Header.Get("Content-Type")); err != nil {
				return err
			}
		}
	}
	limit := bodyLimit(r.Method, route)
	if r.ContentLength > limit {
		// Refused before a byte is read; net/http closes the
		// connection instead of draining a large unread body.
		return &keeper.Error{Code: keeper.CodeTooLarge, Message: fmt.Sprintf("request body of %d bytes is over the %d byte limit of %s %s%s", r.ContentLength, limit, r.Method, route, tooLargeHint(route))}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return next(c)
	}
	body := newBodyClock(c.Response(), r.Body, s.cfg.BodyTimeout)
	r.Body = http.MaxBytesReader(c.Response().Writer, body, limit)
	if limit > MaxCommandBody {
		wait := time.NewTimer(s.cfg.UploadWait)
		defer wait.Stop()
		select {
		case uploads <- struct{}{}:
			defer func() { <-uploads }()
			body.restart() // its time runs from when it can be read
		case <-wait.C:
			body.abandon()
			retry := max(1, int(math.Ceil(s.cfg.UploadWait.Seconds())))
			c.Response().Header().Set("Retry-After", strconv.Itoa(retry))
			return &keeper.Error{Code: keeper.CodeUnavailable, Message: fmt.Sprintf("busy: %d uploads are being read and parsed, the most the keeper takes at once, and this one waited %v for its turn; retry in %d s", uploadSlots, s.cfg.UploadWait, retry)}
		case <-r.Context().Done():
			body.abandon()
			return &keeper.Error{Code: keeper.CodeUnavailable, Message: "the request ended while waiting for an upload slot", Err: r.Context().Err()}
		}
	}
	return next(c)
}

// bodyClock bounds the time a request body takes to arrive: the next
// byte is due timeout plus minBodyRate's time for the bytes so far after
// the clock started, so a body that stalls, or trickles, is cut within
// timeout of falling behind. It sets the connection's read deadline
// (http.ResponseController) before each read and clears it when the
// body ends, so nothing later on the connection inherits it: net/http's
// background read once the body is done would otherwise cancel the
// request's context at the deadline. A body the handler leaves unread is
// drained by net/http under the last deadline set.
type bodyClock struct {
	rc      *http.ResponseController
	body    io.ReadCloser
	timeout time.Duration
	start   time.Time
	n       int64
}

func newBodyClock(w http.ResponseWriter, body io.ReadCloser, timeout time.Duration) *bodyClock {
	b := &bodyClock{rc: http.NewResponseController(w), body: body, timeout: timeout}
	b.restart()
	return b
}

// restart starts the clock now (and sets the deadline for the first
// byte, which also bounds net/http's drain of an unread body).
func (b *bodyClock) restart() {
	b.start = time.Now()
	b.setDeadline(b.due())
}

// abandon gives up on the body: net/http's drain of it after the answer
// fails at once and the connection closes, instead of waiting for a
// caller that is slow on purpose.
func (b *bodyClock) abandon() { b.setDeadline(time.Now()) }

// due is when the next byte must have arrived.
func (b *bodyClock) due() time.Time {
	return b.start.Add(b.timeout + time.Duration((b.n+1)*int64(time.Second)/minBodyRate))
}

func (b *bodyClock) setDeadline(t time.Time) {
	// A writer without deadlines (a test's recorder) reads without them.
	_ = b.rc.SetReadDeadline(t)
}

// Read reads from the body under its deadline.
func (b *bodyClock) Read(p []byte) (int, error) {
	due := b.due()
	b.setDeadline(due)
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, &keeper.Error{Code: keeper.CodeTimeout, Err: err, Message: fmt.Sprintf(
			"the request body arrived too slowly: %d bytes in %v; after %v a body must keep coming at %d KiB/s at least",
			b.n, time.Since(b.start).Round(time.Millisecond), b.timeout, minBodyRate>>10)}
	case err != nil:
		b.setDeadline(time.Time{}) // the body ended (or failed): the connection is no longer the body's
	}
	return n, err
}

// Close closes the body.
func (b *bodyClock) Close() error { return b.body.Close() }

// bodyError returns the API error a body read failed with (too slow,
// bodyClock), or nil when it failed otherwise.
func bodyError(err error) *keeper.Error {
	var e *keeper.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// checkJSONType accepts application/json with any parameters (charset).
func checkJSONType(ct string) *keeper.Error {
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		return nil
	}
	got := "none"
	if ct != "" {
		got = quoteInput(ct)
	}
	return &keeper.Error{Code: keeper.CodeUnsupportedMedia, Message: fmt.Sprintf("API writes take Content-Type: application/json (got %s)", got)}
}

// checkLoopbackHost refuses a Host header that is not a loopback name or
// address (or the host of Config.PublicURL): a keeper without tokens must
// not answer a page whose name was re-pointed at 127.0.0.1.
func (s *server) checkLoopbackHost(hostport string) *keeper.Error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || isLoopback(host) {
		return nil
	}
	if s.cfg.PublicURL != "" {
		if u, err := url.Parse(s.cfg.PublicURL); err == nil && strings.EqualFold(u.Hostname(), host) {
			return nil
		}
	}
	return &keeper.Error{Code: keeper.CodeForbidden, Message: fmt.Sprintf("Host %s is not this keeper's name: a keeper without API tokens answers only to localhost, 127.0.0.1 or [::1] (a guard against DNS rebinding); give it --tokens to serve other names", quoteInput(hostport))}
}

// checkSameOrigin refuses a request whose Origin header is present and is
// not the origin the request was sent to (scheme aside: a TLS proxy may
// sit in front).
func checkSameOrigin(r *http.Request) *keeper.Error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	if u, err := url.Parse(origin); err == nil && (u.Scheme == "http" || u.Scheme == "https") &&
		strings.EqualFold(withPort(u.Host, u.Scheme), withPort(r.Host, u.Scheme)) {
		return nil
	}
	return &keeper.Error{Code: keeper.CodeForbidden, Message: fmt.Sprintf("Origin %s is not this keeper's own origin: a keeper without API tokens answers only its own pages", quoteInput(origin))}
}

// withPort adds the scheme's default port to a host without one.
func withPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), "80")
}

// readBody reads a request body (already bounded by edgeGuard) into one
// slice. It grows in chunks instead of doubling one buffer, so refusing a
// body at the limit costs the limit, not three times it, and memory grows
// only as bytes arrive (a Content-Length alone reserves nothing).
func readBody(r io.Reader) ([]byte, error) {
	var chunks [][]byte
	total, next := 0, 32<<10
	for {
		c := make([]byte, next)
		n, err := io.ReadFull(r, c)
		if n > 0 {
			chunks = append(chunks, c[:n])
			total += n
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		next = min(2*next, 1<<20)
	}
	if len(chunks) == 1 {
		return chunks[0], nil
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}

// quoteInput quotes a caller's string for an error message, at most
// maxQuote bytes of it.
func quoteInput(s string) string {
	if len(s) <= maxQuote {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q (%d bytes)", notify.Clip(s, maxQuote), len(s))
}

// clipMessage bounds an error message on its way out of the API or into
// the log, the last line of defense against errors that quote their
// input: each line at most maxErrorLine bytes, at most maxErrorLines
// lines, and never invalid UTF-8.
func clipMessage(msg string) string {
	if len(msg) <= maxErrorLine && !strings.Contains(msg, "\n") {
		return strings.ToValidUTF8(msg, "\uFFFD")
	}
	var b strings.Builder
	lines := 0
	for rest := msg; rest != ""; lines++ {
		line, after, _ := strings.Cut(rest, "\n")
		if lines == maxErrorLines {
			fmt.Fprintf(&b, "\n… and %d more lines", strings.Count(rest, "\n")+1)
			break
		}
		if lines > 0 {
			b.WriteByte('\n')
		}
		if len(line) > maxErrorLine {
			line = notify.Clip(line, maxErrorLine) + fmt.Sprintf(" (%d bytes cut)", len(line)-maxErrorLine)
		}
		b.WriteString(line)
		rest = after
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// isLoopback reports whether host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
