// Package school is the worker process: it registers with the keeper by
// polling it over NATS, runs the koi it is assigned (up to its capacity),
// ramps them up gradually, starts formations at the keeper's instant, obeys
// the switch within a second, pauses itself when it loses the keeper, and
// reports metrics every interval.
//
// Ownership: School owns every goroutine it starts (poll loop, reporter,
// one ramp per run, one per koi) through s.wg and stops them through one
// context. Lock order: School.mu, then run.mu, then School.logMu; koi
// methods take their own locks and never call back into the school.
package school

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// Defaults for Config.
const (
	DefaultNATSURL         = "nats://127.0.0.1:4222"
	DefaultCapacity        = 5000
	DefaultPollInterval    = time.Second
	DefaultLease           = 10 * time.Second
	DefaultMetricsInterval = time.Second
	DefaultStopTimeout     = 4 * time.Second
)

// ErrNotAllowed marks a connection refused by the allow-target list.
var ErrNotAllowed = errors.New("target not allowed")

// Config configures a school. The zero value plus a reachable NATS works.
type Config struct {
	// ID names the school (default: host name, pid and a random suffix):
	// 1..wire.MaxSchoolID letters, digits, '.', '_' or '-', starting with
	// a letter or digit (the keeper refuses any other).
	ID string
	// NATSURL is the NATS server or cluster (comma-separated URLs).
	NATSURL string
	// NATS credentials, all optional.
	NATSUser, NATSPassword, NATSToken  string
	NATSNKeySeedFile, NATSCredsFile    string
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// KeeperKey is the keeper's public switch key (an nkey, "U…"); only
	// switches it signed are applied. Default: the key line of
	// NATSNKeySeedFile, else the key of the latest poll reply
	// (switchverify.go).
	KeeperKey string
	// Capacity is how many koi the school may run (default 5,000).
	Capacity int
	// AllowTargets lists where load may go (default DefaultAllowTargets).
	AllowTargets []string
	// PollInterval and Lease are used until the keeper's first reply sets
	// them (defaults 1 s and 10 s).
	PollInterval, Lease time.Duration
	// MetricsInterval is how often a report is published (default 1 s).
	MetricsInterval time.Duration
	// SourceIPs, if set, are local addresses koi connections are spread
	// over (one source address reaches at most ~28,000 ports per target).
	SourceIPs []string
	// MaxConnsPerHost caps API connections per target host (0: no cap).
	MaxConnsPerHost int
	// FireGranularity is the koi's firing grid (koi.RuntimeConfig's
	// FireGranularity: 0 the default, negative none).
	FireGranularity time.Duration
	// StopTimeout bounds how long Close waits for koi to close their
	// websockets (default 4 s, so a SIGTERM exits within 5 s).
	StopTimeout time.Duration
	// Logger receives structured logs (default: discard).
	Logger *slog.Logger
	// Clock is the school's clock (default time.Now); tests skew it.
	Clock func() time.Time
	// Software is reported to the keeper.
	Software string
	// MemoryLimit is the school's memory ceiling in bytes, applied as the
	// Go runtime's soft limit and watched for pressure (default:
	// DefaultMemoryLimit, from the container's limit or the machine's RAM).
	MemoryLimit int64
	// ReplyBudget bounds the reply bytes all koi hold while reading them
	// (default: ReplyBudgetShare of MemoryLimit).
	ReplyBudget int64
	// Pprof serves net/http/pprof under /debug/pprof/ on the status
	// server (ServeHTTP), for heap and CPU profiles of a busy school.
	Pprof bool
	// PressureHold is how long a run closed for memory pressure stays
	// closed at least (default 30 s).
	PressureHold time.Duration

	// TestClumpLaunches is for tests only: a fault that starts every koi
	// of a launch at the launch instant instead of at a uniform moment of
	// its window, so that the launch uniformity check has a failing case.
	// Never set it in a real school.
	TestClumpLaunches bool
}

// Validate returns every problem with the configuration.
func (c *Config) Validate() []error {
	var errs []error
	var fe *wire.FieldError
	if err := wire.CheckSchoolID(c.ID); c.ID != "" && errors.As(err, &fe) {
		errs = append(errs, fmt.Errorf("id: %s", fe.Problem))
	}
	if c.Capacity < 0 || c.Capacity > 100_000 {
		errs = append(errs, fmt.Errorf("capacity %d: must be 0..100000", c.Capacity))
	}
	for name, d := range map[string]time.Duration{"poll interval": c.PollInterval, "lease": c.Lease,
		"metrics interval": c.MetricsInterval, "stop timeout": c.StopTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	if _, err := ParseAllow(orDefault(c.AllowTargets, DefaultAllowTargets)); err != nil {
		errs = append(errs, err)
	}
	for _, ip := range c.SourceIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("source IP %q is not an IP address", ip))
		}
	}
	if c.KeeperKey != "" {
		if _, err := parseKeeperKey(c.KeeperKey); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < MinMemoryLimit {
		errs = append(errs, fmt.Errorf("memory limit %d bytes: must be at least %s", c.MemoryLimit, FormatBytes(MinMemoryLimit)))
	}
	if c.ReplyBudget < 0 {
		errs = append(errs, fmt.Errorf("reply budget %d bytes is negative", c.ReplyBudget))
	} else if c.MemoryLimit > 0 && c.ReplyBudget > c.MemoryLimit {
		errs = append(errs, fmt.Errorf("reply budget %s exceeds the memory limit %s", FormatBytes(c.ReplyBudget), FormatBytes(c.MemoryLimit)))
	}
	if c.PressureHold < 0 {
		errs = append(errs, fmt.Errorf("pressure hold %v is negative", c.PressureHold))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS cert and key must be given together"))
	}
	return errs
}

func orDefault(v, def []string) []string {
	if len(v) == 0 {
		return def
	}
	return v
}

// School runs koi for the keeper.
type School struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	allow  *Allow
	http   *http.Client
	dialer *websocket.Dialer
	verify *switchVerifier // checks the keeper's signature on switches

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	logMu   sync.Mutex // guards logOnce only; may be taken with mu held
	logOnce map[string]time.Time

	mu            sync.Mutex
	runs          map[string]*run
	global        wire.Control // applied global switch
	runSwitch     map[string]wire.Control
	selfPaused    bool
	selfStopped   bool // koi closed after two silent leases
	lastPollOK    time.Time
	pollInterval  time.Duration
	lease         time.Duration
	clock         clockEstimator
	launches      map[string]*launchState
	sets          map[string]parsedSet // by hash
	stopStarted   time.Time
	badMessages   int
	pollFailures  int
	reportSeq     uint64
	lastReportEnd time.Time

	// Memory (see pressure.go): the budget is shared by every run's koi;
	// pressureQuiet (guarded by mu) is when the next pause may happen;
	// reclaimedAt (memoryLoop's own) when garbage was last collected
	// before judging.
	budget         *koi.ReplyBudget
	memInUse       atomic.Int64
	pressurePauses atomic.Uint64
	reclaims       atomic.Uint64
	pressureQuiet  time.Time
	reclaimedAt    time.Time
	prevMemLimit   int64
	setMemLimit    bool
	memSource      string
}

// Open connects to NATS and starts polling. It returns once the
// connection attempt has been made (NATS reconnects forever after that).
func Open(ctx context.Context, cfg Config) (*School, error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.ID == "" {
		cfg.ID = defaultID()
	}
	if cfg.NATSURL == "" {
		cfg.NATSURL = DefaultNATSURL
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = DefaultMetricsInterval
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	memSource := "--memory-limit"
	if cfg.MemoryLimit == 0 {
		cfg.MemoryLimit, memSource = DefaultMemoryLimit()
		if cur := debug.SetMemoryLimit(-1); cur < cfg.MemoryLimit { // GOMEMLIMIT set lower
			cfg.MemoryLimit, memSource = cur, "the Go runtime's limit (GOMEMLIMIT)"
		}
	}
	if cfg.ReplyBudget == 0 {
		cfg.ReplyBudget = int64(float64(cfg.MemoryLimit) * ReplyBudgetShare)
	}
	if cfg.PressureHold == 0 {
		cfg.PressureHold = DefaultPressureHold
	}
	allow, _ := ParseAllow(orDefault(cfg.AllowTargets, DefaultAllowTargets))
	s := &School{
		cfg: cfg, log: cfg.Logger.With("school", cfg.ID), allow: allow,
		runs: map[string]*run{}, runSwitch: map[string]wire.Control{}, launches: map[string]*launchState{},
		sets: map[string]parsedSet{}, logOnce: map[string]time.Time{},
		pollInterval: cfg.PollInterval, lease: cfg.Lease,
		budget: koi.NewReplyBudget(cfg.ReplyBudget), memSource: memSource,
	}
	s.http, s.dialer = s.transports()
	var err error
	if s.verify, err = newSwitchVerifier(&cfg); err != nil {
		return nil, fmt.Errorf("school: %w", err)
	}
	opts, err := s.natsOptions()
	if err != nil {
		return nil, fmt.Errorf("school: %w", err)
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("school: connecting to NATS at %s: %w", cfg.NATSURL, err)
	}
	s.nc = nc
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if _, err := nc.Subscribe(wire.SubjectControl, s.onControl); err != nil {
		nc.Close()
		return nil, fmt.Errorf("school: subscribing to %s: %w", wire.SubjectControl, err)
	}
	s.lastPollOK = time.Now() // the lease starts now
	s.applyMemoryLimit()
	s.memInUse.Store(memoryInUse())
	s.wg.Add(3)
	go s.pollLoop()
	go s.reportLoop()
	go s.memoryLoop()
	s.log.Info("school started", "nats", cfg.NATSURL, "capacity", cfg.Capacity, "allow_target", allow.String(),
		"memory_limit", FormatBytes(cfg.MemoryLimit), "memory_limit_from", memSource, "reply_budget", FormatBytes(cfg.ReplyBudget))
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.ctx.Done():
		}
	}()
	return s, nil
}

// ID returns the school's id.
func (s *School) ID() string { return s.cfg.ID }

// Close stops every koi (closing websockets with a close frame), flushes a
// last metrics report and disconnects. It is idempotent and returns within
// about StopTimeout plus a second, however many koi there are and however
// busy the machine is: koi not done by then close with the process.
func (s *School) Close() error {
	s.closed.Do(func() {
		start := time.Now()
		deadline := start.Add(s.cfg.StopTimeout)
		s.mu.Lock()
		var all []*run
		for _, r := range s.runs {
			all = append(all, r)
		}
		s.mu.Unlock()
		for _, r := range all {
			r.stopAll()
		}
		for _, r := range all {
			r.waitStopped(time.Until(deadline))
		}
		s.cancel()
		// Whatever a koi is stuck in (a write to a target that stopped
		// reading, a runtime starved near the memory ceiling), the school
		// exits on time: SIGTERM is a promise to the operator. The
		// websockets of koi still running close with the process.
		if left := s.waitGoroutines(time.Until(deadline) + closeGrace); left > 0 {
			s.log.Warn("closing without waiting for koi still stopping", "koi", left, "waited", time.Since(start).Round(time.Millisecond))
		}
		s.report() // the last interval
		_ = s.nc.FlushTimeout(closeGrace)
		s.nc.Close()
		s.http.CloseIdleConnections()
		s.restoreMemoryLimit()
		s.log.Info("school stopped", "took", time.Since(start).Round(time.Millisecond))
	})
	return nil
}

// closeGrace is how long Close waits, past StopTimeout, for the school's
// own goroutines once every koi has been told to stop, and then for the
// last report to reach NATS.
const closeGrace = 250 * time.Millisecond

// waitGoroutines waits up to d for every goroutine the school started to
// end, and returns how many koi are still running after it.
func (s *School) waitGoroutines(d time.Duration) int {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-done:
		return 0
	case <-t.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.runs {
		n += r.running()
	}
	return n
}

// transports builds the shared HTTP client and websocket dialer: one tuned
// transport per school, every dial checked against the allow list and
// spread over the source addresses.
func (s *School) transports() (*http.Client, *websocket.Dialer) {
	var next uint64
	var mu sync.Mutex
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		if n := len(s.cfg.SourceIPs); n > 0 {
			mu.Lock()
			ip := s.cfg.SourceIPs[next%uint64(n)]
			next++
			mu.Unlock()
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
		}
		return d.DialContext(ctx, network, addr)
	}
	guarded := s.allow.DialContext(dial)
	client := koi.NewHTTPClient(s.cfg.MaxConnsPerHost, guarded)
	dialer := koi.NewDialer()
	dialer.NetDialContext = guarded
	return client, dialer
}

// logLimited logs a message at most once a minute per cause.
func (s *School) logLimited(cause string, msg string, args ...any) {
	s.logMu.Lock()
	last, seen := s.logOnce[cause]
	now := time.Now()
	if seen && now.Sub(last) < time.Minute {
		s.logMu.Unlock()
		return
	}
	if len(s.logOnce) > 10000 { // bounded: forget old causes
		clear(s.logOnce)
	}
	s.logOnce[cause] = now
	s.logMu.Unlock()
	s.log.Warn(msg, args...)
}

// defaultID is host-pid-random, with the host name cut and cleaned so
// that the id passes wire.CheckSchoolID whatever the host is called.
func defaultID() string {
	host, _ := os.Hostname()
	clean := []byte(host)
	for i, b := range clean {
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-') {
			clean[i] = '-'
		}
	}
	host = strings.TrimLeft(string(clean), "._-")
	if host == "" {
		host = "school"
	}
	host = host[:min(len(host), 64)]
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
