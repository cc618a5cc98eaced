package keeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultHTTP         = "127.0.0.1:8080"
	DefaultNATSListen   = "127.0.0.1:4222"
	DefaultDataDir      = "koipond-data"
	DefaultBucket       = "koipond"
	DefaultPollInterval = time.Second
	DefaultLease        = 10 * time.Second
	// DefaultStartupTimeout is Config.StartupTimeout's default.
	DefaultStartupTimeout = 2 * time.Minute
	// DefaultBodyTimeout is Config.BodyTimeout's default.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultUploadWait is Config.UploadWait's default: longer than
	// DefaultBodyTimeout, so an upload queued behind bodies that stalled
	// gets their slot when they are cut instead of being turned away.
	DefaultUploadWait = 15 * time.Second
)

// Config configures a Keeper. The zero value of every field means its
// default.
type Config struct {
	// HTTP is the API listen address (default 127.0.0.1:8080; ":0" picks
	// a port). Listening beyond loopback requires Tokens or TokensFile.
	HTTP string
	// NATS is the URL of an external NATS (cluster) with JetStream. Empty
	// starts an embedded nats-server listening on NATSListen.
	NATS string
	// NATSListen is the embedded server's client address (default
	// 127.0.0.1:4222; port -1 picks one). Authentication is on there
	// (natsauth.go): schools connect with DataDir/nats/school.nk.
	NATSListen string
	// NATSToken is the token the keeper presents to an external NATS.
	NATSToken string
	// NATSAuth: the keeper's other credentials for an external NATS, or
	// turning authentication off on the embedded one (natsauth.go).
	NATSAuth NATSAuth
	// DataDir holds the embedded server's JetStream files, the NATS
	// credentials it makes, and the runs' metrics history file (history/,
	// unlinked: blockstore.go) (default ./koipond-data).
	DataDir string
	// Bucket is the KV bucket holding the state (default "koipond").
	Bucket string
	// Replicas is the bucket's replica count (default 1; set it to the
	// cluster size on an external cluster).
	Replicas int
	// TokensFile lists API tokens, one per line: NAME ROLE TOKEN, with
	// ROLE viewer, operator or admin; # starts a comment.
	TokensFile string
	// Tokens are API tokens given in code, added to TokensFile's.
	Tokens []Token
	// PollInterval is what schools are told to poll at (default 1 s).
	PollInterval time.Duration
	// Lease is how long a school keeps its koi without a poll answered,
	// and how long the keeper keeps a silent school's ranges (default 10 s).
	Lease time.Duration
	// Logger receives the keeper's logs (default slog.Default()).
	Logger *slog.Logger
	// WarehouseDir, when set, is the folder under which
	// POST /api/v1/behavior-sets/generate may read local exports (s3://
	// sources are always allowed). Empty: no local reads.
	WarehouseDir string
	// UI, when set, is served at every path outside /api/, /metrics and
	// /healthz (GET and HEAD), without a token: the web UI (ui.Handler),
	// which then calls the API on the same origin.
	UI http.Handler
	// PublicURL is the keeper's address as people reach it, for the links
	// in notices (default http://HTTP). Its origin counts as the keeper's
	// own at the HTTP edge (keeper/api's edge.go).
	PublicURL string
	// MetricsPublic serves /metrics without a token even when API tokens
	// are configured (for scrapers that cannot send one). By default,
	// with tokens, /metrics needs a viewer's.
	MetricsPublic bool
	// Pprof serves net/http/pprof under /debug/pprof/ on the API, for an
	// admin (any caller when no tokens are configured). Off by default.
	Pprof bool
	// WebhookTimeout bounds one webhook delivery attempt (default 5 s).
	WebhookTimeout time.Duration
	// WebhookBackoff is the wait before a webhook's first retry, doubled
	// for each next one (default 1 s).
	WebhookBackoff time.Duration
	// QuarantineAfter is how many school failures (crashes while holding
	// a run's koi, memory ceilings hit) within QuarantineWindow make the
	// keeper pause the run (default 3; -1: never). See quarantine.go.
	QuarantineAfter int
	// QuarantineWindow is how long a failure counts (default 15 min).
	QuarantineWindow time.Duration
	// MaxSchools is how many schools the keeper keeps (default
	// DefaultMaxSchools). A new school beyond it takes the place of one
	// lost for a few leases that holds no koi, or its polls are refused
	// (counted as rejections). See schoollimit.go.
	MaxSchools int
	// SchoolExpiry is how long a lost school that holds no koi is kept
	// before it is forgotten (default DefaultSchoolExpiry, 24 h; at
	// least two leases). See schoolexpiry.go.
	SchoolExpiry time.Duration
	// StartupTimeout bounds how long Open waits for JetStream to serve
	// the state bucket (default DefaultStartupTimeout): a cluster started
	// beside the keeper may take a while to elect its leaders.
	StartupTimeout time.Duration
	// BodyTimeout bounds how long an API request body may take to arrive
	// beyond the time its length needs at the edge's minimum rate (64 KiB
	// a second; keeper/api's edge.go): a body slower than that is cut and
	// its connection closed (default DefaultBodyTimeout).
	BodyTimeout time.Duration
	// UploadWait bounds how long a behavior-set, formation or export
	// upload waits for one of the few upload slots before it is answered
	// 503 with Retry-After (default DefaultUploadWait).
	UploadWait time.Duration
}

func (c Config) withDefaults() Config {
	if c.HTTP == "" {
		c.HTTP = DefaultHTTP
	}
	if c.NATSListen == "" {
		c.NATSListen = DefaultNATSListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = DefaultStartupTimeout
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.UploadWait == 0 {
		c.UploadWait = DefaultUploadWait
	}
	return c
}

// Validate returns every problem with the configuration (after defaults),
// each naming the field.
func (c Config) Validate() []error {
	c = c.withDefaults()
	var errs []error
	httpHost, _, err := net.SplitHostPort(c.HTTP)
	if err != nil {
		errs = append(errs, fmt.Errorf("http: %q is not host:port: %w", c.HTTP, err))
	}
	if c.NATS == "" {
		_, p, err := net.SplitHostPort(c.NATSListen)
		if err != nil {
			errs = append(errs, fmt.Errorf("nats-listen: %q is not host:port: %w", c.NATSListen, err))
		} else if n, err := strconv.Atoi(p); err != nil || n < -1 || n > 65535 {
			errs = append(errs, fmt.Errorf("nats-listen: bad port %q", p))
		}
	}
	errs = append(errs, c.validateNATSAuth()...)
	if err := state.ValidBucket(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("bucket: %w", err))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas: %d is outside 1..5", c.Replicas))
	}
	if c.PollInterval < 10*time.Millisecond || c.PollInterval > time.Minute {
		errs = append(errs, fmt.Errorf("poll interval: %v is outside 10ms..1m", c.PollInterval))
	}
	if c.StartupTimeout < 0 {
		errs = append(errs, fmt.Errorf("startup timeout: %v is negative", c.StartupTimeout))
	}
	if c.Lease < 2*c.PollInterval {
		errs = append(errs, fmt.Errorf("lease: %v is shorter than two poll intervals (%v)", c.Lease, 2*c.PollInterval))
	}
	for i, t := range c.Tokens {
		if err := t.validate(); err != nil {
			errs = append(errs, fmt.Errorf("tokens[%d]: %w", i, err))
		}
	}
	if c.PublicURL != "" {
		if e := checkURL("public-url", c.PublicURL, "http", "https"); e != nil {
			errs = append(errs, e)
		}
	}
	if c.BodyTimeout < 0 || c.UploadWait < 0 {
		errs = append(errs, fmt.Errorf("body timeout and upload wait: must not be negative"))
	}
	if c.WebhookTimeout < 0 || c.WebhookBackoff < 0 {
		errs = append(errs, fmt.Errorf("webhook timeout and backoff: must not be negative"))
	}
	if err == nil && !isLoopback(httpHost) && c.TokensFile == "" && len(c.Tokens) == 0 {
		errs = append(errs, fmt.Errorf("http: %s is beyond loopback: API tokens are required (--tokens FILE)", c.HTTP))
	}
	errs = append(errs, c.validateQuarantine()...)
	errs = append(errs, c.validateSchoolExpiry()...)
	errs = append(errs, c.validateMaxSchools()...)
	return errs
}

// isLoopback reports whether host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Keeper is a running keeper. Its methods are safe for concurrent use.
type Keeper struct {
	cfg     Config
	log     *slog.Logger
	store   *state.Store
	auth    *authenticator
	creds   *natsCreds // NATS keys and the switch signing key (natsauth.go)
	agg     *aggregator
	stats   *stats
	guard   *guard       // live thresholds and guardrails
	windows *windowCache // their windows' settled buckets

	ns  *server.Server // embedded server; nil with an external one
	bus *natsLink      // the NATS connection, redialed when closed (natsconn.go)
	kv  *state.KV
	ln  net.Listener // the API's, bound and served by keeper/api (Serve)
	srv *http.Server

	opened time.Time // when Open restored the state
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}    // wakes the scheduler
	hooks  *notify.Notifier // webhook delivery workers
	trig   *triggerStats    // trigger calls accepted and refused
	blobs  blobCache        // encoded blob replies (blobsize.go)

	replays    replayGuard          // metrics reports already taken, by school
	mu         sync.Mutex           // guards partial, shortSince, refusals
	partial    []string             // runs started partially, as last logged
	shortSince map[string]time.Time // when each run short of schools was first seen short
	refusals   map[refusal]refused  // schools refusing runs, kept refuseFor
	schoolGate schoolGate           // refuses new schools while no room can be made

	ckpt map[string]ckptMark // last checkpoint per run; the scheduler goroutine's own
	// rollAfter is when the scheduler may next try to roll the
	// checkpoints' bucket after a failed try; its own.
	rollAfter time.Time
	schedDone chan struct{} // closed when the scheduler (and its closing checkpoint) is done

	closeOnce sync.Once
	closeErr  error
}

// Open starts a keeper: NATS (embedded or connected), the KV bucket and the
// restore of its state, the NATS responders, the scheduler and the HTTP
// API, which listens before Open returns.
func Open(ctx context.Context, cfg Config) (_ *Keeper, err error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("keeper: invalid config: %w", errors.Join(errs...))
	}
	cfg = cfg.withDefaults()
	k := &Keeper{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), stats: newStats(), guard: newGuard(), windows: newWindowCache(), refusals: map[refusal]refused{}}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	if k.auth, err = newAuthenticator(cfg.TokensFile, cfg.Tokens); err != nil {
		return nil, fmt.Errorf("keeper: %w", err)
	}
	if err := k.openNATS(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(k.conn())
	if err != nil {
		return nil, fmt.Errorf("keeper: jetstream: %w", err)
	}
	recs, err := k.openState(ctx, js)
	if err != nil {
		return nil, err
	}
	if k.store, err = state.New(k.kv); err != nil {
		return nil, fmt.Errorf("keeper: %w", err)
	}
	if err := k.store.Restore(recs); err != nil {
		return nil, fmt.Errorf("keeper: %w", err)
	}
	k.trig = newTriggerStats()
	k.hooks = notify.New(notify.Config{Webhooks: func() []*state.Webhook { return k.store.Read().Webhooks(nil) },
		Links: k.links, Logger: k.log, Timeout: cfg.WebhookTimeout, Backoff: cfg.WebhookBackoff})
	k.hooks.Start() // workers for the stored webhooks; Close stops them
	k.opened = time.Now()
	k.log.Info("keeper state restored", "records", len(recs), "epoch", k.store.Epoch())
	if sp, err := newFileSpace(filepath.Join(k.cfg.DataDir, historyDir)); err != nil {
		k.log.Warn("keeping the runs' metrics history in memory", "err", err)
		k.agg = newAggregator()
	} else {
		k.agg = newAggregatorIn(sp)
	}
	k.restoreCheckpoints()
	if err := k.subscribe(k.conn()); err != nil {
		return nil, err
	}
	k.bus.start(k.ctx) // from here on, a closed connection is redialed
	k.wg.Add(3)
	go func() {
		defer k.wg.Done()
		k.guardLoop()
	}()
	go func() {
		defer k.wg.Done()
		k.expireLoop()
	}()
	k.schedDone = make(chan struct{})
	go func() {
		defer k.wg.Done()
		defer close(k.schedDone)
		k.scheduleLoop()
	}()
	k.log.Info("keeper listening", "http", "http://"+k.HTTPAddr(), "nats", k.NATSURL(), "auth", k.auth.enabled(), "keeper_key", k.KeeperKey())
	return k, nil
}

// openNATS starts the embedded server (unless cfg.NATS is set) and
// connects.
func (k *Keeper) openNATS() error {
	if err := k.loadNATSCreds(); err != nil {
		return err
	}
	opts := []nats.Option{nats.Name("koipond keeper"), nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond), nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.PingInterval(5 * time.Second), nats.MaxPingsOutstanding(3)}
	auth, err := k.natsClientAuth()
	if err != nil {
		return err
	}
	opts = append(opts, auth...)
	url := k.cfg.NATS
	if url == "" {
		h, p, _ := net.SplitHostPort(k.cfg.NATSListen)
		port, _ := strconv.Atoi(p)
		dir := filepath.Join(k.cfg.DataDir, "jetstream")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("keeper: data dir: %w", err)
		}
		so := &server.Options{ServerName: "koipond-keeper", Host: h, Port: port,
			JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true, MaxPayload: 8 << 20}
		k.natsServerAuth(so)
		ns, err := server.NewServer(so)
		if err != nil {
			return fmt.Errorf("keeper: embedded nats: %w", err)
		}
		k.ns = ns
		go ns.Start() // the server owns its goroutines; Shutdown in Close stops them
		if !ns.ReadyForConnections(30 * time.Second) {
			return fmt.Errorf("keeper: embedded nats did not start on %s", k.cfg.NATSListen)
		}
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns))
	}
	k.bus = newNATSLink(k.log, url, opts)
	k.bus.attach, k.bus.resync, k.bus.asyncErr = k.reattach, k.resyncState, k.natsAsyncError
	if _, err := k.bus.dial(); err != nil {
		return fmt.Errorf("keeper: connecting to nats %s: %w", url, err)
	}
	return nil
}

// HTTPAddr returns the address the API listens on (host:port): the one
// keeper/api bound and gave as Config.HTTP.
func (k *Keeper) HTTPAddr() string { return k.cfg.HTTP }

// Serve serves the HTTP API h (keeper/api's handler) on ln, which the
// caller bound, until Close: the keeper owns the server's goroutine and
// shuts the API down first when it closes. Call it once, right after
// Open, before the keeper is used concurrently.
func (k *Keeper) Serve(ln net.Listener, h http.Handler) {
	k.ln = ln
	// Request bodies get their deadlines at the edge (keeper/api's
	// edge.go); an idle keep-alive connection is closed after a while
	// instead of holding its goroutine for ever.
	k.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		if err := k.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			k.log.Error("http server stopped", "err", err)
		}
	}()
}

// Config returns the keeper's configuration, defaults filled in.
func (k *Keeper) Config() Config { return k.cfg }

// Context returns a context cancelled when the keeper closes (long polls
// and event streams end with it).
func (k *Keeper) Context() context.Context { return k.ctx }

// NATSURL returns the NATS URL schools should use.
func (k *Keeper) NATSURL() string {
	if k.ns != nil {
		return k.ns.ClientURL()
	}
	return k.cfg.NATS
}

// Close stops the keeper: the API, the responders and the scheduler, then
// NATS. It waits for every goroutine. It is idempotent.
func (k *Keeper) Close() error {
	k.closeOnce.Do(func() {
		k.cancel()
		if k.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := k.srv.Shutdown(ctx); err != nil {
				k.closeErr = fmt.Errorf("keeper: http shutdown: %w", err)
			}
			cancel()
		} else if k.ln != nil {
			k.ln.Close()
		}
		if k.schedDone != nil {
			<-k.schedDone // its closing checkpoint needs the connection
		}
		if k.bus != nil {
			k.bus.shutdown() // drain: in-flight handlers finish, then close
		}
		k.wg.Wait()
		if k.hooks != nil {
			k.hooks.Close()
		}
		if k.ns != nil {
			k.ns.Shutdown()
			k.ns.WaitForShutdown()
		}
		if k.agg != nil {
			k.agg.close()
		}
	})
	return k.closeErr
}

// Kick wakes the scheduler now instead of at its next tick.
func (k *Keeper) Kick() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// jitter returns d ± 10%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}
