package school

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is a school's state for /healthz and the CLI.
type Status struct {
	ID             string           `json:"id"`
	NATSConnected  bool             `json:"nats_connected"`
	Switch         wire.State       `json:"switch"`
	Epoch          uint64           `json:"epoch"`
	SelfPaused     bool             `json:"self_paused"`
	LastPoll       time.Time        `json:"last_poll"`
	ClockOffsetMS  float64          `json:"clock_offset_ms"`
	KoiRunning     int              `json:"koi_running"`
	WebsocketsOpen int              `json:"websockets_open"`
	Runs           []wire.RunStatus `json:"runs"`
	PollFailures   int              `json:"poll_failures"`
	BadMessages    int              `json:"bad_messages"`
	Memory         MemoryStatus     `json:"memory"`
}

// Status reports the school's state.
func (s *School) Status() Status {
	req := s.status()
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{ID: s.cfg.ID, NATSConnected: s.nc.IsConnected(), Switch: s.global.State, Epoch: s.global.Epoch,
		SelfPaused: s.selfPaused, LastPoll: s.lastPollOK, ClockOffsetMS: req.OffsetMS, KoiRunning: req.KoiRunning,
		WebsocketsOpen: req.WebsocketsOpen, Runs: req.Runs, PollFailures: s.pollFailures, BadMessages: s.badMessages,
		Memory: s.memoryStatus()}
}

// ServeHTTP starts /healthz (JSON status; 503 while NATS is down or the
// school has paused itself) and /metrics (Prometheus) on addr. It binds
// synchronously and serves until the school closes.
func (s *School) ServeHTTP(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("school: listening on %s: %w", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{s: s}, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := s.Status()
		w.Header().Set("Content-Type", "application/json")
		if !st.NATSConnected || st.SelfPaused {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("status server", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	return ln.Addr(), nil
}

var (
	descKoi        = prometheus.NewDesc("koipond_school_koi", "Koi on this school by run and state.", []string{"run", "state"}, nil)
	descWebsockets = prometheus.NewDesc("koipond_school_websockets_open", "Open koi websockets.", nil, nil)
	descSelfPaused = prometheus.NewDesc("koipond_school_self_paused", "1 while the school has paused itself (lease expired).", nil, nil)
	descEpoch      = prometheus.NewDesc("koipond_school_switch_epoch", "Epoch of the global switch applied.", nil, nil)
	descPollFail   = prometheus.NewDesc("koipond_school_poll_failures_total", "Polls that got no usable reply.", nil, nil)
	descBadMsg     = prometheus.NewDesc("koipond_school_bad_messages_total", "Wire messages that could not be decoded.", nil, nil)
	descMemLimit   = prometheus.NewDesc("koipond_school_memory_limit_bytes", "The school's memory ceiling (Go soft limit).", nil, nil)
	descMemInUse   = prometheus.NewDesc("koipond_school_memory_in_use_bytes", "Memory the Go runtime counts against the ceiling, at the last sample.", nil, nil)
	descReplyUse   = prometheus.NewDesc("koipond_school_reply_budget_in_use_bytes", "Reply bytes (and their decoded size) koi hold reserved now.", nil, nil)
	descReplyRef   = prometheus.NewDesc("koipond_school_replies_refused_total", "Replies dropped because the school-wide reply budget was exhausted.", nil, nil)
	descPressure   = prometheus.NewDesc("koipond_school_pressure_pauses_total", "Runs whose koi the school closed near its memory ceiling.", nil, nil)
	descReclaims   = prometheus.NewDesc("koipond_school_memory_reclaims_total", "Collections the school forced at its high memory mark before judging a run.", nil, nil)
)

type collector struct{ s *School }

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKoi, descWebsockets, descSelfPaused, descEpoch, descPollFail, descBadMsg,
		descMemLimit, descMemInUse, descReplyUse, descReplyRef, descPressure, descReclaims} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	for _, r := range st.Runs {
		for state, n := range map[string]int{"booting": r.Koi.Booting, "connected": r.Koi.Connected,
			"reconnecting": r.Koi.Reconnecting, "failed": r.Koi.Failed, "paused": r.Koi.Paused} {
			ch <- prometheus.MustNewConstMetric(descKoi, prometheus.GaugeValue, float64(n), r.Run, state)
		}
	}
	b := 0.0
	if st.SelfPaused {
		b = 1
	}
	ch <- prometheus.MustNewConstMetric(descWebsockets, prometheus.GaugeValue, float64(st.WebsocketsOpen))
	ch <- prometheus.MustNewConstMetric(descSelfPaused, prometheus.GaugeValue, b)
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(st.Epoch))
	ch <- prometheus.MustNewConstMetric(descPollFail, prometheus.CounterValue, float64(st.PollFailures))
	ch <- prometheus.MustNewConstMetric(descBadMsg, prometheus.CounterValue, float64(st.BadMessages))
	m := st.Memory
	ch <- prometheus.MustNewConstMetric(descMemLimit, prometheus.GaugeValue, float64(m.Limit))
	ch <- prometheus.MustNewConstMetric(descMemInUse, prometheus.GaugeValue, float64(m.InUse))
	ch <- prometheus.MustNewConstMetric(descReplyUse, prometheus.GaugeValue, float64(m.ReplyInFlight))
	ch <- prometheus.MustNewConstMetric(descReplyRef, prometheus.CounterValue, float64(m.RepliesRefused))
	ch <- prometheus.MustNewConstMetric(descPressure, prometheus.CounterValue, float64(m.PressurePauses))
	ch <- prometheus.MustNewConstMetric(descReclaims, prometheus.CounterValue, float64(m.Reclaims))
}
