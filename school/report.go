package school

import (
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
// bounded whatever the request rate) and publishes them in one message.
func (s *School) report() {
	s.mu.Lock()
	runs := make([]*run, 0, len(s.runs))
	for _, r := range s.runs {
		runs = append(runs, r)
	}
	s.reportSeq++
	seq := s.reportSeq
	start := s.lastReportEnd
	s.mu.Unlock()
	sort.Slice(runs, func(i, j int) bool { return runs[i].id < runs[j].id })
	end := time.Now()
	rep := &wire.MetricsReport{School: s.cfg.ID, Seq: seq, Start: start, End: end}
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
		rep.Runs = append(rep.Runs, wire.RunMetrics{Run: r.id, Snapshot: b, Koi: st.Koi,
			FramesIn: uint64(tr.Events), BytesIn: uint64(tr.BytesIn), FramesOut: uint64(tr.FramesOut), BytesOut: uint64(tr.BytesOut)})
	}
	s.mu.Lock()
	s.lastReportEnd = end
	s.mu.Unlock()
	if len(rep.Runs) == 0 {
		return
	}
	data, err := wire.Encode(rep)
	if err != nil {
		s.logLimited("metrics-encode", "encoding metrics report", "err", err)
		return
	}
	if err := s.nc.Publish(wire.SubjectMetrics, data); err != nil {
		s.logLimited("metrics-publish", "publishing metrics", "err", err)
	}
}
