package school

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/koipond/koipond/wire"
)

// reportLoop publishes one metrics report per interval (jittered ±10%).
func (s *School) reportLoop() {
	defer s.wg.Done()
	for {
		d := time.Duration(float64(s.cfg.MetricsInterval) * (0.9 + 0.2*rand.Float64()))
		t := time.NewTimer(d)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.report()
	}
}

// report snapshots every run's recorder (resetting it, so memory stays
// bounded whatever the request rate) and publishes them, in as few
// messages as fit the NATS connection's payload limit (splitReport).
func (s *School) report() {
	s.mu.Lock()
	runs := make([]*run, 0, len(s.runs))
	for _, r := range s.runs {
		runs = append(runs, r)
	}
	start := s.lastReportEnd
	s.mu.Unlock()
	sort.Slice(runs, func(i, j int) bool { return runs[i].id < runs[j].id })
	end := time.Now()
	var all []wire.RunMetrics
	for _, r := range runs {
		snap := r.rec.Snapshot()
		snap.Exposure = r.exposure()
		r.reasons.note(s.log, snap, end)
		b, err := snap.MarshalBinary()
		if err != nil {
			s.logLimited("metrics-encode", "encoding metrics", "err", err)
			continue
		}
		tr := r.trafficDelta()
		st := r.status()
		all = append(all, wire.RunMetrics{Run: r.id, Snapshot: b, Koi: st.Koi,
			FramesIn: uint64(tr.Events), BytesIn: uint64(tr.BytesIn), FramesOut: uint64(tr.FramesOut), BytesOut: uint64(tr.BytesOut)})
	}
	s.mu.Lock()
	s.lastReportEnd = end
	s.mu.Unlock()
	if len(all) == 0 {
		return
	}
	limit := defaultMaxPayload
	if n := s.nc.MaxPayload(); n > 0 {
		limit = int(n)
	}
	parts, dropped := splitReport(wire.MetricsReport{School: s.cfg.ID, Start: start, End: end}, all, limit)
	for _, rm := range dropped {
		s.logLimited("metrics-too-large:"+rm.Run, "a run's metrics for one interval are too large to send: the interval is lost for it",
			"run", rm.Run, "snapshot_bytes", len(rm.Snapshot), "max_payload", limit, "max_snapshot", wire.MaxSnapshot)
	}
	for _, rep := range parts {
		s.mu.Lock()
		s.reportSeq++
		rep.Seq = s.reportSeq
		s.mu.Unlock()
		data, err := wire.Encode(rep)
		if err != nil {
			s.logLimited("metrics-encode", "encoding metrics report", "err", err)
			continue
		}
		if err := s.nc.Publish(wire.SubjectMetrics, data); err != nil {
			s.logLimited("metrics-publish", "publishing metrics", "err", err)
		}
	}
}

// defaultMaxPayload is NATS's default payload limit, assumed while the
// connection has not said its own.
const defaultMaxPayload = 1 << 20

// splitReport packs runs' metrics, in order, into reports like base
// (Seq left for the caller) that each encode to at most limit bytes and
// carry at most wire.MaxRunsPerMessage runs. A run that cannot be sent
// at all (its snapshot alone over limit or over wire.MaxSnapshot) is
// returned in dropped, so that one run's flood costs only its own
// interval, not every run's.
func splitReport(base wire.MetricsReport, runs []wire.RunMetrics, limit int) (parts []*wire.MetricsReport, dropped []wire.RunMetrics) {
	head := base
	head.Seq = math.MaxUint64 // the widest a sequence number encodes
	head.Runs = []wire.RunMetrics{}
	empty, err := wire.Encode(&head)
	if err != nil {
		return nil, runs
	}
	overhead := len(empty)
	var cur *wire.MetricsReport
	size := 0
	for _, rm := range runs {
		b, err := json.Marshal(&rm)
		n := len(b) + 1 // and the comma before it
		if err != nil || len(rm.Snapshot) > wire.MaxSnapshot || overhead+n > limit {
			dropped = append(dropped, rm)
			continue
		}
		if cur == nil || size+n > limit || len(cur.Runs) == wire.MaxRunsPerMessage {
			p := base
			p.Runs = nil
			cur = &p
			parts = append(parts, cur)
			size = overhead
		}
		cur.Runs = append(cur.Runs, rm)
		size += n
	}
	return parts, dropped
}
