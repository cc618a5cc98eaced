package pond

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is a running pond. Open starts it; Close stops it.
type Server struct {
	cfg   Config
	ws    *workspace
	hub   *hub
	stats *stats
	lim   *limiter
	order *callOrder // per-token call order (callorder.go)
	log   *slog.Logger

	ln       net.Listener
	http     *http.Server
	upgrader websocket.Upgrader
	pingMsg  *websocket.PreparedMessage
	ticket   []byte // HMAC key of rtm.connect tickets, random per process

	faults   atomic.Pointer[map[string]Fault] // injected faults, replaced whole
	presence []atomic.Bool                    // true = away
	marksMu  sync.Mutex                       // a leaf lock
	marks    map[markKey]int64

	ctx    context.Context
	cancel context.CancelFunc

	// fresh holds connections that have not sent a request yet: clients
	// dial spares that may stay silent, and http.Server.Shutdown waits
	// five seconds before it counts such a connection as idle. A leaf lock.
	freshMu sync.Mutex
	fresh   map[net.Conn]struct{}

	gate     sync.RWMutex // guards closing against wg.Add
	closing  bool
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

type markKey struct {
	user, channel int32
}

// Open validates cfg, generates the workspace, binds cfg.Addr synchronously
// (so a port in use is an error) and serves in a goroutine until Close or
// until ctx is done.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("pond: invalid config: %w", errors.Join(errs...))
	}
	cfg = cfg.withDefaults()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("pond: making ticket key: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("pond: listening on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:      cfg,
		ws:       newWorkspace(cfg),
		stats:    newStats(),
		order:    newCallOrder(cfg.Users),
		lim:      newLimiter(cfg),
		log:      cfg.Logger,
		ln:       ln,
		ticket:   key,
		presence: make([]atomic.Bool, cfg.Users),
		marks:    map[markKey]int64{},
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	inject := maps.Clone(cfg.Inject) // the caller keeps its map
	s.faults.Store(&inject)
	s.hub = newHub(cfg.Channels)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:   512,
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{},
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      func(*http.Request) bool { return true },
	}
	s.pingMsg, _ = websocket.NewPreparedMessage(websocket.PingMessage, nil)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s.stats})
	mux := http.NewServeMux()
	mux.HandleFunc("/api/{method}", s.serveAPI)
	mux.HandleFunc("/ws", s.serveWS)
	mux.HandleFunc("GET /stats", s.serveStats)
	mux.HandleFunc("GET /stats/transitions", s.serveTransitions)
	mux.HandleFunc("DELETE /stats/transitions", s.serveTransitions)
	mux.HandleFunc("GET /_pond/faults", s.serveFaults)
	mux.HandleFunc("POST /_pond/faults", s.serveFaults)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState:         s.trackFresh,
	}
	s.spawn(func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("pond: serving", "err", err)
		}
	})
	if cfg.PingInterval > 0 {
		s.spawn(s.pinger)
	}
	if ctx != nil && ctx.Done() != nil {
		s.spawn(func() {
			select {
			case <-ctx.Done():
				go s.Close() // Close waits for this goroutine
			case <-s.ctx.Done():
			}
		})
	}
	s.log.Info("pond: listening", "url", s.URL(), "users", cfg.Users, "channels", cfg.Channels)
	return s, nil
}

// Addr returns the bound address, e.g. "127.0.0.1:41234".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the base http URL, e.g. "http://127.0.0.1:41234"; the API is
// under URL()+"/api/".
func (s *Server) URL() string { return "http://" + s.Addr() }

// Stats returns a snapshot of the counters GET /stats serves.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Close stops the server: it stops accepting, shuts HTTP down within
// Config.ShutdownTimeout, closes every websocket and waits for every
// goroutine it started. It is idempotent and safe to call concurrently.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		s.http.SetKeepAlivesEnabled(false)
		s.closeFresh()
		if err := s.http.Shutdown(ctx); err != nil {
			s.closeErr = fmt.Errorf("pond: shutting down http: %w", err)
			s.http.Close()
		}
		s.gate.Lock()
		s.closing = true
		s.gate.Unlock()
		for _, c := range s.hub.snapshot() {
			c.ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseGoingAway, "pond shutting down"),
				time.Now().Add(100*time.Millisecond))
			c.closeConn()
		}
		s.wg.Wait()
		s.log.Info("pond: closed")
	})
	return s.closeErr
}

// trackFresh remembers connections until their first request arrives.
func (s *Server) trackFresh(c net.Conn, st http.ConnState) {
	s.freshMu.Lock()
	defer s.freshMu.Unlock()
	switch st {
	case http.StateNew:
		if s.fresh == nil {
			s.fresh = map[net.Conn]struct{}{}
		}
		s.fresh[c] = struct{}{}
	default:
		delete(s.fresh, c)
	}
}

// closeFresh closes the connections that never sent a request, so Close
// does not wait on a client's silent spare.
func (s *Server) closeFresh() {
	s.freshMu.Lock()
	defer s.freshMu.Unlock()
	for c := range s.fresh {
		c.Close()
		delete(s.fresh, c)
	}
}

// spawn runs f in a goroutine that Close waits for; after Close has begun it
// runs nothing and returns false.
func (s *Server) spawn(f func()) bool {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

func (s *Server) logf(format string, args ...any) {
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		s.log.Info(fmt.Sprintf(format, args...))
	}
}

// pinger pings every websocket each PingInterval, so dead peers are found.
func (s *Server) pinger() {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.hub.toAll(s.pingMsg)
		}
	}
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.stats.snapshot())
}

// makeTicket returns an rtm.connect ticket for user, valid for TicketTTL:
// "<user>.<expiry unix>.<mac>".
func (s *Server) makeTicket(user int, now time.Time) string {
	exp := now.Add(s.cfg.TicketTTL).Unix()
	body := strconv.Itoa(user) + "." + strconv.FormatInt(exp, 10)
	return body + "." + s.mac(body)
}

func (s *Server) mac(body string) string {
	m := hmac.New(sha256.New, s.ticket)
	io.WriteString(m, body)
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// checkTicket returns the user a valid ticket is for, or -1.
func (s *Server) checkTicket(t string, now time.Time) int {
	i := strings.LastIndexByte(t, '.')
	if i < 0 || len(t) > 128 {
		return -1
	}
	body, sum := t[:i], t[i+1:]
	if !hmac.Equal([]byte(sum), []byte(s.mac(body))) {
		return -1
	}
	us, es, ok := strings.Cut(body, ".")
	if !ok {
		return -1
	}
	u, err1 := strconv.Atoi(us)
	exp, err2 := strconv.ParseInt(es, 10, 64)
	if err1 != nil || err2 != nil || u < 0 || u >= s.ws.users || now.Unix() > exp {
		return -1
	}
	return u
}

// serveWS upgrades to a websocket authenticated by ?ticket= (from
// rtm.connect) or by a bearer token.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	user := -1
	code := ""
	if t := r.URL.Query().Get("ticket"); t != "" {
		if user = s.checkTicket(t, time.Now()); user < 0 {
			code = "invalid_auth"
		}
	} else if tok := bearer(r); tok != "" {
		if user = s.ws.userFor(tok); user < 0 {
			code = "invalid_auth"
		}
	} else {
		code = "not_authed"
	}
	if user < 0 {
		s.stats.request("ws", http.StatusUnauthorized, code)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"ok":false,"error":%q}`+"\n", code)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil) // replies with an error itself
	if err != nil {
		s.stats.request("ws", http.StatusBadRequest, "upgrade_failed")
		return
	}
	s.stats.request("ws", http.StatusSwitchingProtocols, "")
	c := &wsConn{srv: s, ws: ws, user: user}
	s.stats.wsTotal.Add(1)
	if !s.spawn(func() { s.readLoop(c) }) {
		s.stats.disconnects.Add(1)
		ws.Close()
		return
	}
	// Returning frees the HTTP goroutine and its grown stack; readLoop
	// starts small.
}

// readLoop owns c: it registers it, reads client frames until an error,
// then unregisters and closes it.
func (s *Server) readLoop(c *wsConn) {
	// The hello goes first in the queue, before any event can be fanned
	// out to c.
	c.enqueue(s.prepare(HelloEvent{Type: "hello", SentAt: nowMillis()}))
	s.hub.register(s.ws, c)
	// Counted open once registered: a caller that sees n websockets open
	// and posts must reach all n (counted before, a starved readLoop
	// registered after the post and missed it).
	s.stats.wsOpen.Add(1)
	defer func() {
		s.hub.unregister(c)
		c.closeConn()
		s.stats.wsOpen.Add(-1)
		s.stats.disconnects.Add(1)
	}()
	// Close cancels s.ctx before it snapshots the hub: a connection it did
	// not see registered after the cancel, and sees it here, and says
	// goodbye as Close would have (its hello may already be out).
	if s.ctx.Err() != nil {
		c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "pond shutting down"),
			time.Now().Add(100*time.Millisecond))
		return
	}
	c.ws.SetReadLimit(s.cfg.MaxFrameBytes)
	idle := 2 * s.cfg.PingInterval
	if idle > 0 {
		c.ws.SetPongHandler(func(string) error {
			return c.ws.SetReadDeadline(time.Now().Add(idle))
		})
	}
	for {
		if idle > 0 {
			c.ws.SetReadDeadline(time.Now().Add(idle))
		}
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				s.stats.badFrames.Add(1)
			}
			return
		}
		if mt != websocket.TextMessage {
			s.stats.badFrames.Add(1)
			c.ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseUnsupportedData, "text frames only"),
				time.Now().Add(time.Second))
			return
		}
		if !s.handleFrame(c, data) {
			s.stats.badFrames.Add(1)
		}
	}
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}
