package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

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
//     read, and the body reader stops at the limit. At most uploadSlots
//     uploads are read and parsed at once; more wait their turn.

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
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(c.Response().Writer, r.Body, limit)
	}
	if limit > MaxCommandBody && r.Body != nil && r.Body != http.NoBody {
		select {
		case uploads <- struct{}{}:
			defer func() { <-uploads }()
		case <-r.Context().Done():
			return &keeper.Error{Code: keeper.CodeUnavailable, Message: "the request ended while waiting for an upload slot", Err: r.Context().Err()}
		}
	}
	return next(c)
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
