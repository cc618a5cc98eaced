package koi

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
)

// State is where a koi is in its life.
type State int32

// The states, in the order a koi passes through them.
const (
	Idle         State = iota // created, not running
	Booting                   // running its boot sequence
	Connecting                // booted, opening its websocket or running on_connect
	Connected                 // booted, websocket open and on_connect succeeded (or no websocket needed)
	Reconnecting              // websocket lost: backing off, redialing, running on_connect again
	Stopped                   // Run has returned
)

func (s State) String() string {
	return [...]string{"idle", "booting", "connecting", "connected", "reconnecting", "stopped"}[s]
}

// Koi is one simulated client. Create it with Runtime.New, start it with
// Run, and use Pause/Resume/Launch from any goroutine.
//
// Lock order: k.mu before k.store's lock (store methods never call back).
type Koi struct {
	rt       *Runtime
	store    *behaviors.Store
	activity float64
	rng      *rand.Rand // guarded by mu

	state atomic.Int32
	conn  atomic.Pointer[websocket.Conn]
	wmu   sync.Mutex // serializes websocket writes

	mu          sync.Mutex
	stopCtx     context.Context
	actCtx      context.Context // canceled by Pause and by stop
	actCancel   context.CancelFunc
	paused      bool
	expOn       bool          // the schedule runs: exposure accrues from expAt (exposure.go)
	expAt       time.Duration // exposure accounted up to here, an offset from origin
	resumed     chan struct{} // closed when a pause ends
	timer       *time.Timer   // next behavior firing
	plan        []behaviors.Firing
	planPos     int
	minuteStart time.Time
	origin      time.Time // start of the first behavior minute; pauses keep it
	skipBefore  time.Time // firings planned before this (a pause) are dropped
	waiters     []*waiter
	nWaiting    atomic.Int32 // len(waiters), for the frame reader's lock-free check
	retryAt     time.Time    // API requests wait until then after a 429

	ready     chan struct{} // closed once booted and connected (or stopped)
	readyOnce sync.Once

	// Connection lifecycle (see lifecycle.go), guarded by mu.
	live        *websocket.Conn // the open connection whose on_connect succeeded
	liveAt      int64           // when live went live (unix ns)
	expectConn  bool            // a connection is being kept: ws sends wait for one
	linkChange  chan struct{}   // closed when live or expectConn changes (made by a waiter)
	booted      bool
	everLive    bool        // some connection's on_connect succeeded
	loopStarted bool        // the connection loop runs (a boot connect step may start it)
	connState   State       // the connection's state, published as the koi's after boot
	eventSeqs   int         // on_event sequences running
	liveFlag    atomic.Bool // live != nil, for the frame reader
	early       *earlyGate  // frames held while on_connect runs (nil: not needed)

	seqs     sync.WaitGroup // running sequences
	stats    Stats
	statsMu  sync.Mutex
	dialFail int

	excl map[string]*exclusiveGroup // "exclusive" groups (exclusive.go), guarded by mu
}

// Stats counts what one koi has done; the school sums them.
type Stats struct {
	Behaviors    int64 // behavior sequences started
	Minutes      int64 // behavior minutes planned
	Reconnects   int64 // websocket reconnects after the first connection
	Events       int64 // websocket frames received
	BytesIn      int64 // websocket payload bytes received
	FramesOut    int64 // websocket frames sent by ws requests
	BytesOut     int64 // websocket payload bytes sent by ws requests
	BootFailures int64 // failed boot attempts (each retried with backoff)
	// ExclusiveDropped counts firings of an "exclusive" group dropped
	// because MaxExclusivePending already waited behind a running one.
	ExclusiveDropped int64
}

// New creates a koi with the given identity and activity multiplier (1 is
// an average user; see behaviors.Activity).
func (rt *Runtime) New(id behaviors.Identity, activity float64) *Koi {
	st := behaviors.NewSharedStore(id, rt.workspace)
	if rt.cfg.Websocket.URL != "" {
		st.SetWebsocket(rt.cfg.Websocket)
	}
	k := &Koi{
		rt:       rt,
		store:    st,
		activity: activity,
		rng:      rand.New(rand.NewPCG(rand.Uint64(), uint64(id.Index))),
		resumed:  closedChan,
		ready:    make(chan struct{}),
		early:    newEarlyGate(rt.set),
	}
	return k
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Ready is closed once the koi has booted and opened its websocket with
// on_connect succeeded once (or needs no websocket), or when Run returns:
// a ramp can bound how many koi boot at once.
func (k *Koi) Ready() <-chan struct{} { return k.ready }

func (k *Koi) markReady() { k.readyOnce.Do(func() { close(k.ready) }) }

// Store is the koi's local store.
func (k *Koi) Store() *behaviors.Store { return k.store }

// State returns where the koi is in its life.
func (k *Koi) State() State { return State(k.state.Load()) }

// Stats returns a copy of the koi's counters.
func (k *Koi) Stats() Stats {
	k.statsMu.Lock()
	defer k.statsMu.Unlock()
	return k.stats
}

func (k *Koi) count(f func(*Stats)) {
	k.statsMu.Lock()
	f(&k.stats)
	k.statsMu.Unlock()
}

// Run boots the koi, keeps its websocket open and runs its behaviors until
// ctx is canceled (stop): then every sequence is aborted, the websocket is
// closed, and Run returns once all of the koi's goroutines have ended.
func (k *Koi) Run(ctx context.Context) error {
	if !k.state.CompareAndSwap(int32(Idle), int32(Booting)) {
		return errors.New("koi: Run called twice")
	}
	k.mu.Lock()
	k.stopCtx = ctx
	k.actCtx, k.actCancel = context.WithCancel(ctx)
	startPaused := k.paused
	if startPaused {
		k.actCancel()
	}
	k.mu.Unlock()
	k.rt.workers.hold()
	defer k.rt.workers.drop() // after the sequences below have ended
	defer func() {
		k.mu.Lock()
		k.endExposureLocked()
		k.actCancel()
		if k.timer != nil {
			k.timer.Stop()
		}
		k.mu.Unlock()
		k.seqs.Wait()
		k.state.Store(int32(Stopped))
		k.markReady()
	}()

	if err := k.boot(ctx); err != nil {
		return err
	}
	k.mu.Lock()
	k.booted = true
	loopRuns := k.loopStarted
	if loopRuns { // boot opened the socket: publish where it is
		k.state.Store(int32(k.connState))
		if k.everLive {
			k.markReady()
		}
	}
	if !loopRuns {
		k.loopStarted = true
		k.expectConn = k.store.Websocket().URL != ""
	}
	if !k.paused {
		k.startScheduleLocked()
	}
	k.mu.Unlock()
	if loopRuns {
		<-ctx.Done()
		return ctx.Err()
	}
	k.connLoop(ctx)
	return ctx.Err()
}

// runCtx returns the context Run was given (Background before Run): the
// templates the frame reader runs outside any sequence (on_event actions)
// end with it. Run sets it before it starts anything that calls runCtx,
// and never changes it.
func (k *Koi) runCtx() context.Context {
	if ctx := k.stopCtx; ctx != nil {
		return ctx
	}
	return context.Background()
}

// boot runs the boot sequence until it succeeds, retrying with backoff,
// and waiting while paused.
func (k *Koi) boot(ctx context.Context) error {
	if k.rt.set.Boot == nil {
		return nil
	}
	for attempt := 0; ; attempt++ {
		actx, err := k.waitActive(ctx)
		if err != nil {
			return err
		}
		err = k.execute(actx, k.rt.set.Boot, &behaviors.Env{Store: k.store}, "boot")
		if err == nil || errors.Is(err, behaviors.ErrHalt) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if actx.Err() != nil { // paused mid-boot: try again after resume
			continue
		}
		k.count(func(s *Stats) { s.BootFailures++ })
		if !sleepCtx(ctx, k.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// waitActive returns the current activity context, waiting while paused.
func (k *Koi) waitActive(ctx context.Context) (context.Context, error) {
	for {
		k.mu.Lock()
		paused, resumed, actx := k.paused, k.resumed, k.actCtx
		k.mu.Unlock()
		if !paused {
			return actx, nil
		}
		select {
		case <-resumed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Pause aborts every running sequence at once and starts nothing new; the
// websocket stays open. It is idempotent.
func (k *Koi) Pause() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.paused {
		return
	}
	k.paused = true
	k.endExposureLocked()
	k.resumed = make(chan struct{})
	if k.actCancel != nil {
		k.actCancel()
	}
	if k.timer != nil {
		k.timer.Stop()
	}
}

// Resume ends a pause: behaviors start again (the koi is not booted again).
func (k *Koi) Resume() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.paused {
		return
	}
	k.paused = false
	close(k.resumed)
	if k.stopCtx == nil || k.stopCtx.Err() != nil {
		return
	}
	k.actCtx, k.actCancel = context.WithCancel(k.stopCtx)
	if State(k.state.Load()) != Booting {
		k.startScheduleLocked()
	}
}

// Paused reports whether the koi is paused.
func (k *Koi) Paused() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.paused
}

// startScheduleLocked begins behavior minutes, or picks them up again
// after a pause.
//
// The first start is warm: it anchors the koi's minute grid at now
// (minute n spans [origin + n·minute, origin + (n+1)·minute)) and plans
// minute 0 at once. Each firing lies at a uniformly random moment of its
// minute, so the koi calls at its spec rate from its first second, with
// no ramp over the first minute; the koi of a swarm start at different
// moments (ramp, boot), so their minutes do not line up.
//
// A resume keeps the grid (the koi's phase): the firings planned for the
// paused span are dropped, never bunched up after it, and those after the
// resume instant happen on time, so the rate is back at once.
func (k *Koi) startScheduleLocked() {
	if k.rt.sched.Len() == 0 {
		return
	}
	now := time.Now()
	k.skipBefore = now
	switch {
	case k.origin.IsZero():
		k.origin = now
		k.minuteStart = now.Add(-k.rt.minute)
		k.plan, k.planPos = k.plan[:0], 0
	default:
		cur := max(0, now.Sub(k.origin)/k.rt.minute) // the minute now is in
		if k.minuteStart.Before(k.origin.Add(cur * k.rt.minute)) {
			// The planned minute is over: plan the current one afresh
			// (the minutes in between were paused: none is planned).
			k.minuteStart = k.origin.Add((cur - 1) * k.rt.minute)
			k.plan, k.planPos = k.plan[:0], 0
		}
	}
	k.beginExposureLocked(now)
	k.armLocked()
}

// armLocked sets the timer for the next planned firing, planning new
// minutes as needed; firings before skipBefore (planned for a pause) are
// dropped.
func (k *Koi) armLocked() {
	for {
		for k.planPos >= len(k.plan) {
			k.minuteStart = k.minuteStart.Add(k.rt.minute)
			k.plan = k.rt.sched.MinuteIn(k.rng, k.activity, k.rt.hourOf(k.minuteStart), k.plan)
			k.planPos = 0
			k.count(func(s *Stats) { s.Minutes++ })
			if len(k.plan) == 0 && time.Until(k.minuteStart) > 0 {
				// Nothing this minute: wake at the next minute to plan it.
				k.plan = append(k.plan, behaviors.Firing{Behavior: -1})
			}
		}
		f := k.plan[k.planPos]
		at := k.minuteStart.Add(time.Duration(f.At * float64(k.rt.minute)))
		if at.Before(k.skipBefore) {
			k.planPos++
			continue
		}
		d := max(0, time.Until(k.rt.fireAt(at, k.minuteStart.Add(k.rt.minute))))
		if k.timer == nil {
			k.timer = time.AfterFunc(d, k.fire)
		} else {
			k.timer.Reset(d)
		}
		return
	}
}

// MinuteOrigin returns when the koi's behavior minutes began (zero
// before the schedule starts): minute n spans
// [origin + n·Minute, origin + (n+1)·Minute), across pauses too.
func (k *Koi) MinuteOrigin() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.origin
}

// fire runs on the timer's goroutine: it starts every firing that is due,
// each on a kept worker, and re-arms the timer.
func (k *Koi) fire() {
	k.mu.Lock()
	if k.paused || k.actCtx == nil || k.actCtx.Err() != nil {
		k.mu.Unlock()
		return
	}
	actx := k.actCtx
	var due []*behaviors.Behavior
	now := time.Now()
	for k.planPos < len(k.plan) {
		f := k.plan[k.planPos]
		at := k.minuteStart.Add(time.Duration(f.At * float64(k.rt.minute)))
		if at.After(now) {
			break
		}
		k.planPos++
		if f.Behavior >= 0 && k.admitLocked(actx, k.rt.scheduled[f.Behavior]) {
			due = append(due, k.rt.scheduled[f.Behavior])
		}
	}
	k.seqs.Add(len(due))
	k.armLocked()
	k.mu.Unlock()
	for _, b := range due {
		k.rt.workers.run(func() { k.runBehavior(actx, b) })
	}
}

// runBehavior runs b, then the firings of its exclusive group deferred
// behind it, one after the other.
func (k *Koi) runBehavior(ctx context.Context, b *behaviors.Behavior) {
	defer k.seqs.Done()
	for b != nil {
		k.count(func(s *Stats) { s.Behaviors++ })
		start := time.Now()
		err := k.execute(ctx, b.Sequence, &behaviors.Env{Store: k.store}, "")
		record(k.rt.series(b.Key), time.Since(start), outcomeOf(ctx, err), err)
		if b.Exclusive == "" {
			return
		}
		ctx, b = k.nextExclusive(b.Exclusive)
	}
}

// Launch runs a formation's sequence on this koi after delay (wall time),
// with the launch parameters readable by get. Pause or stop aborts it. The
// name is used for metric keys ("formation:<name>" for the whole sequence,
// "formation:<name>:<step>" per step).
func (k *Koi) Launch(name string, seq *behaviors.Sequence, params map[string]string, delay time.Duration) {
	k.LaunchWith(name, seq, params, delay, nil)
}

// LaunchWith is Launch with a callback told the moment the sequence
// really begins (after the delay), for measuring a launch's start spread.
func (k *Koi) LaunchWith(name string, seq *behaviors.Sequence, params map[string]string, delay time.Duration, started func(time.Time)) {
	k.LaunchTracked(name, "", seq, params, delay, LaunchHooks{Began: started})
}

// RunSequence runs a sequence now, on the caller's goroutine, with the
// given parameters; for tests and one-off calls.
func (k *Koi) RunSequence(ctx context.Context, seq *behaviors.Sequence, params map[string]string) error {
	env := &behaviors.Env{Store: k.store, Params: params}
	return k.execute(ctx, seq, env, "")
}

// backoff returns the wait before retry n: random in [d/2, d] with
// d = min(max, min·2^n).
func (k *Koi) backoff(n int) time.Duration {
	d := k.rt.cfg.BackoffMin
	for i := 0; i < n && d < k.rt.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, k.rt.cfg.BackoffMax)
	k.mu.Lock()
	j := time.Duration(k.rng.Int64N(int64(d/2) + 1))
	k.mu.Unlock()
	return d/2 + j
}

// sleepCtx waits d, or returns false as soon as ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
