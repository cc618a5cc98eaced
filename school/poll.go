package school

import (
	"errors"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// clockEstimator estimates keeper clock − school clock from poll round
// trips, NTP-style: offset = keeper_time − (send + receive)/2, trusting the
// sample with the shortest round trip among the last few.
type clockEstimator struct {
	samples [8]clockSample
	n       int
}

type clockSample struct {
	offset, rtt time.Duration
}

func (c *clockEstimator) add(send, recv, keeper time.Time) {
	rtt := recv.Sub(send)
	mid := send.Add(rtt / 2)
	c.samples[c.n%len(c.samples)] = clockSample{offset: keeper.Sub(mid), rtt: rtt}
	c.n++
}

// offset returns the best estimate and whether there is one.
func (c *clockEstimator) offset() (time.Duration, bool) {
	if c.n == 0 {
		return 0, false
	}
	best := c.samples[0]
	for i := 1; i < min(c.n, len(c.samples)); i++ {
		if c.samples[i].rtt < best.rtt {
			best = c.samples[i]
		}
	}
	return best.offset, true
}

// slowest returns the longest round trip among the last few answered
// polls (0 before the first).
func (c *clockEstimator) slowest() time.Duration {
	var d time.Duration
	for i := range min(c.n, len(c.samples)) {
		d = max(d, c.samples[i].rtt)
	}
	return d
}

// pollTimeout is how long one poll waits for the keeper's reply. A busy
// school (thousands of koi on a shared CPU) or a busy keeper can take
// longer than a poll interval to answer; giving up early and asking again
// only loses the reply on its way and, poll after poll, the lease. So a
// poll waits at least half the lease (room for one more try if a request
// was lost) and four times the slowest recent round trip, yet never past
// the lease: a school cut off from the keeper must pause by the time the
// keeper gives its koi away.
func pollTimeout(interval, lease, left, slowest time.Duration) time.Duration {
	d := max(interval, lease/2, 4*slowest)
	if left < d {
		d = max(left, minPollTimeout)
	}
	return d
}

// minPollTimeout is the shortest wait for a poll reply.
const minPollTimeout = 100 * time.Millisecond

// pollLoop polls the keeper every poll interval (jittered ±10%) and
// watches the lease.
func (s *School) pollLoop() {
	defer s.wg.Done()
	for {
		s.checkLease()
		s.pollOnce()
		s.checkLease()
		s.mu.Lock()
		d := s.pollInterval
		s.mu.Unlock()
		d = time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
		t := time.NewTimer(d)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *School) pollOnce() {
	req := s.status()
	data, err := wire.Encode(req)
	if err != nil {
		s.logLimited("poll-encode", "encoding poll request", "err", err)
		return
	}
	s.mu.Lock()
	timeout := pollTimeout(s.pollInterval, s.lease, s.lease-time.Since(s.lastPollOK), s.clock.slowest())
	s.mu.Unlock()
	send := s.cfg.Clock()
	msg, err := s.nc.Request(wire.SubjectPoll, data, timeout)
	recv := s.cfg.Clock()
	if err != nil {
		s.mu.Lock()
		s.pollFailures++
		s.mu.Unlock()
		if !errors.Is(err, nats.ErrConnectionClosed) {
			s.logLimited("poll-fail", "polling the keeper failed", "err", err)
		}
		return
	}
	var rep wire.PollReply
	if err := wire.Decode(msg.Data, &rep); err != nil {
		s.mu.Lock()
		s.badMessages++
		s.mu.Unlock()
		s.logLimited("poll-decode", "unreadable poll reply", "err", err)
		return
	}
	// A reply outside its bounds is not acted on: the peer may lie.
	if err := rep.Validate(); err != nil {
		s.mu.Lock()
		s.badMessages++
		s.mu.Unlock()
		s.logLimited("poll-invalid", "poll reply out of bounds; ignored", "err", err)
		return
	}
	if rep.Error != "" {
		s.logLimited("poll-error:"+rep.Error, "keeper refused the poll", "error", rep.Error)
		return
	}
	if err := s.verify.reply(&rep); err != nil {
		// Not the keeper's word: no reply at all (the lease pauses us).
		s.mu.Lock()
		s.badMessages++
		s.mu.Unlock()
		s.logLimited("poll-unverified", "poll reply without the keeper's signature ignored", "err", err)
		return
	}
	forms := s.prefetch(rep)
	s.mu.Lock()
	s.clock.add(send, recv, rep.KeeperTime)
	s.lastPollOK = time.Now()
	if rep.PollIntervalMS > 0 {
		s.pollInterval = wire.Duration(rep.PollIntervalMS)
	}
	if rep.LeaseMS > 0 {
		s.lease = wire.Duration(rep.LeaseMS)
	}
	s.selfStopped = false
	if s.selfPaused {
		s.selfPaused = false
		s.log.Info("keeper reachable again; following its switch", "state", rep.Switch.State, "epoch", rep.Switch.Epoch)
	}
	s.applySwitchLocked(rep.Switch)
	s.applyAssignmentsLocked(rep.Assignments)
	s.applyLaunchesLocked(rep.Launches, forms)
	s.forgetUnusedLocked(rep)
	s.mu.Unlock()
}

// checkLease pauses every koi when no poll has succeeded for the lease:
// a school that cannot hear the keeper cannot hear a stop either.
//
// After two leases without the keeper, the school also closes its koi:
// the keeper has given their ranges to other schools by then, and the
// same users must not hold two websockets at the target. They boot again,
// at the ramp, when the keeper assigns them anew.
func (s *School) checkLease() {
	s.mu.Lock()
	defer s.mu.Unlock()
	silent := time.Since(s.lastPollOK)
	if s.selfPaused && silent > 2*s.lease && !s.selfStopped {
		s.selfStopped = true
		s.log.Warn("no reply from the keeper for two leases: closing every koi (their ranges belong to other schools now)",
			"last_poll", s.lastPollOK.Format(time.RFC3339))
		for _, r := range s.runs {
			r.stopAll()
		}
		return
	}
	if s.selfPaused || silent <= s.lease {
		return
	}
	s.selfPaused = true
	s.log.Warn("lease expired: no reply from the keeper; pausing every koi until it answers",
		"last_poll", s.lastPollOK.Format(time.RFC3339), "lease", s.lease)
	for _, r := range s.runs {
		r.reconcile(s.effectiveLocked(r))
	}
}

// status builds the poll request: who we are and what we run.
func (s *School) status() *wire.PollRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	off, _ := s.clock.offset()
	req := &wire.PollRequest{
		School: s.cfg.ID, Software: s.cfg.Software, Capacity: s.cfg.Capacity,
		Clock: s.cfg.Clock(), Epoch: s.global.Epoch, SelfPaused: s.selfPaused,
		OffsetMS: float64(off) / float64(time.Millisecond),
	}
	ids := make([]string, 0, len(s.runs))
	for id := range s.runs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := s.runs[id]
		st := r.status()
		st.Epoch = s.runSwitch[id].Epoch
		req.Runs = append(req.Runs, st)
		req.KoiRunning += r.running()
		req.WebsocketsOpen += r.websockets()
	}
	req.Launches = s.launchStatusesLocked()
	return req
}

// launchStatusesLocked returns the status of every launch the school
// remembers, at most wire.MaxLaunchesPerMessage of them: those still
// running first, then the newest. A school remembers a launch for 10
// minutes after its window, so a burst of short launches could outgrow a
// request, and the keeper refuses a request out of bounds whole: lease,
// switch and all. A settled launch left out was reported settled before.
func (s *School) launchStatusesLocked() []wire.LaunchStatus {
	type entry struct {
		st      *launchState
		settled bool // read once: koi end concurrently
	}
	ls := make([]entry, 0, len(s.launches))
	for _, st := range s.launches {
		ls = append(ls, entry{st, st.settled()})
	}
	sort.Slice(ls, func(i, j int) bool {
		a, b := ls[i], ls[j]
		if a.settled != b.settled {
			return !a.settled
		}
		if !a.st.l.Start.Equal(b.st.l.Start) {
			return a.st.l.Start.After(b.st.l.Start)
		}
		return a.st.l.ID < b.st.l.ID
	})
	ls = ls[:min(len(ls), wire.MaxLaunchesPerMessage)]
	out := make([]wire.LaunchStatus, 0, len(ls))
	for _, e := range ls {
		out = append(out, e.st.status())
	}
	return out
}

// onControl applies a switch message pushed on koipond.control.
func (s *School) onControl(msg *nats.Msg) {
	var c wire.Control
	if err := wire.Decode(msg.Data, &c); err != nil {
		s.mu.Lock()
		s.badMessages++
		s.mu.Unlock()
		s.logLimited("control-decode", "unreadable control message", "err", err)
		return
	}
	if !c.State.Valid() {
		s.logLimited("control-state", "control message with unknown state", "state", c.State)
		return
	}
	if err := s.verify.control(&c); err != nil {
		s.mu.Lock()
		s.badMessages++
		s.mu.Unlock()
		s.logLimited("control-unverified", "switch without the keeper's signature ignored", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Run == "" {
		s.applySwitchLocked(c)
		return
	}
	if prev := s.runSwitch[c.Run]; c.Epoch > prev.Epoch {
		s.runSwitch[c.Run] = c
		if r := s.runs[c.Run]; r != nil {
			r.reconcile(s.effectiveLocked(r))
		}
	}
}

// applySwitchLocked applies a global switch if it is newer.
func (s *School) applySwitchLocked(c wire.Control) {
	if c.State == "" {
		c.State = wire.Running
	}
	if c.Epoch <= s.global.Epoch && s.global.State != "" {
		return
	}
	prev := s.global.State
	s.global = c
	if prev != c.State {
		s.log.Info("switch", "state", c.State, "epoch", c.Epoch, "by", c.By)
	}
	if c.State == wire.Stopped {
		s.stopStarted = time.Now()
	}
	for _, r := range s.runs {
		r.reconcile(s.effectiveLocked(r))
	}
}

// effectiveLocked combines the global switch, the run's switch and the
// lease into what the run's koi should do.
func (s *School) effectiveLocked(r *run) wire.State {
	rs := s.runSwitch[r.id]
	switch {
	case s.global.State == wire.Stopped || rs.State == wire.Stopped || r.pressure != "":
		return wire.Stopped // a run closed for memory pressure keeps its websockets closed too
	case s.global.State == wire.Paused || rs.State == wire.Paused || s.selfPaused:
		return wire.Paused
	}
	return wire.Running
}
