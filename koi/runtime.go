// Package koi is one simulated client: an identity, a persistent websocket
// (reconnecting with jittered exponential backoff), an API client, a local
// store, and the executor that runs behavior and formation sequences.
//
// Koi are built to be multiplied: an idle koi is one goroutine (its
// websocket reader) and two runtime timers (keepalive and its behavior
// schedule); sequences run on kept workers (see workers.go). Everything a
// run's koi have in common (the behavior set, HTTP transport, websocket
// dialer, metrics recorder) lives once in a Runtime.
package koi

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// Defaults for RuntimeConfig.
const (
	DefaultRequestTimeout = 30 * time.Second
	// DefaultFireGranularity: 50 ms, a 1/1200 of a minute at time scale 1.
	DefaultFireGranularity = 50 * time.Millisecond
	DefaultPingInterval    = 30 * time.Second
	DefaultPongWait        = 75 * time.Second
	DefaultReadLimit       = 1 << 20
	DefaultEventTimeField  = "sent_at"
	// DefaultBackoffMin and DefaultBackoffMax bound the reconnect backoff:
	// the n-th consecutive failure waits a random time in
	// [d/2, d] with d = min(max, min·2^n).
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
	// DefaultBackoffReset is how long a connection must stay up for the
	// backoff to start again from the minimum.
	DefaultBackoffReset = 10 * time.Second
	// MaxResponseBody is the most of a response body a koi reads.
	MaxResponseBody = 8 << 20
	// MaxRetryAfter caps how long a koi honours a Retry-After header.
	MaxRetryAfter = 2 * time.Minute
)

// RuntimeConfig is what every koi of a run shares.
type RuntimeConfig struct {
	// Set is the behavior set the koi run (required).
	Set *behaviors.Set
	// APIBase is the base URL of `api` requests, e.g.
	// http://127.0.0.1:9090/api (a request for method m goes to
	// APIBase/m). Required when the set has api requests.
	APIBase string
	// Websocket, if its URL is set, is where koi connect; otherwise the
	// boot sequence must give it (websocketURL). Koi without a URL run
	// without a websocket.
	Websocket behaviors.WebsocketSpec
	// TimeScale speeds time up: with 60, a behavior minute lasts one
	// second and every delay is 60 times shorter. Default 1.
	TimeScale float64
	// Metrics receives every observation (default: a new recorder).
	Metrics *metrics.Recorder
	// HTTPClient is shared by the koi (default: NewHTTPClient(0, nil)).
	HTTPClient *http.Client
	// Dialer opens websockets (default: NewDialer()).
	Dialer *websocket.Dialer
	// RequestTimeout bounds a request whose step gives no timeout_ms.
	RequestTimeout time.Duration
	// PingInterval is how long a koi's websocket may be silent before the
	// koi pings it (a server that pings, or sends events, keeps it alive
	// without koi pings); PongWait is how long it waits for any frame
	// before it reconnects.
	PingInterval, PongWait time.Duration
	// ReadLimit is the largest websocket frame accepted.
	ReadLimit int64
	// EventTimeField is the event field holding the server's send time
	// (unix milliseconds) used to measure fan-out delay.
	EventTimeField string
	// BackoffMin, BackoffMax and BackoffReset shape reconnects (see the
	// defaults).
	BackoffMin, BackoffMax, BackoffReset time.Duration
	// ReplyBudget, shared by every run of a school, bounds the reply
	// bytes being read at once (nil: only the per-reply caps).
	ReplyBudget *ReplyBudget
	// FireGranularity is the step of the grid that background firings
	// start on: a firing planned for t starts at the next grid point, up
	// to one step late, so that a school wakes once for the many koi due
	// in a step rather than once per koi (each wake-up costs more CPU
	// than the request it starts). The step is at most 1/100 of a
	// behavior minute, and the grid's phase is random per runtime, so
	// runs and schools do not line up. 0: DefaultFireGranularity;
	// negative: every firing starts at its own time.
	FireGranularity time.Duration
	// WorkspaceBytes bounds the run's shared workspace knowledge: the
	// channels, messages and user ids its koi learn, interned once for
	// all of them (0: behaviors.DefaultWorkspaceBytes).
	WorkspaceBytes int64
}

// Validate returns every problem with the configuration.
func (c *RuntimeConfig) Validate() []error {
	var errs []error
	if c.Set == nil {
		errs = append(errs, errors.New("koi: Set is required"))
	}
	if c.APIBase != "" {
		if u, err := url.Parse(c.APIBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("koi: APIBase %q is not an http(s) URL", c.APIBase))
		}
	}
	if c.Websocket.URL != "" {
		if u, err := url.Parse(c.Websocket.URL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			errs = append(errs, fmt.Errorf("koi: websocket URL %q is not a ws(s) URL", c.Websocket.URL))
		}
	}
	if c.TimeScale < 0 || c.TimeScale > 1e6 {
		errs = append(errs, fmt.Errorf("koi: TimeScale %v is outside (0, 1e6]", c.TimeScale))
	}
	for name, d := range map[string]time.Duration{"RequestTimeout": c.RequestTimeout, "PingInterval": c.PingInterval,
		"PongWait": c.PongWait, "BackoffMin": c.BackoffMin, "BackoffMax": c.BackoffMax, "BackoffReset": c.BackoffReset} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("koi: %s %v is negative", name, d))
		}
	}
	if c.WorkspaceBytes < 0 {
		errs = append(errs, fmt.Errorf("koi: WorkspaceBytes %d is negative", c.WorkspaceBytes))
	}
	if c.ReadLimit < 0 {
		errs = append(errs, fmt.Errorf("koi: ReadLimit %d is negative", c.ReadLimit))
	}
	return errs
}

// Runtime is the shared, immutable part of a run's koi.
type Runtime struct {
	cfg         RuntimeConfig
	set         *behaviors.Set
	sched       *behaviors.Schedule
	scheduled   []*behaviors.Behavior
	minute      time.Duration
	apiURLs     sync.Map // method → *url.URL, see apiURL
	apiURLCount atomic.Int64
	workers     *workers      // run the behaviors' sequences, see workers.go
	fireStep    time.Duration // the firing grid's step (0: none), see FireGranularity
	firePhase   time.Duration // and its phase, in [0, fireStep)
	metrics     *metrics.Recorder
	http        *http.Client
	dialer      *websocket.Dialer
	workspace   *behaviors.Workspace // what the koi learn identically, shared

	keysMu sync.RWMutex
	keys   map[string]*metrics.Series
	events map[string]*metrics.Series // by event type, see eventSeries; guarded by keysMu
	closes map[int]*metrics.Series    // by close code, see closeSeries; guarded by keysMu

	// start anchors behavior time: at wall time start + d, behavior time
	// is start + d × TimeScale (its hour of day drives hourly profiles).
	start  time.Time
	hourly bool

	exposure exposureBook // spans of schedule that ended, see exposure.go

	// Reply accounting, see budget.go.
	inFlight      atomic.Int64
	replyBytes    atomic.Uint64
	budgetRefused atomic.Uint64
}

// NewRuntime validates cfg, fills defaults and prepares the schedule.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.RequestTimeout, DefaultRequestTimeout)
	def(&cfg.PingInterval, DefaultPingInterval)
	def(&cfg.PongWait, DefaultPongWait)
	def(&cfg.BackoffMin, DefaultBackoffMin)
	def(&cfg.BackoffMax, DefaultBackoffMax)
	def(&cfg.BackoffReset, DefaultBackoffReset)
	if cfg.ReadLimit == 0 {
		cfg.ReadLimit = DefaultReadLimit
	}
	if cfg.EventTimeField == "" {
		cfg.EventTimeField = DefaultEventTimeField
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &metrics.Recorder{}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = NewHTTPClient(0, nil)
	}
	if cfg.Dialer == nil {
		cfg.Dialer = NewDialer()
	}
	sched, scheduled, err := behaviors.ScheduleOf(cfg.Set)
	if err != nil {
		return nil, fmt.Errorf("koi: %w", err)
	}
	cfg.APIBase = strings.TrimRight(cfg.APIBase, "/")
	rt := &Runtime{
		cfg: cfg, set: cfg.Set, sched: sched, scheduled: scheduled,
		minute:  time.Duration(float64(time.Minute) / cfg.TimeScale),
		metrics: cfg.Metrics, http: cfg.HTTPClient, dialer: cfg.Dialer,
		workspace: behaviors.NewWorkspace(cfg.WorkspaceBytes),
		keys:      map[string]*metrics.Series{},
		events:    map[string]*metrics.Series{},
		closes:    map[int]*metrics.Series{},
		start:     time.Now(),
		hourly:    hasHourly(scheduled),
		workers:   newWorkers(),
	}
	step := cfg.FireGranularity
	if step == 0 {
		step = DefaultFireGranularity
	}
	if step = min(step, rt.minute/100); step > 0 {
		rt.fireStep, rt.firePhase = step, time.Duration(rand.Int64N(int64(step)))
	}
	return rt, nil
}

// maxAPIURLs bounds apiURL's cache (a set names its methods; this is
// only a guard).
const maxAPIURLs = 4096

// apiURL returns APIBase/method, parsed once per method.
func (rt *Runtime) apiURL(method string) (*url.URL, error) {
	if u, ok := rt.apiURLs.Load(method); ok {
		return u.(*url.URL), nil
	}
	u, err := url.Parse(rt.cfg.APIBase + "/" + method)
	if err != nil {
		return nil, &requestError{outcome: metrics.Error, msg: fmt.Sprintf("api request %q: %v", method, err)}
	}
	if rt.apiURLCount.Add(1) <= maxAPIURLs {
		rt.apiURLs.Store(method, u)
	}
	return u, nil
}

// roundTripper is the HTTP client's transport, for requests that follow
// no redirect.
func (rt *Runtime) roundTripper() http.RoundTripper {
	if rt.http.Transport != nil {
		return rt.http.Transport
	}
	return http.DefaultTransport
}

// fireAt returns when a firing planned for at starts: the first point of
// the firing grid at or after at, unless that is past end (the end of the
// firing's minute: a firing stays in the minute it was planned for), when
// it starts at at.
func (rt *Runtime) fireAt(at, end time.Time) time.Time {
	step := int64(rt.fireStep)
	if step <= 0 {
		return at
	}
	r := (at.UnixNano() - int64(rt.firePhase)) % step
	if r < 0 {
		r += step
	}
	if q := at.Add(time.Duration(step - r)); r != 0 && q.Before(end) {
		return q
	}
	return at
}

func hasHourly(bs []*behaviors.Behavior) bool {
	for _, b := range bs {
		if b.Hourly != nil {
			return true
		}
	}
	return false
}

// BehaviorTime converts a wall time to behavior time: with time scale 60,
// one wall second is one behavior minute, and a behavior day passes in 24
// wall minutes.
func (rt *Runtime) BehaviorTime(wall time.Time) time.Time {
	return rt.start.Add(time.Duration(float64(wall.Sub(rt.start)) * rt.cfg.TimeScale))
}

// hourOf returns the hour of day (in the set's time zone) of the behavior
// minute starting at wall time t, or -1 when no behavior has a profile.
func (rt *Runtime) hourOf(t time.Time) int {
	if !rt.hourly {
		return -1
	}
	return rt.BehaviorTime(t).In(rt.set.Timezone).Hour()
}

// Workspace returns the knowledge the run's koi share (channels, messages,
// user ids).
func (rt *Runtime) Workspace() *behaviors.Workspace { return rt.workspace }

// Metrics returns the recorder the koi write into.
func (rt *Runtime) Metrics() *metrics.Recorder { return rt.metrics }

// Minute is the length of one behavior minute after time scaling.
func (rt *Runtime) Minute() time.Duration { return rt.minute }

// Scale converts a duration written in a behavior file to wall time.
func (rt *Runtime) Scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) / rt.cfg.TimeScale)
}

// series returns the cached series of a metric key.
func (rt *Runtime) series(key string) *metrics.Series {
	rt.keysMu.RLock()
	s := rt.keys[key]
	rt.keysMu.RUnlock()
	if s != nil {
		return s
	}
	s = rt.metrics.Series(key)
	rt.keysMu.Lock()
	rt.keys[key] = s
	rt.keysMu.Unlock()
	return s
}

// maxEventTypes bounds the distinct event types recorded under their own
// key; further types (a server inventing them) share "event:other", so a
// target cannot grow the metrics without bound.
const maxEventTypes = 256

// eventSeries returns the series of a websocket event type without
// building its key on every frame: "event:<type>", "event:other" for a
// frame no rule names and past maxEventTypes.
func (rt *Runtime) eventSeries(typ string) *metrics.Series {
	rt.keysMu.RLock()
	s, n := rt.events[typ], len(rt.events) // both under the lock: koi share the map
	rt.keysMu.RUnlock()
	if s != nil {
		return s
	}
	key := "event:" + typ
	switch {
	case typ == "":
		key = "event:other"
	case n >= maxEventTypes:
		return rt.series("event:other")
	}
	s = rt.series(key)
	rt.keysMu.Lock()
	rt.events[typ] = s
	rt.keysMu.Unlock()
	return s
}

// maxCloseCodes bounds the distinct close codes recorded under their own
// key; further codes share "ws:close:other". A target chooses the code
// it closes with, and there are two thousand it may use (3000–4999):
// each became a metric key, and a run's keys are few (the keeper keeps
// 500), so a target cycling codes crowded out the run's own.
const maxCloseCodes = 32

// closeSeries returns the series of a websocket close code:
// "ws:close:<code>", "ws:close:other" past maxCloseCodes.
func (rt *Runtime) closeSeries(code int) *metrics.Series {
	rt.keysMu.RLock()
	s, n := rt.closes[code], len(rt.closes)
	rt.keysMu.RUnlock()
	if s != nil {
		return s
	}
	if n >= maxCloseCodes {
		return rt.series("ws:close:other")
	}
	s = rt.series("ws:close:" + strconv.Itoa(code))
	rt.keysMu.Lock()
	rt.closes[code] = s
	rt.keysMu.Unlock()
	return s
}

// NewHTTPClient returns the client koi share: a Transport (requests run
// on the koi's own goroutines over pooled keep-alive connections) dialing
// with dial (nil: a plain net.Dialer), at most maxConnsPerHost connections
// to one target (0: no cap). It follows redirects as http.Client does.
func NewHTTPClient(maxConnsPerHost int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{Transport: NewTransport(maxConnsPerHost, dial)}
}

// NewDialer returns a websocket dialer sized for thousands of idle
// connections: a small read buffer per connection and write buffers taken
// from a shared pool only while a frame is being written.
func NewDialer() *websocket.Dialer {
	return &websocket.Dialer{
		Proxy:            nil,
		HandshakeTimeout: 15 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
	}
}
