package koi

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long a worker waits for its next job before it ends.
const workerIdle = 10 * time.Second

// workers runs a runtime's behavior sequences on goroutines kept between
// jobs. A sequence run on a fresh goroutine grows its stack several times
// over (HTTP, templates, JSON), copying it each time; a kept worker has
// grown it already. A job goes to a worker waiting for one, else to a new
// worker, so jobs never queue behind each other. A worker ends when it has
// been idle for workerIdle, or when the runtime's last running koi
// returns, so an idle school keeps none.
type workers struct {
	jobs chan func()

	mu      sync.Mutex
	running int           // koi in Run
	quit    chan struct{} // closed when running falls to 0
	started atomic.Int64  // workers started, for tests
}

func newWorkers() *workers { return &workers{jobs: make(chan func())} }

// hold counts a koi in Run; drop counts it out.
func (w *workers) hold() {
	w.mu.Lock()
	if w.running == 0 {
		w.quit = make(chan struct{})
	}
	w.running++
	w.mu.Unlock()
}

func (w *workers) drop() {
	w.mu.Lock()
	if w.running--; w.running == 0 {
		close(w.quit)
	}
	w.mu.Unlock()
}

// run runs f on a kept worker (on a goroutine of its own when no koi is
// running).
func (w *workers) run(f func()) {
	select {
	case w.jobs <- f:
		return
	default:
	}
	w.mu.Lock()
	quit := w.quit
	if w.running == 0 {
		quit = nil
	}
	w.mu.Unlock()
	if quit == nil {
		go f()
		return
	}
	w.started.Add(1)
	go w.work(f, quit)
}

func (w *workers) work(f func(), quit <-chan struct{}) {
	f()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		select {
		case f = <-w.jobs:
			f()
			t.Reset(workerIdle)
		case <-t.C:
			return
		case <-quit:
			return
		}
	}
}
