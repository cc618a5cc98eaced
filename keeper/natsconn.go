package keeper

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Redial backoff: the first attempt after a connection closed for good is
// quick (the server is usually still there, it only refused one line),
// later ones back off to redialMax. Every wait is jittered.
const (
	redialMin = 50 * time.Millisecond
	redialMax = 5 * time.Second
	// attachTimeout bounds the rebuild of the responders and the KV handle
	// on a new connection.
	attachTimeout = 10 * time.Second
)

// linkState is where the keeper's NATS connection stands.
type linkState string

const (
	// linkConnected: connected; responders and KV handle are in place.
	linkConnected linkState = "connected"
	// linkReconnecting: the socket dropped; nats.go is reconnecting the
	// same connection (its subscriptions come back with it).
	linkReconnecting linkState = "reconnecting"
	// linkRedialing: the connection closed for good (a protocol error the
	// server reported, an authorization error, ...); the keeper dials a
	// new one.
	linkRedialing linkState = "redialing"
	// linkClosed: the keeper is closing.
	linkClosed linkState = "closed"
)

// NATSHealth is a snapshot of the connection's state for /healthz.
type NATSHealth struct {
	State   linkState `json:"nats"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since"`
	Redials uint64    `json:"redials"`
}

// natsLink owns the keeper's NATS connection for the keeper's whole life.
//
// nats.go reconnects a dropped socket by itself, but it closes the
// connection for good on an error the server reports (a protocol line
// too long, a permissions or authorization violation, ...), and a closed
// nats.Conn never comes back. The link then dials a brand-new connection,
// forever, with jittered backoff, and has it attached (responders,
// JetStream and KV handles) before making it current. After every return
// of the connection (reconnected or redialed) it calls resync, for what
// the keeper may have missed meanwhile.
//
// Every user of the connection goes through conn(), safe against the
// swap. The link's goroutine is started by start and stopped by the
// context given to it; shutdown waits for it, then drains the connection.
type natsLink struct {
	log    *slog.Logger
	url    string
	opts   []nats.Option
	attach func(ctx context.Context, nc *nats.Conn) error
	resync func(ctx context.Context)
	// asyncErr receives nats.go's asynchronous errors (slow consumer, ...).
	asyncErr func(err error)

	cur     atomic.Pointer[nats.Conn]
	closed  chan struct{} // the current connection closed for good (buffered 1)
	up      chan struct{} // the current connection reconnected (buffered 1)
	done    chan struct{} // closed when the goroutine returns
	started atomic.Bool

	mu      sync.Mutex // guards the fields below; a leaf lock
	state   linkState
	reason  string
	since   time.Time
	redials uint64
}

func newNATSLink(log *slog.Logger, url string, opts []nats.Option) *natsLink {
	l := &natsLink{log: log, url: url, closed: make(chan struct{}, 1), up: make(chan struct{}, 1),
		done: make(chan struct{}), reason: "not connected yet", since: time.Now()}
	l.opts = append(append([]nats.Option(nil), opts...),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if l.cur.Load() == nc && !nc.IsClosed() {
				l.set(linkReconnecting, errText(err, "disconnected"))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			if l.cur.Load() == nc {
				l.set(linkConnected, "")
				signal(l.up)
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if l.cur.Load() == nc {
				signal(l.closed)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if l.asyncErr != nil {
				l.asyncErr(err)
			}
		}),
	)
	return l
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func errText(err error, def string) string {
	if err == nil {
		return def
	}
	return err.Error()
}

// dial makes the first connection (Open attaches it itself).
func (l *natsLink) dial() (*nats.Conn, error) {
	nc, err := nats.Connect(l.url, l.opts...)
	if err != nil {
		return nil, err
	}
	l.cur.Store(nc)
	l.set(linkConnected, "")
	if nc.IsClosed() {
		signal(l.closed)
	}
	return nc, nil
}

// conn returns the current connection (never nil once dial succeeded;
// nil without a link: keepers that tests build without NATS).
func (l *natsLink) conn() *nats.Conn {
	if l == nil {
		return nil
	}
	return l.cur.Load()
}

// health reports the connection's state; ok only when connected.
func (l *natsLink) health() (NATSHealth, bool) {
	l.mu.Lock()
	h := NATSHealth{State: l.state, Reason: l.reason, Since: l.since, Redials: l.redials}
	l.mu.Unlock()
	nc := l.conn()
	if h.State == linkConnected && (nc == nil || !nc.IsConnected()) {
		// Between the drop and nats.go's callback.
		h.State, h.Reason = linkReconnecting, "connection not up"
	}
	return h, h.State == linkConnected
}

// set records a state change and logs it once.
func (l *natsLink) set(st linkState, reason string) {
	l.mu.Lock()
	if l.state == st {
		l.reason = reason
		l.mu.Unlock()
		return
	}
	prev, since := l.state, l.since
	l.state, l.reason, l.since = st, reason, time.Now()
	if st == linkRedialing {
		l.redials++
	}
	l.mu.Unlock()
	switch {
	case prev == "":
		// The first connection: Open's log says where NATS is.
	case st == linkConnected:
		l.log.Info("NATS connection up", "server", l.url, "was", prev, "down_for", time.Since(since).Round(time.Millisecond))
	case st == linkReconnecting:
		l.log.Warn("NATS connection lost; reconnecting (health degraded)", "reason", reason)
	case st == linkRedialing:
		l.log.Warn("NATS connection closed for good; dialing a new one (health degraded)", "reason", reason)
	}
}

// start runs the link's goroutine until ctx is done.
func (l *natsLink) start(ctx context.Context) {
	l.started.Store(true)
	go l.run(ctx)
}

func (l *natsLink) run(ctx context.Context) {
	defer close(l.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.up:
			l.resyncNow(ctx)
		case <-l.closed:
			old := l.conn()
			if old == nil || !old.IsClosed() {
				continue // a stale signal
			}
			l.set(linkRedialing, errText(old.LastError(), "connection closed"))
			if l.redial(ctx) {
				l.resyncNow(ctx)
			}
		}
	}
}

func (l *natsLink) resyncNow(ctx context.Context) {
	if l.resync == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	l.resync(rctx)
}

// redial dials until a new connection is attached and current, or ctx
// is done; it reports whether it connected.
func (l *natsLink) redial(ctx context.Context) bool {
	wait := redialMin
	for attempt := 1; ; attempt++ {
		nc, err := l.connect(ctx)
		if err == nil {
			l.cur.Store(nc)
			l.set(linkConnected, "")
			if nc.IsClosed() {
				signal(l.closed)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		l.mu.Lock()
		l.reason = err.Error()
		l.mu.Unlock()
		if attempt == 1 {
			l.log.Warn("dialing NATS failed; retrying with backoff until it answers", "err", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, redialMax)
	}
}

// connect dials a new connection and attaches it.
func (l *natsLink) connect(ctx context.Context) (*nats.Conn, error) {
	nc, err := nats.Connect(l.url, l.opts...)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	if err := l.attach(actx, nc); err != nil {
		nc.Close()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// shutdown waits for the goroutine (its context must be done) and drains
// the connection: in-flight handlers finish, then it closes.
func (l *natsLink) shutdown() {
	if l.started.Load() {
		<-l.done
	}
	l.set(linkClosed, "keeper closing")
	nc := l.conn()
	if nc == nil {
		return
	}
	if err := nc.Drain(); err != nil {
		nc.Close()
	}
	for i := 0; i < 100 && !nc.IsClosed(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	nc.Close()
}

// conn returns the keeper's current NATS connection. Callers must not
// keep it: after a redial it is closed.
func (k *Keeper) conn() *nats.Conn { return k.bus.conn() }

// reattach rebuilds, on a brand-new connection, everything that was bound
// to the closed one: the KV handle, then the responders.
func (k *Keeper) reattach(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := k.kv.Rebind(ctx, js, k.cfg.Bucket, k.cfg.Replicas); err != nil {
		return err
	}
	return k.subscribe(nc)
}

// resyncState takes in what was written to the bucket around the keeper
// while it was away from NATS (koipond stop --nats writes the switch there
// and publishes it; the keeper missed the publish).
func (k *Keeper) resyncState(ctx context.Context) {
	recs, err := k.kv.Load(ctx)
	if err == nil {
		var adopted bool
		if adopted, err = k.store.AdoptExternal(recs); adopted {
			k.log.Warn("switch set around the keeper while it was away from NATS adopted", "epoch", k.store.Epoch())
		}
	}
	if err != nil && ctx.Err() == nil {
		k.stats.reject(k.log, "nats: resync after reconnect failed", err)
	}
	k.Kick()
}

// natsAsyncError counts nats.go's asynchronous errors (a slow consumer
// dropping messages, a permission violation) by cause.
func (k *Keeper) natsAsyncError(err error) {
	cause := "nats: async error"
	switch {
	case errors.Is(err, nats.ErrSlowConsumer):
		cause = "nats: slow consumer"
	case errors.Is(err, nats.ErrPermissionViolation):
		cause = "nats: permission violation"
	}
	k.stats.reject(k.log, cause, err)
}

// rejectInvalid counts a message outside its bounds by subject and field.
func (k *Keeper) rejectInvalid(subject string, err error, attrs ...any) {
	cause := subject + ": invalid"
	var fe *wire.FieldError
	if errors.As(err, &fe) {
		cause += " " + fe.Field
	}
	k.stats.reject(k.log, cause, err, attrs...)
}

// NATSHealth returns the NATS connection's state; false unless connected.
func (k *Keeper) NATSHealth() (NATSHealth, bool) { return k.bus.health() }
