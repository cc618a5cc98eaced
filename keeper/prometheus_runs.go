package keeper

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
)

// Per-run series on /metrics.
const (
	// promRecent keeps ended runs on /metrics this long, so a dashboard
	// shows how a run ended.
	promRecent = 10 * time.Minute
	// promLatencyWindow is the window of the latency quantile gauges.
	promLatencyWindow = 10 * time.Second
)

// promQuantiles are the latency quantiles exported per key.
var promQuantiles = []struct {
	q     float64
	label string
}{{0.5, "0.5"}, {0.9, "0.9"}, {0.95, "0.95"}, {0.99, "0.99"}}

// promEscaper escapes a label value for the Prometheus text format:
// backslash, double quote and line feed. Built once: a Replacer builds its
// tables on first use, and /metrics escapes every key of every run.
var promEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func promEscape(s string) string { return promEscaper.Replace(s) }

// promRuns writes the per-run series for active runs and runs ended in
// the last promRecent: koi (target), koi running by state, websockets
// open, requests by key and outcome since the run started (a counter,
// restored from the run's checkpoint after a keeper restart), and latency
// quantiles per key over the last promLatencyWindow.
//
// Cardinality is bounded: a run has at most maxKeys (500) metric keys (the
// aggregator drops more), each with at most metrics.NumOutcomes outcome
// series and 4 quantile series, and only active and recently ended runs
// are listed.
func (k *Keeper) promRuns(b *strings.Builder, r *state.Reader) {
	metric := func(name, typ, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	now := time.Now()
	runs := r.ActiveRuns(nil)
	for _, run := range r.RunsIn(nil, state.RunStopped) {
		if now.Sub(run.EndedAt) <= promRecent {
			runs = append(runs, run)
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].ID < runs[j].ID })
	type view struct {
		run    *state.Run
		labels string
		v      *RunView
	}
	views := make([]view, 0, len(runs))
	for _, run := range runs {
		views = append(views, view{run, fmt.Sprintf(`run="%s",name="%s"`, promEscape(run.ID), promEscape(run.Name)), k.RunView(r, run.ID)})
	}
	metric("koipond_run_koi", "gauge", "Koi a run asks for (its target), for active and recently ended runs.")
	for _, v := range views {
		n := v.run.Koi
		if !v.run.Active() {
			n = 0
		}
		fmt.Fprintf(b, "koipond_run_koi{%s} %d\n", v.labels, n)
	}
	metric("koipond_run_koi_running", "gauge", "Koi of a run as schools report them, by state.")
	for _, v := range views {
		kn := v.v.KoiNow
		for _, s := range []struct {
			state string
			n     int
		}{{"booting", kn.Booting}, {"connected", kn.Connected}, {"reconnecting", kn.Reconnecting}, {"failed", kn.Failed}, {"paused", kn.Paused}} {
			fmt.Fprintf(b, "koipond_run_koi_running{%s,state=\"%s\"} %d\n", v.labels, s.state, s.n)
		}
	}
	metric("koipond_run_websockets_open", "gauge", "Koi of a run holding an open websocket (connected or paused), as schools report them.")
	for _, v := range views {
		fmt.Fprintf(b, "koipond_run_websockets_open{%s} %d\n", v.labels, v.v.KoiNow.Connected+v.v.KoiNow.Paused)
	}
	metric("koipond_run_requests_total", "counter", "Observations per metric key and outcome since the run started (calls, events, connects).")
	for _, v := range views {
		for _, kc := range k.agg.totalCounts(v.run.ID) {
			for o, c := range kc.counts {
				if c > 0 {
					fmt.Fprintf(b, "koipond_run_requests_total{%s,key=\"%s\",outcome=\"%s\"} %d\n", v.labels, promEscape(kc.key), metrics.Outcome(o), c)
				}
			}
		}
	}
	metric("koipond_run_history_bytes", "gauge", "Bytes of a run's encoded metrics history, in the keeper's history file (its zstd buckets of seconds, 10 s, minutes and 5 minutes; it grows as the tiers fill, for a day, up to 10 MiB).")
	for _, v := range views {
		if n, ok := k.agg.historyBytes(v.run.ID); ok {
			fmt.Fprintf(b, "koipond_run_history_bytes{%s} %d\n", v.labels, n)
		}
	}
	k.promGuard(b, runs)
	metric("koipond_run_latency_seconds", "gauge", "Latency quantiles per metric key over the last 10 s.")
	to := now.Add(time.Second).Truncate(time.Second)
	for _, v := range views {
		snap, _ := k.agg.window(v.run.ID, to.Add(-promLatencyWindow), to)
		for _, key := range snap.Keys() {
			ss := snap.Series[key]
			for _, q := range promQuantiles {
				if d, ok := ss.Quantile(q.q); ok {
					fmt.Fprintf(b, "koipond_run_latency_seconds{%s,key=\"%s\",quantile=\"%s\"} %g\n", v.labels, promEscape(key), q.label, d.Seconds())
				}
			}
		}
	}
}
