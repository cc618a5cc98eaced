package school

import "github.com/koipond/koipond/metrics"

// exposure returns how long the run's koi ran their background schedule
// since the previous call (metrics.Exposure): the spans that ended (paused,
// stopped koi, even those since retired) and the running spans of every
// member, folded up to now. Stopping koi have nothing running to fold:
// stopMemberLocked pauses each before it leaves the members. A refused
// run, with no runtime, measures nothing (nil).
func (r *run) exposure() *metrics.Exposure {
	if r.rt == nil {
		return nil
	}
	e := &metrics.Exposure{}
	r.rt.TakeExposure(e)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.members {
		m.k.FoldExposure(e)
	}
	return e
}
