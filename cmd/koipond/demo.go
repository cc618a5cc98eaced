package main

// The demo composes what exists today — pond, koi, behaviors, formations,
// metrics — into one process. When the keeper and school land, demo wires
// them instead of driving koi itself.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/examples"
	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/pond"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "demo [flags]", `
Run the whole system on loopback: the pond chat app as the target and a
swarm of koi that boot (rtm.connect, conversations.list), keep a websocket
open and run the example Slack behaviors at their per-minute frequencies.
After --formation-after, an admin posts in #announcements and the seed's
formation sends a share of the koi to read, mark and react to it within its
window. Live status every --status; Ctrl-C stops everything (a second
Ctrl-C exits at once).`, stderr)
	pondAddr := fs.String("pond", "127.0.0.1:9090", "address pond listens on (loopback)")
	nKoi := fs.Int("koi", 500, "number of koi")
	ramp := fs.Float64("ramp", 100, "koi started per second (scale up gradually)")
	users := fs.Int("users", 5000, "pond workspace users (at least --koi)")
	channels := fs.Int("channels", 200, "pond workspace channels")
	scale := fs.Float64("time-scale", 1, "speed up behavior time: 60 makes a behavior minute last one second")
	duration := fs.Duration("duration", 10*time.Minute, "stop after this long (0: until Ctrl-C)")
	every := fs.Duration("status", 5*time.Second, "status interval")
	sigma := fs.Float64("activity-sigma", 0.8, "spread of light and heavy users (lognormal σ, mean 1; 0: everyone average)")
	behaviorFiles := fs.String("behaviors", "", "comma-separated behavior files (default: the embedded examples/slack set)")
	formationFile := fs.String("formation", "", "formation file (default: the embedded seed announcement formation; \"none\" for none)")
	formationAfter := fs.Duration("formation-after", 30*time.Second, "launch the formation this long after the start")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var problems []string
	if *nKoi < 1 || *nKoi > 20000 {
		problems = append(problems, fmt.Sprintf("--koi %d: must be 1..20000 (one process, one machine)", *nKoi))
	}
	if *ramp <= 0 {
		problems = append(problems, "--ramp must be > 0")
	}
	if *users < *nKoi {
		*users = *nKoi
	}
	if *every < 100*time.Millisecond {
		problems = append(problems, "--status must be at least 100ms")
	}
	if err := (behaviors.Activity{Sigma: *sigma}).Validate(); len(err) > 0 {
		problems = append(problems, "--activity-sigma: "+err[0].Error())
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "koipond demo:", p)
		}
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	set, err := demoSet(*behaviorFiles)
	if err != nil {
		return err
	}
	form, err := demoFormation(*formationFile)
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	p, err := pond.Open(ctx, pond.Config{Addr: *pondAddr, Users: *users, Channels: *channels, Logger: log})
	if err != nil {
		return fmt.Errorf("starting pond: %w", err)
	}
	defer p.Close()
	log.Info("pond listening", "url", p.URL(), "stats", p.URL()+"/stats", "users", *users, "channels", *channels)

	rec := &metrics.Recorder{}
	rt, err := koi.NewRuntime(koi.RuntimeConfig{Set: set, APIBase: p.URL() + "/api", TimeScale: *scale, Metrics: rec})
	if err != nil {
		return err
	}
	log.Info("swarm", "koi", *nKoi, "ramp_per_sec", *ramp, "behaviors", len(set.Behaviors), "time_scale", *scale,
		"minute", rt.Minute())

	swarm := &demoSwarm{rt: rt}
	koiCtx, stopKoi := context.WithCancel(ctx)
	defer stopKoi()
	go swarm.ramp(koiCtx, *nKoi, *ramp, *sigma)

	start := time.Now()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	var launch <-chan time.Time
	if form != nil {
		launch = time.After(*formationAfter)
	}
	for {
		select {
		case <-ctx.Done():
			stopped := time.Now()
			stopKoi()
			swarm.wg.Wait()
			fmt.Fprintf(stdout, "\nstopped %d koi in %v; final interval:\n", swarm.started(), time.Since(stopped).Round(time.Millisecond))
			demoStatus(stdout, start, swarm, rec.Snapshot(), p.Stats())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil
			}
			return nil
		case <-launch:
			if err := demoLaunch(ctx, stdout, p, swarm, form, rt); err != nil {
				log.Warn("formation launch failed", "err", err)
			}
		case <-tick.C:
			demoStatus(stdout, start, swarm, rec.Snapshot(), p.Stats())
		}
	}
}

func demoSet(files string) (*behaviors.Set, error) {
	var set *behaviors.Set
	var diags behaviors.Diagnostics
	if files != "" {
		set, diags = behaviors.Load(strings.Split(files, ",")...)
	} else {
		var fsFiles []behaviors.File
		for _, name := range []string{"slack/frequencies.json", "slack/sequences.json"} {
			b, err := fs.ReadFile(examples.FS, name)
			if err != nil {
				return nil, err
			}
			fsFiles = append(fsFiles, behaviors.File{Name: "examples/" + name, Data: b})
		}
		set, diags = behaviors.Parse(fsFiles...)
	}
	if set == nil {
		return nil, fmt.Errorf("behavior set:\n%w", diags)
	}
	return set, nil
}

func demoFormation(file string) (*formations.Formation, error) {
	switch file {
	case "none":
		return nil, nil
	case "":
		b, err := fs.ReadFile(examples.FS, "seed/announcement-reaction.formation.json")
		if err != nil {
			return nil, err
		}
		f, diags := formations.Parse(behaviors.File{Name: "examples/seed/announcement-reaction.formation.json", Data: b})
		if f == nil {
			return nil, diags
		}
		return f, nil
	}
	f, diags := formations.Load(file)
	if f == nil {
		return nil, fmt.Errorf("formation:\n%w", diags)
	}
	return f, nil
}

// demoSwarm owns the demo's koi and their goroutines.
type demoSwarm struct {
	rt  *koi.Runtime
	wg  sync.WaitGroup
	mu  sync.Mutex
	all []*koi.Koi
}

// ramp starts n koi at rate per second, jittered, until done or ctx ends.
func (s *demoSwarm) ramp(ctx context.Context, n int, rate, sigma float64) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	act := behaviors.Activity{Sigma: sigma}
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	for i := range n {
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		k := s.rt.New(behaviors.Identity{Index: i, UserID: pond.UserID(i), Token: pond.Token(i)}, act.Draw(rng))
		s.mu.Lock()
		s.all = append(s.all, k)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = k.Run(ctx)
		}()
		// Jitter each gap by ±50% so the ramp itself is no herd.
		next = next.Add(time.Duration(float64(interval) * (0.5 + rng.Float64())))
	}
}

func (s *demoSwarm) started() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// states counts koi by state.
func (s *demoSwarm) states() map[koi.State]int {
	s.mu.Lock()
	all := append([]*koi.Koi(nil), s.all...)
	s.mu.Unlock()
	out := map[koi.State]int{}
	for _, k := range all {
		out[k.State()]++
	}
	return out
}

func (s *demoSwarm) connected() []*koi.Koi {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*koi.Koi
	for _, k := range s.all {
		if k.State() == koi.Connected {
			out = append(out, k)
		}
	}
	return out
}

func demoStatus(w io.Writer, start time.Time, s *demoSwarm, snap *metrics.Snapshot, ps pond.Stats) {
	st := s.states()
	var reqs, fails uint64
	for key, ss := range snap.Series {
		if strings.HasPrefix(key, "api:") || strings.HasPrefix(key, "ws:") && key != "ws:connect" {
			reqs += ss.Total()
			fails += ss.Failures()
		}
	}
	secs := snap.End.Sub(snap.Start).Seconds()
	if secs <= 0 {
		secs = 1
	}
	errPct := 0.0
	if reqs > 0 {
		errPct = 100 * float64(fails) / float64(reqs)
	}
	fmt.Fprintf(w, "\n── %s · koi %d started: %d connected, %d booting, %d reconnecting · %.1f req/s, %.2f%% errors · pond: %d websockets, %d events sent, %d slow-consumer drops\n",
		time.Since(start).Round(time.Second), s.started(), st[koi.Connected], st[koi.Booting]+st[koi.Connecting], st[koi.Reconnecting],
		float64(reqs)/secs, errPct, ps.WebsocketsOpen, ps.EventsSent, ps.SlowConsumerDrops)
	if len(snap.Series) > 0 {
		_ = metrics.WriteTable(w, snap)
	}
}

// demoLaunch posts an announcement as user 0, then starts the formation
// on its share of connected koi at uniform offsets within its window.
func demoLaunch(ctx context.Context, w io.Writer, p *pond.Server, s *demoSwarm, f *formations.Formation, rt *koi.Runtime) error {
	channel := pond.ChannelID(1) // #announcements
	form := url.Values{"channel": {channel}, "text": {"All hands at 3pm: react if you can make it 🐟"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL()+"/api/chat.postMessage", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+pond.Token(0))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("posting the announcement: %w", err)
	}
	resp.Body.Close()
	conn := s.connected()
	plan := f.PlanLaunch([]formations.School{{ID: "demo", Connected: len(conn)}})
	rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
	window := rt.Scale(f.BeginWithin)
	chosen := formations.Choose(rng, len(conn), plan.Count)
	offsets := formations.Offsets(rng, len(chosen), window)
	params := map[string]string{"channel_id": channel}
	for i, idx := range chosen {
		conn[idx].Launch(f.Name, f.Sequence, params, offsets[i])
	}
	fmt.Fprintf(w, "\n🐟 formation %q launched: %d of %d connected koi (%g%%) start within %v in #announcements (%s)\n",
		f.Name, plan.Count, plan.Total, f.Percent, window, channel)
	return nil
}
