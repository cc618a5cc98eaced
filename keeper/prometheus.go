package keeper

import (
	"fmt"
	gometrics "runtime/metrics"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// WritePrometheus writes the keeper's metrics in the Prometheus text
// format (keeper/api serves them at /metrics).
func (k *Keeper) WritePrometheus(b *strings.Builder) {
	metric := func(name, typ, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("koipond_keeper_polls_total", "counter", "School polls answered.")
	fmt.Fprintf(b, "koipond_keeper_polls_total %d\n", k.stats.polls.Load())
	metric("koipond_keeper_poll_seconds_total", "counter", "Time spent answering polls.")
	fmt.Fprintf(b, "koipond_keeper_poll_seconds_total %g\n", time.Duration(k.stats.pollNanos.Load()).Seconds())
	metric("koipond_keeper_blobs_total", "counter", "Blob requests answered.")
	fmt.Fprintf(b, "koipond_keeper_blobs_total %d\n", k.stats.blobs.Load())
	metric("koipond_keeper_metrics_reports_total", "counter", "Metrics reports received.")
	fmt.Fprintf(b, "koipond_keeper_metrics_reports_total %d\n", k.stats.reports.Load())
	metric("koipond_keeper_controls_total", "counter", "Switch changes published.")
	fmt.Fprintf(b, "koipond_keeper_controls_total %d\n", k.stats.controls.Load())
	metric("koipond_keeper_rejected_total", "counter", "Messages rejected, by cause.")
	rej := k.stats.rejections()
	for _, cause := range k.stats.rejectionCauses() {
		fmt.Fprintf(b, "koipond_keeper_rejected_total{cause=%q} %d\n", cause, rej[cause])
	}
	r := k.store.Read()
	g := r.Switch(nil)
	metric("koipond_switch_epoch", "gauge", "Epoch of the global switch.")
	fmt.Fprintf(b, "koipond_switch_epoch %d\n", g.Epoch)
	metric("koipond_switch_state", "gauge", "1 for the global switch's position.")
	for _, st := range []wire.State{wire.Running, wire.Paused, wire.Stopped} {
		v := 0
		if g.State == st || (g.State == "" && st == wire.Running) {
			v = 1
		}
		fmt.Fprintf(b, "koipond_switch_state{state=%q} %d\n", st, v)
	}
	metric("koipond_schools", "gauge", "Schools by health.")
	health := map[string]int{"live": 0, "late": 0, "lost": 0}
	for _, s := range k.SchoolViews(r) {
		health[s.Health]++
	}
	for _, h := range []string{"live", "late", "lost"} {
		fmt.Fprintf(b, "koipond_schools{health=%q} %d\n", h, health[h])
	}
	metric("koipond_run_koi_target", "gauge", "Koi a run asks for.")
	for _, run := range r.ActiveRuns(nil) {
		fmt.Fprintf(b, "koipond_run_koi_target{run=%q} %d\n", run.ID, run.Koi)
	}
	metric("koipond_run_koi_assigned", "gauge", "Koi of a run assigned to schools.")
	for _, run := range r.ActiveRuns(nil) {
		v := k.RunView(r, run.ID)
		fmt.Fprintf(b, "koipond_run_koi_assigned{run=%q} %d\n", run.ID, v.Assigned)
	}
	k.promRuns(b, r) // koi by state moved to koipond_run_koi_running
	metric("koipond_launches", "gauge", "Launches by state.")
	for _, st := range []state.LaunchState{state.LaunchPending, state.LaunchRunning} {
		fmt.Fprintf(b, "koipond_launches{state=%q} %d\n", st, len(r.LaunchesIn(nil, st)))
	}
	k.writeNotifyMetrics(b, metric)
	mem, space, readErrs := k.agg.storeBytes()
	metric("koipond_keeper_history_store_bytes", "gauge", "Memory the runs' metrics histories hold outside the Go heap: 0 while they are kept in the history file.")
	fmt.Fprintf(b, "koipond_keeper_history_store_bytes %d\n", mem)
	metric("koipond_keeper_history_space_bytes", "gauge", "Size of the runs' metrics histories: their encoded buckets in 256-byte blocks, and blocks freed for reuse, in the history file (data directory, history/) or in memory.")
	fmt.Fprintf(b, "koipond_keeper_history_space_bytes %d\n", space)
	metric("koipond_keeper_history_read_errors_total", "counter", "History buckets that could not be read back from the history file: left out of the window that asked, or kept as they are when a late report was to be merged into them.")
	fmt.Fprintf(b, "koipond_keeper_history_read_errors_total %d\n", readErrs)
	if cs, ok := k.kv.CheckpointStats(); ok {
		metric("koipond_keeper_checkpoint_bucket_bytes", "gauge", "Bytes stored in the current bucket of the runs' metrics checkpoints, replaced ones included: what NATS re-reads for a checkpoint. The bucket is rolled into a new one past about 192 KiB.")
		fmt.Fprintf(b, "koipond_keeper_checkpoint_bucket_bytes %d\n", cs.Written)
		metric("koipond_keeper_checkpoint_rolls_total", "counter", "Checkpoint buckets rolled into a new one since the keeper started.")
		fmt.Fprintf(b, "koipond_keeper_checkpoint_rolls_total %d\n", cs.Rolls)
	}
	writeGoMemory(b, metric)
}

// goMemory is what the keeper says of its own Go memory: enough to tell a
// run's metrics (heap objects) from the runtime's headroom (heap goal) and
// from what the process holds beside its heap.
var goMemory = []struct{ name, sample, help string }{
	{"koipond_keeper_go_heap_objects_bytes", "/memory/classes/heap/objects:bytes", "Go heap held by objects, live or not yet swept."},
	{"koipond_keeper_go_heap_live_bytes", "/gc/heap/live:bytes", "Go heap held by live objects, as the last garbage collection found it."},
	{"koipond_keeper_go_heap_goal_bytes", "/gc/heap/goal:bytes", "Heap size at which the next garbage collection starts."},
	{"koipond_keeper_go_memory_bytes", "/memory/classes/total:bytes", "All memory the Go runtime has mapped (heap, stacks, runtime)."},
	{"koipond_keeper_go_heap_unused_bytes", "/memory/classes/heap/unused:bytes", "Go heap in spans that hold objects but not used by them (fragmentation)."},
	{"koipond_keeper_go_heap_free_bytes", "/memory/classes/heap/free:bytes", "Go heap free and not yet returned to the OS (counted in RSS)."},
	{"koipond_keeper_go_heap_released_bytes", "/memory/classes/heap/released:bytes", "Go heap free and returned to the OS (not in RSS)."},
	{"koipond_keeper_go_gc_percent", "/gc/gogc:percent", "Go collector target (GOGC, koipond keeper --gc-percent): how many percent the heap may grow over its live data before a collection."},
}

func writeGoMemory(b *strings.Builder, metric func(name, typ, help string)) {
	samples := make([]gometrics.Sample, len(goMemory))
	for i, m := range goMemory {
		samples[i].Name = m.sample
	}
	gometrics.Read(samples)
	for i, m := range goMemory {
		if samples[i].Value.Kind() != gometrics.KindUint64 {
			continue // not in this Go version
		}
		metric(m.name, "gauge", m.help)
		fmt.Fprintf(b, "%s %d\n", m.name, samples[i].Value.Uint64())
	}
}
