package pond

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is the JSON document GET /stats returns. Scripts depend on the
// top-level field names; add fields, never rename them.
type Stats struct {
	UptimeSecs        float64 `json:"uptime_secs"`
	WebsocketsOpen    int64   `json:"websockets_open"`
	WebsocketsTotal   uint64  `json:"websockets_total"`
	RequestsTotal     uint64  `json:"requests_total"`
	EventsSent        uint64  `json:"events_sent"`
	SlowConsumerDrops uint64  `json:"slow_consumer_drops"`
	Disconnects       uint64  `json:"disconnects"`
	BadFrames         uint64  `json:"bad_frames"`
	MessagesPosted    uint64  `json:"messages_posted"`
	RateLimited       uint64  `json:"rate_limited"`
	// Requests counts API requests per method and HTTP status ("200",
	// "429", …). Unknown methods count under "unknown", websocket upgrades
	// under "ws".
	Requests map[string]map[string]uint64 `json:"requests"`
	// Errors counts ok:false replies per method and error code.
	Errors map[string]map[string]uint64 `json:"errors"`
}

// stats holds the live counters behind Stats.
type stats struct {
	start time.Time

	wsOpen         atomic.Int64
	wsTotal        atomic.Uint64
	requestsTotal  atomic.Uint64
	eventsSent     atomic.Uint64
	slowDrops      atomic.Uint64
	disconnects    atomic.Uint64
	badFrames      atomic.Uint64
	messagesPosted atomic.Uint64
	rateLimited    atomic.Uint64

	mu   sync.Mutex // a leaf lock
	reqs map[reqKey]uint64
	errs map[errKey]uint64
}

type reqKey struct {
	method string
	status int
}

type errKey struct {
	method, code string
}

func newStats() *stats {
	return &stats{start: time.Now(), reqs: map[reqKey]uint64{}, errs: map[errKey]uint64{}}
}

// request counts one finished request; code is the error code or "".
func (s *stats) request(method string, status int, code string) {
	s.requestsTotal.Add(1)
	if status == 429 {
		s.rateLimited.Add(1)
	}
	s.mu.Lock()
	s.reqs[reqKey{method, status}]++
	if code != "" {
		s.errs[errKey{method, code}]++
	}
	s.mu.Unlock()
}

// snapshot returns the current Stats.
func (s *stats) snapshot() Stats {
	st := Stats{
		UptimeSecs:        time.Since(s.start).Seconds(),
		WebsocketsOpen:    s.wsOpen.Load(),
		WebsocketsTotal:   s.wsTotal.Load(),
		RequestsTotal:     s.requestsTotal.Load(),
		EventsSent:        s.eventsSent.Load(),
		SlowConsumerDrops: s.slowDrops.Load(),
		Disconnects:       s.disconnects.Load(),
		BadFrames:         s.badFrames.Load(),
		MessagesPosted:    s.messagesPosted.Load(),
		RateLimited:       s.rateLimited.Load(),
		Requests:          map[string]map[string]uint64{},
		Errors:            map[string]map[string]uint64{},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, n := range s.reqs {
		m := st.Requests[k.method]
		if m == nil {
			m = map[string]uint64{}
			st.Requests[k.method] = m
		}
		m[strconv.Itoa(k.status)] = n
	}
	for k, n := range s.errs {
		m := st.Errors[k.method]
		if m == nil {
			m = map[string]uint64{}
			st.Errors[k.method] = m
		}
		m[k.code] = n
	}
	return st
}

// collector exposes stats to Prometheus, read at scrape time.
type collector struct{ s *stats }

var _ prometheus.Collector = collector{}

var (
	descRequests    = prometheus.NewDesc("pond_requests_total", "API requests by method and HTTP status.", []string{"method", "status"}, nil)
	descErrors      = prometheus.NewDesc("pond_api_errors_total", "ok:false replies by method and error code.", []string{"method", "error"}, nil)
	descWSOpen      = prometheus.NewDesc("pond_websockets_open", "Open websocket connections.", nil, nil)
	descWSTotal     = prometheus.NewDesc("pond_websockets_total", "Websocket connections accepted.", nil, nil)
	descEvents      = prometheus.NewDesc("pond_events_sent_total", "Websocket events written.", nil, nil)
	descSlow        = prometheus.NewDesc("pond_slow_consumer_drops_total", "Websockets dropped for not keeping up.", nil, nil)
	descDisconnects = prometheus.NewDesc("pond_disconnects_total", "Websockets closed, for any reason.", nil, nil)
	descBadFrames   = prometheus.NewDesc("pond_bad_frames_total", "Malformed, unsupported or oversized client frames.", nil, nil)
	descPosted      = prometheus.NewDesc("pond_messages_posted_total", "Messages posted.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descErrors, descWSOpen, descWSTotal, descEvents, descSlow, descDisconnects, descBadFrames, descPosted} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.snapshot()
	for m, byStatus := range st.Requests {
		for code, n := range byStatus {
			ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), m, code)
		}
	}
	for m, byCode := range st.Errors {
		for code, n := range byCode {
			ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(n), m, code)
		}
	}
	ch <- prometheus.MustNewConstMetric(descWSOpen, prometheus.GaugeValue, float64(st.WebsocketsOpen))
	ch <- prometheus.MustNewConstMetric(descWSTotal, prometheus.CounterValue, float64(st.WebsocketsTotal))
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(st.EventsSent))
	ch <- prometheus.MustNewConstMetric(descSlow, prometheus.CounterValue, float64(st.SlowConsumerDrops))
	ch <- prometheus.MustNewConstMetric(descDisconnects, prometheus.CounterValue, float64(st.Disconnects))
	ch <- prometheus.MustNewConstMetric(descBadFrames, prometheus.CounterValue, float64(st.BadFrames))
	ch <- prometheus.MustNewConstMetric(descPosted, prometheus.CounterValue, float64(st.MessagesPosted))
}
