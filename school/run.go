package school

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
	"golang.org/x/time/rate"
)

// run is one assigned run on this school: its runtime and its koi.
type run struct {
	s    *School
	id   string
	spec wire.RunSpec
	rt   *koi.Runtime
	rec  *metrics.Recorder
	// reasons logs the run's new failure reasons (report goroutine only).
	reasons *reasonLog

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}

	mu       sync.Mutex
	from, to int
	rampRate float64
	limiter  *rate.Limiter
	state    wire.State
	members  map[int]*member
	stopping []*member // stopped, not yet done
	cursor   int       // next index the ramp checks
	refused  string
	removed  bool
	epoch    uint64
	token    *behaviors.SpecTemplate
	userID   *behaviors.SpecTemplate
	ws       *wsTarget
	activity behaviors.Activity
	rng      *rand.Rand
	traffic  koi.Stats // totals of stopped koi, for traffic deltas
	reported koi.Stats // totals at the last report

	// Memory pressure (see pressure.go), guarded by School.mu: while
	// pressure is set the run's koi are closed on this school.
	pressure      string
	pressureAt    time.Time
	pressureUntil time.Time
	lastRead      uint64 // rt.ReplyBytesRead at the previous sample
}

type member struct {
	k      *koi.Koi
	cancel context.CancelFunc
	done   chan struct{}
}

// prefetch fetches, outside the lock, the behavior sets a reply assigns
// and the formations of its launches not yet applied that the school
// does not have, each once however many assignments or launches name it,
// and parses them, also outside the lock: a reply may carry a thousand
// launches of one large formation or many runs of large sets, and a stop
// on the control subject waits for the lock. Sets are kept (forgetUnused-
// Locked); formations are returned for this reply's launches alone (the
// koi of a launch hold its sequence).
func (s *School) prefetch(rep wire.PollReply) map[string]parsedFormation {
	var sets, forms []string
	seen := map[string]bool{}
	s.mu.Lock()
	for _, a := range rep.Assignments {
		h := a.Spec.BehaviorSet
		if _, ok := s.sets[h]; !ok && h != "" && !seen[h] {
			seen[h] = true
			sets = append(sets, h)
		}
	}
	for _, l := range rep.Launches {
		_, applied := s.launches[l.ID]
		if h := l.Formation; !applied && h != "" && !seen[h] {
			seen[h] = true
			forms = append(forms, h)
		}
	}
	s.mu.Unlock()
	for _, h := range sets {
		if files, ok := s.fetch(wire.BlobBehaviorSet, h); ok {
			ps := parseSet(files)
			s.mu.Lock()
			s.sets[h] = ps
			s.mu.Unlock()
		}
	}
	parsed := make(map[string]parsedFormation, len(forms))
	for _, h := range forms {
		if files, ok := s.fetch(wire.BlobFormation, h); ok {
			parsed[h] = parseFormation(files)
		}
	}
	return parsed
}

// fetch is fetchBlob with its failure logged.
func (s *School) fetch(kind wire.BlobKind, hash string) ([]wire.File, bool) {
	files, err := s.fetchBlob(kind, hash)
	if err != nil {
		s.logLimited("blob:"+hash, "fetching from the keeper failed", "kind", kind, "hash", hash, "err", err)
		return nil, false
	}
	return files, true
}

// parsedSet is a fetched behavior set, parsed once for every run of it
// (runs only read it): the set, or why it is invalid.
type parsedSet struct {
	set *behaviors.Set
	err string
}

func parseSet(files []wire.File) parsedSet {
	set, diags := behaviors.Parse(toFiles(files)...)
	if set == nil {
		return parsedSet{err: firstLine(diags.Error())}
	}
	return parsedSet{set: set}
}

// parsedFormation is a fetched formation, parsed once for every launch of
// it: the formation, or why it is invalid.
type parsedFormation struct {
	f   *formations.Formation
	err string
}

func parseFormation(files []wire.File) parsedFormation {
	if len(files) != 1 {
		return parsedFormation{err: fmt.Sprintf("the keeper sent %d files for it, want 1", len(files))}
	}
	f, diags := formations.Parse(behaviors.File{Name: files[0].Name, Data: files[0].Data})
	if f == nil {
		return parsedFormation{err: firstLine(diags.Error())}
	}
	return parsedFormation{f: f}
}

// forgetUnusedLocked drops the behavior sets the keeper's latest reply no
// longer names: a school that runs for days keeps only what its current
// runs need. A run already started holds its parsed set; a set named
// again is fetched again.
func (s *School) forgetUnusedLocked(rep wire.PollReply) {
	used := map[string]bool{}
	for _, a := range rep.Assignments {
		used[a.Spec.BehaviorSet] = true
	}
	for h := range s.sets {
		if !used[h] {
			delete(s.sets, h)
		}
	}
}

func (s *School) fetchBlob(kind wire.BlobKind, hash string) ([]wire.File, error) {
	data, err := wire.Encode(&wire.BlobRequest{Kind: kind, Hash: hash})
	if err != nil {
		return nil, err
	}
	msg, err := s.nc.Request(wire.SubjectBlob, data, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var rep wire.BlobReply
	if err := wire.Decode(msg.Data, &rep); err != nil {
		return nil, err
	}
	if err := rep.Validate(); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("keeper: %s", rep.Error)
	}
	if rep.Hash != hash || len(rep.Files) == 0 {
		return nil, fmt.Errorf("keeper sent %d files for hash %q, asked %q", len(rep.Files), rep.Hash, hash)
	}
	return rep.Files, nil
}

func toFiles(ws []wire.File) []behaviors.File {
	out := make([]behaviors.File, len(ws))
	for i, f := range ws {
		out[i] = behaviors.File{Name: f.Name, Data: f.Data}
	}
	return out
}

// applyAssignmentsLocked makes the school run exactly what it is assigned.
func (s *School) applyAssignmentsLocked(as []wire.Assignment) {
	seen := map[string]bool{}
	budget := s.cfg.Capacity
	for _, a := range as {
		seen[a.Run] = true
		r := s.runs[a.Run]
		if r != nil && r.refused != "" {
			// Try again: the blob may have arrived, the list may have changed.
			r.cancel()
			delete(s.runs, a.Run)
			r = nil
		}
		if r != nil && (r.removed || !sameSpec(r.spec, a.Spec)) {
			// The spec changed (or a removed run came back): start over.
			r.stopAll()
			delete(s.runs, a.Run)
			s.drainLocked(r)
			r = nil
		}
		if r == nil {
			r = s.newRunLocked(a)
			s.runs[a.Run] = r
		}
		if a.Switch.Epoch > s.runSwitch[a.Run].Epoch {
			s.runSwitch[a.Run] = a.Switch
		}
		from, to := a.From, a.To
		if n := to - from; n > budget {
			s.logLimited("capacity:"+a.Run, "assignment exceeds capacity; running part of it", "run", a.Run, "assigned", n, "capacity_left", budget)
			to = from + max(0, budget)
		}
		budget -= max(0, to-from)
		r.setRange(from, to, a.Ramp)
		r.reconcile(s.effectiveLocked(r))
	}
	for id, r := range s.runs {
		if !seen[id] && !r.removed {
			s.log.Info("run no longer assigned here; stopping its koi", "run", id)
			r.removed = true
			r.stopAll()
			s.drainLocked(r)
		}
	}
}

// sameSpec compares specs (Tokens makes RunSpec not comparable with ==).
func sameSpec(a, b wire.RunSpec) bool {
	return slices.Equal(a.Tokens, b.Tokens) && a.Name == b.Name && a.BehaviorSet == b.BehaviorSet &&
		a.APIBase == b.APIBase && a.WebsocketURL == b.WebsocketURL && a.Token == b.Token &&
		a.UserID == b.UserID && a.TimeScale == b.TimeScale && a.ActivitySigma == b.ActivitySigma &&
		slices.Equal(a.WebsocketSubprotocols, b.WebsocketSubprotocols) && maps.Equal(a.WebsocketHeaders, b.WebsocketHeaders)
}

// drainLocked forgets a run once its koi have all stopped.
func (s *School) drainLocked(r *run) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		r.waitStopped(time.Minute)
		r.cancel()
		s.mu.Lock()
		if s.runs[r.id] == r && r.removed {
			delete(s.runs, r.id)
		}
		s.mu.Unlock()
	}()
}

// newRunLocked prepares a run; a run that cannot be run (no behavior set,
// a broken one, a target outside the allow list) is kept with its refusal,
// reported to the keeper, and never contacted.
func (s *School) newRunLocked(a wire.Assignment) *run {
	r := &run{s: s, id: a.Run, spec: a.Spec, members: map[int]*member{}, wake: make(chan struct{}, 1),
		state: wire.Stopped, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		activity: behaviors.Activity{Sigma: a.Spec.ActivitySigma}, rec: &metrics.Recorder{},
		reasons: newReasonLog(a.Run)}
	r.ctx, r.cancel = context.WithCancel(s.ctx)
	refuse := func(format string, args ...any) *run {
		r.refused = wireText(fmt.Sprintf(format, args...))
		s.logLimited("refused:"+a.Run, "refusing run", "run", a.Run, "reason", r.refused)
		return r
	}
	if err := s.allow.URL(a.Spec.APIBase); a.Spec.APIBase != "" && err != nil {
		return refuse("api_base: %v", err)
	}
	if err := s.allow.URL(a.Spec.WebsocketURL); a.Spec.WebsocketURL != "" && err != nil {
		return refuse("websocket_url: %v", err)
	}
	ps, ok := s.sets[a.Spec.BehaviorSet]
	if !ok {
		return refuse("behavior set %s could not be fetched from the keeper", short(a.Spec.BehaviorSet))
	}
	if ps.set == nil {
		return refuse("behavior set %s is invalid: %v", short(a.Spec.BehaviorSet), ps.err)
	}
	set := ps.set
	var err error
	if r.token, err = indexTemplate("token", a.Spec.Token); err != nil {
		return refuse("%v", err)
	}
	if r.userID, err = indexTemplate("user_id", a.Spec.UserID); err != nil {
		return refuse("%v", err)
	}
	if errs := r.activity.Validate(); len(errs) > 0 {
		return refuse("%v", errs[0])
	}
	if r.ws, err = newWSTarget(a.Spec); err != nil {
		return refuse("%v", err)
	}
	rt, err := koi.NewRuntime(koi.RuntimeConfig{
		Set: set, APIBase: a.Spec.APIBase, Websocket: r.ws.shared(),
		TimeScale: a.Spec.TimeScale, Metrics: r.rec, HTTPClient: s.http, Dialer: s.dialer,
		ReplyBudget: s.budget, FireGranularity: s.cfg.FireGranularity,
	})
	if err != nil {
		return refuse("%v", err)
	}
	r.rt = rt
	s.wg.Add(1)
	go r.rampLoop()
	s.log.Info("run assigned", "run", a.Run, "name", a.Spec.Name, "from", a.From, "to", a.To, "ramp", a.Ramp,
		"behaviors", len(set.Behaviors), "api_base", a.Spec.APIBase)
	return r
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// wireText cuts s to wire.MaxText bytes at a rune boundary, ending in
// "…": refusals and launch errors travel in every poll request, and the
// keeper refuses a request with a longer one whole (lease and all).
func wireText(s string) string {
	if len(s) <= wire.MaxText {
		return s
	}
	return behaviors.ClipTo(s, wire.MaxText-len("…"))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// indexTemplate compiles a {{.Index}} template (token, user id), bounded
// like every run spec template (behaviors.ParseSpecTemplate).
func indexTemplate(name, src string) (*behaviors.SpecTemplate, error) {
	if src == "" {
		return nil, nil
	}
	t, err := behaviors.ParseSpecTemplate(name, src)
	if err != nil {
		return nil, fmt.Errorf("%s template: %w", name, err)
	}
	return t, nil
}

func render(t *behaviors.SpecTemplate, i int) string {
	if t == nil {
		return ""
	}
	s, err := t.Render(behaviors.SpecData{Index: i})
	if err != nil {
		return ""
	}
	return s
}

// setRange changes the koi index range and ramp; koi outside the range
// stop at the next reconcile.
func (r *run) setRange(from, to int, ramp float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from != r.from || to != r.to {
		r.from, r.to = from, to
		r.cursor = from
	}
	if ramp != r.rampRate || r.limiter == nil {
		r.rampRate = ramp
		lim := rate.Inf
		if ramp > 0 {
			lim = rate.Limit(ramp)
		}
		if r.limiter == nil {
			r.limiter = rate.NewLimiter(lim, 1)
		} else {
			r.limiter.SetLimit(lim)
		}
	}
}

// reconcile brings the run's koi to the given state.
func (r *run) reconcile(state wire.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refused != "" {
		return
	}
	r.state = state
	switch state {
	case wire.Stopped:
		r.stopAllLocked()
		r.cursor = r.from
	case wire.Paused:
		for _, m := range r.members {
			m.k.Pause()
		}
	default:
		for i, m := range r.members {
			if i < r.from || i >= r.to {
				r.stopMemberLocked(i, m)
				continue
			}
			m.k.Resume()
		}
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

func (r *run) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = wire.Stopped
	r.stopAllLocked()
	r.cursor = r.from
}

// stopAllLocked first pauses every koi (cheap, no socket work: all
// sending stops at once), then cancels them, which closes their websockets
// — so no request trickles out while thousands of sockets close.
func (r *run) stopAllLocked() {
	for _, m := range r.members {
		m.k.Pause()
	}
	for i, m := range r.members {
		r.stopMemberLocked(i, m)
	}
}

// stopMemberLocked stops one koi: paused first, so its schedule (and its
// exposure) ends the moment it is stopped, not when its websocket has
// closed.
func (r *run) stopMemberLocked(i int, m *member) {
	m.k.Pause()
	m.cancel()
	delete(r.members, i)
	r.stopping = append(r.stopping, m)
}

// waitStopped waits until every stopped koi has closed, up to d.
func (r *run) waitStopped(d time.Duration) {
	deadline := time.After(d)
	r.mu.Lock()
	pending := append([]*member(nil), r.stopping...)
	for _, m := range r.members {
		pending = append(pending, m)
	}
	r.mu.Unlock()
	for _, m := range pending {
		select {
		case <-m.done:
		case <-deadline:
			return
		}
	}
}

// maxBooting bounds koi booting at once when the ramp is unlimited: a
// burst of thousands of simultaneous boots leaves thousands of idle API
// connections and a heap the collector takes minutes to give back.
const maxBooting = 256

// bigRamp is how many koi one ramp must start before the school hands
// the boot burst's memory back to the OS.
const bigRamp = 1000

// rampLoop starts missing koi at the ramp rate (jittered, never faster),
// only while the run is running.
func (r *run) rampLoop() {
	defer r.s.wg.Done()
	booting := make(chan struct{}, maxBooting)
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		}
		started := 0
		for {
			r.mu.Lock()
			idx, ok := r.nextMissingLocked()
			lim := r.limiter
			jitter := time.Duration(0)
			if r.rampRate > 0 {
				jitter = time.Duration(r.rng.Float64() * 0.2 * float64(time.Second) / r.rampRate)
			}
			r.mu.Unlock()
			if !ok {
				break
			}
			if err := lim.Wait(r.ctx); err != nil {
				return
			}
			if jitter > 0 && !sleep(r.ctx, jitter) {
				return
			}
			select {
			case booting <- struct{}{}:
			case <-r.ctx.Done():
				return
			}
			r.mu.Lock()
			var m *member
			if r.state == wire.Running && idx >= r.from && idx < r.to && r.members[idx] == nil {
				m = r.startLocked(idx)
				started++
			}
			r.mu.Unlock()
			if m == nil {
				<-booting
				continue
			}
			r.s.wg.Add(1)
			go func() {
				defer r.s.wg.Done()
				select {
				case <-m.k.Ready():
				case <-m.done:
				}
				<-booting
			}()
		}
		if started >= bigRamp {
			r.s.http.CloseIdleConnections()
			debug.FreeOSMemory()
		}
	}
}

// nextMissingLocked finds the next index in range without a koi, while
// the run is running.
func (r *run) nextMissingLocked() (int, bool) {
	if r.state != wire.Running {
		return 0, false
	}
	if r.cursor < r.from {
		r.cursor = r.from
	}
	for ; r.cursor < r.to; r.cursor++ {
		if r.members[r.cursor] == nil {
			return r.cursor, true
		}
	}
	return 0, false
}

func (r *run) startLocked(i int) *member {
	id := behaviors.Identity{Index: i, UserID: render(r.userID, i)}
	switch {
	case len(r.spec.Tokens) > 0:
		id.Token = r.spec.Tokens[i%len(r.spec.Tokens)]
	default:
		id.Token = render(r.token, i)
	}
	k := r.rt.New(id, r.activity.Draw(r.rng))
	if r.ws.perKoi() {
		ws, dropped := r.ws.forKoi(id)
		k.Store().SetWebsocket(ws)
		if len(dropped) > 0 {
			r.s.logLimited("wsheader:"+r.id, "websocket headers left out: their values render with a line break", "run", r.id, "koi", i, "headers", dropped)
		}
	}
	ctx, cancel := context.WithCancel(r.ctx)
	m := &member{k: k, cancel: cancel, done: make(chan struct{})}
	r.members[i] = m
	r.s.wg.Add(1)
	go func() {
		defer r.s.wg.Done()
		defer close(m.done)
		_ = k.Run(ctx)
		r.retire(m)
	}()
	return m
}

// retire folds a finished koi's traffic into the run's totals. The last
// koi of a stopped run to finish closes the school's idle connections.
func (r *run) retire(m *member) {
	st := m.k.Stats()
	r.mu.Lock()
	addStats(&r.traffic, st)
	for i, x := range r.stopping {
		if x == m {
			r.stopping = append(r.stopping[:i], r.stopping[i+1:]...)
			break
		}
	}
	last := r.state == wire.Stopped && r.runningLocked() == 0
	r.mu.Unlock()
	if last {
		// The pool keeps idle keep-alive connections (up to 128 a host)
		// until a request for their host comes, which for a stopped run
		// may be never: the target would see the school hold them open
		// after every koi is gone. Other runs' idle connections close
		// too; they are cheap to open again, a stop is rare, and the
		// pool does not say which run a connection served.
		r.s.http.CloseIdleConnections()
	}
}

func addStats(dst *koi.Stats, s koi.Stats) {
	dst.Events += s.Events
	dst.BytesIn += s.BytesIn
	dst.FramesOut += s.FramesOut
	dst.BytesOut += s.BytesOut
	dst.Reconnects += s.Reconnects
}

// status counts the run's koi by state. Epoch is left for the caller,
// which reads the run's switch under the school's lock (the report loop
// calls status without it).
func (r *run) status() wire.RunStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := wire.RunStatus{Run: r.id, From: r.from, To: r.to, Refused: r.refused,
		Pressure: r.pressure, PressureAt: r.pressureAt}
	if r.state == wire.Running || r.state == wire.Paused {
		st.Target = r.to - r.from
	}
	for _, m := range r.members {
		if m.k.Paused() {
			st.Koi.Paused++
		}
		switch m.k.State() {
		case koi.Idle, koi.Booting, koi.Connecting:
			if m.k.Stats().BootFailures > 0 {
				st.Koi.Failed++
			} else {
				st.Koi.Booting++
			}
		case koi.Connected:
			st.Koi.Connected++
		case koi.Reconnecting:
			st.Koi.Reconnecting++
		}
	}
	return st
}

// running counts koi not yet finished (including those stopping).
func (r *run) running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runningLocked()
}

func (r *run) runningLocked() int {
	n := len(r.members)
	for _, m := range r.stopping {
		select {
		case <-m.done:
		default:
			n++
		}
	}
	return n
}

// websockets counts open websockets.
func (r *run) websockets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.members {
		if m.k.Connected() {
			n++
		}
	}
	for _, m := range r.stopping {
		if m.k.Connected() {
			n++
		}
	}
	return n
}

// connected returns the run's connected, unpaused koi.
func (r *run) connected() []*koi.Koi {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*koi.Koi
	for _, m := range r.members {
		if m.k.State() == koi.Connected && !m.k.Paused() {
			out = append(out, m.k)
		}
	}
	return out
}

// trafficDelta returns websocket traffic since the previous call.
func (r *run) trafficDelta() koi.Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := r.traffic
	for _, m := range r.members {
		addStats(&total, m.k.Stats())
	}
	for _, m := range r.stopping {
		addStats(&total, m.k.Stats())
	}
	d := koi.Stats{Events: total.Events - r.reported.Events, BytesIn: total.BytesIn - r.reported.BytesIn,
		FramesOut: total.FramesOut - r.reported.FramesOut, BytesOut: total.BytesOut - r.reported.BytesOut}
	r.reported = total
	return d
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
