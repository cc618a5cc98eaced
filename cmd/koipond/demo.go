package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/examples"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/ui"
	"github.com/koipond/koipond/wire"
)

// demoRunName names the demo's always-on run; a demo restarted on the
// same --data finds it and carries on instead of creating another.
const demoRunName = "demo: Slack-style background koi"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "demo", "demo [flags]", `
Run the whole system on this machine: embedded NATS with JetStream, the
keeper (API on --http), the pond chat app as the target, and --schools
schools running an always-on run of --koi koi that boot, keep a websocket
open and run the example Slack behaviors at their per-minute frequencies.
After --formation-after an admin posts in #announcements and the seed
formation sends 10% of the koi to read, mark and react within its window
(skipped while the switch is stopped or paused: a stop beats everything).
Live status every --status. Ctrl-C stops everything (twice: at once).
With --schools 0, start schools yourself: the demo prints the command (NATS
authentication is on; the school credentials are in DATA/nats/school.nk).
--nats-insecure turns NATS authentication off (loopback only).`, stderr)
	httpAddr := fs.String("http", "127.0.0.1:8080", "keeper API and web UI address")
	pondAddr := fs.String("pond", "127.0.0.1:9090", "pond (the target app) address")
	natsListen := fs.String("nats-listen", "127.0.0.1:4222", "embedded NATS address schools connect to")
	nKoi := fs.Int("koi", 500, "koi in the always-on run")
	nSchools := fs.Int("schools", 1, "in-process schools (0: none, bring your own koipond school processes)")
	dataDir := fs.String("data", "", "keeper data directory (default: a temporary one, removed at exit)")
	ramp := fs.Float64("ramp", 100, "koi started per second over the whole run (scale up gradually)")
	users := fs.Int("users", 5000, "pond workspace users (at least --koi)")
	channels := fs.Int("channels", 200, "pond workspace channels")
	scale := fs.Float64("time-scale", 1, "speed up behavior time: 60 makes a behavior minute last one second")
	duration := fs.Duration("duration", 10*time.Minute, "stop after this long (0: until Ctrl-C)")
	every := fs.Duration("status", 5*time.Second, "how often to print the status")
	sigma := fs.Float64("activity-sigma", 0.8, "spread of light and heavy users (lognormal σ, mean 1)")
	formationAfter := fs.Duration("formation-after", 30*time.Second, "launch the seed formation this long after the start (0: never)")
	warehouseDir := fs.String("warehouse-dir", "", "folder of usage exports the UI's Generate page may read (default: the sample export the binary ships, written to DATA/warehouse)")
	insecure := fs.Bool("nats-insecure", false, "turn NATS authentication off (loopback only; any local process can then stop or spoof the switch)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var problems []string
	if *nKoi < 1 || *nKoi > 20000 {
		problems = append(problems, fmt.Sprintf("--koi %d: must be 1..20000 on one machine", *nKoi))
	}
	if *nSchools < 0 || *nSchools > 16 {
		problems = append(problems, fmt.Sprintf("--schools %d: must be 0..16", *nSchools))
	}
	if *every < 100*time.Millisecond {
		problems = append(problems, "--status must be at least 100ms")
	}
	if *users < *nKoi {
		*users = *nKoi
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "koipond demo:", p)
		}
		return errUsage
	}
	log := newLogger(stderr, slog.LevelInfo)
	if *dataDir == "" {
		dir, err := os.MkdirTemp("", "koipond-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*dataDir = dir
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	if *warehouseDir == "" {
		dir, err := writeSampleExport(*dataDir)
		if err != nil {
			return err
		}
		*warehouseDir = dir
	}
	k, err := api.Open(ctx, keeper.Config{HTTP: *httpAddr, NATSListen: *natsListen, DataDir: *dataDir, Logger: log, UI: ui.Handler(),
		NATSAuth: keeper.NATSAuth{Insecure: *insecure}, WarehouseDir: *warehouseDir})
	if err != nil {
		return fmt.Errorf("starting the keeper: %w", err)
	}
	defer k.Close()
	p, err := pond.Open(ctx, pond.Config{Addr: *pondAddr, Users: *users, Channels: *channels, Logger: log})
	if err != nil {
		return fmt.Errorf("starting pond: %w", err)
	}
	defer p.Close()

	run, formation, err := demoSetup(ctx, k, p, *nKoi, *ramp, *scale, *sigma)
	if err != nil {
		return err
	}
	var schools []*school.School
	defer func() {
		for _, s := range schools {
			s.Close()
		}
	}()
	perSchool := (*nKoi + max(1, *nSchools) - 1) / max(1, *nSchools)
	for i := range *nSchools {
		s, err := school.Open(ctx, school.Config{ID: fmt.Sprintf("demo-school-%d", i+1), NATSURL: k.NATSURL(), NATSNKeySeedFile: k.SchoolNKeyFile(),
			Capacity: max(perSchool, school.DefaultCapacity), Logger: log, Software: version})
		if err != nil {
			return err
		}
		schools = append(schools, s)
	}
	api := "http://" + k.HTTPAddr()
	fmt.Fprintf(stdout, `
koipond demo is up
  web UI       %s/   (Pause and Stop are the big buttons)
  keeper API   %s/api/v1/status
  NATS         %s
  schools      %s
  pond         %s   (its counters: %s/stats)
  run          %s  %q: %d koi, ramp %g/s, %s
  data         %s
  exports      %s   (the UI's Behaviors › Generate page reads them)

try, in another terminal:
  export KOIPOND_KEEPER=%s
%s
`, api, api, k.NATSURL(), strings.Join(k.SchoolHowTo(), "\n               "), p.URL(), p.URL(), run.ID, run.Name, *nKoi, *ramp, plural(*nSchools, "school", "schools"), *dataDir, *warehouseDir, api, demoTries(run.ID))

	start := time.Now()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	var launch <-chan time.Time
	if *formationAfter > 0 {
		launch = time.After(*formationAfter)
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "\nstopping: schools close their koi, then pond and the keeper")
			stopped := time.Now()
			for _, s := range schools {
				s.Close()
			}
			schools = nil
			fmt.Fprintf(stdout, "all koi stopped in %v\n", time.Since(stopped).Round(time.Millisecond))
			if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		case <-launch:
			if err := demoLaunch(ctx, stdout, k, p, run.ID, formation); err != nil {
				log.Warn("formation launch failed", "err", err)
			}
		case <-tick.C:
			demoStatus(stdout, start, k, p, run.ID, *every)
		}
	}
}

// demoSetup uploads the example behaviors and formation and finds or
// creates the always-on run.
func demoSetup(ctx context.Context, k *keeper.Keeper, p *pond.Server, n int, ramp, scale, sigma float64) (*api.Run, string, error) {
	var files []behaviors.File
	for _, name := range []string{"slack/frequencies.json", "slack/sequences.json"} {
		b, err := fs.ReadFile(examples.FS, name)
		if err != nil {
			return nil, "", err
		}
		files = append(files, behaviors.File{Name: "examples/" + name, Data: b})
	}
	set, err := k.PutBehaviorSet(ctx, "demo", "slack", files)
	if err != nil {
		return nil, "", fmt.Errorf("uploading the example behaviors: %w", err)
	}
	fb, err := fs.ReadFile(examples.FS, "seed/announcement-reaction.formation.json")
	if err != nil {
		return nil, "", err
	}
	form, err := k.PutFormation(ctx, "demo", behaviors.File{Name: "examples/seed/announcement-reaction.formation.json", Data: fb})
	if err != nil {
		return nil, "", fmt.Errorf("uploading the example formation: %w", err)
	}
	for _, r := range k.State().ActiveRuns(nil) {
		if r.Name == demoRunName {
			return api.RunOf(r), form.Hash, nil // a restarted demo carries on
		}
	}
	r, err := k.CreateRun(ctx, "demo", api.RunSpecIn(api.RunSpec{
		Name: demoRunName, Owner: "demo", Labels: map[string]string{"kind": "always-on"},
		Target:      api.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}", UserID: `U{{printf "%06d" .Index}}`},
		BehaviorSet: set.Hash, Koi: n, Ramp: ramp, TimeScale: scale, ActivitySigma: sigma,
		// What a team would watch on an always-on run: its health live in
		// the UI, and a guardrail that pauses it if the target goes bad.
		Thresholds: map[string][]string{"api:conversations.history": {"p95 < 300ms", "error_rate < 1%"}}, ThresholdWindowSecs: 60,
		Guardrails: []api.GuardrailRule{{Name: "api-health", Key: "api:*", When: "success_rate < 95%", For: "1m", Action: "pause"}},
	}))
	if err != nil {
		return nil, "", fmt.Errorf("creating the run: %w", err)
	}
	return api.RunOf(r), form.Hash, nil
}

// demoTries lists CLI commands to try, for those the binary has.
func demoTries(runID string) string {
	tries := []struct{ cmd, line string }{
		{"status", "  koipond status"},
		{"pause", "  koipond pause ; koipond resume        # every koi within a second; resume is at full rate at once"},
		{"launch", "  koipond launch examples/seed/announcement-reaction.formation.json --run " + runID + " --param channel_id=" + pond.ChannelID(1)},
		{"run", "  koipond run scale " + runID + " --koi 800   # live load change: new koi join at the ramp, each at full rate from its first second"},
		{"stop", "  koipond stop                           # the emergency stop"},
	}
	var b strings.Builder
	for _, t := range tries {
		if commandNames[t.cmd] {
			b.WriteString(t.line + "\n")
		}
	}
	b.WriteString("  curl -s " + "$KOIPOND_KEEPER/api/v1/status")
	return b.String()
}

func demoStatus(w io.Writer, start time.Time, k *keeper.Keeper, p *pond.Server, runID string, window time.Duration) {
	st := api.StatusOf(k.Status(nil))
	ps := p.Stats()
	var rv *api.RunView
	for _, r := range st.Runs {
		if r.ID == runID {
			rv = r
		}
	}
	live := 0
	for _, s := range st.Schools {
		if s.Health == "live" {
			live++
		}
	}
	state := "?"
	if st.Switch.GlobalSwitch != nil {
		state = string(st.Switch.State)
	}
	fmt.Fprintf(w, "\n── %s · switch %s · %s live", time.Since(start).Round(time.Second), state, plural(live, "school", "schools"))
	if rv != nil {
		fmt.Fprintf(w, " · koi %d connected, %d booting, %d reconnecting of %d (%s)",
			rv.KoiNow.Connected, rv.KoiNow.Booting, rv.KoiNow.Reconnecting, rv.Koi, rv.State)
		if rv.Partial != "" {
			fmt.Fprintf(w, " · partial: %s", rv.Partial)
		}
	}
	fmt.Fprintf(w, " · pond: %d websockets, %d events sent\n", ps.WebsocketsOpen, ps.EventsSent)
	// At least 5 s: a one-second window can fall between two school reports.
	m := api.MetricsOf(k.RunMetrics(runID, max(window, 5*time.Second)))
	if m == nil || len(m.Keys) == 0 {
		return
	}
	keys := append([]api.KeySummary(nil), m.Keys...)
	sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "key\trate/s\tfailures\tp50 ms\tp95 ms\tp99 ms\t")
	q := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f", *v)
	}
	for _, ks := range keys {
		if strings.HasPrefix(ks.Key, "behavior:") {
			continue
		}
		key := ks.Key
		if r := []rune(key); len(r) > 48 {
			key = string(r[:30]) + "…" + string(r[len(r)-17:])
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%s\t%s\t%s\t\n", key, ks.Rate, ks.Failures, q(ks.P50), q(ks.P95), q(ks.P99))
	}
	tw.Flush()
}

// demoLaunch posts an announcement as user 0, then launches the formation
// through the keeper, which counts and spreads its koi over the schools.
//
// Nothing is posted while the switch (global or the run's) is not
// running: the announcement is traffic to the target too, and a stop
// beats everything.
func demoLaunch(ctx context.Context, w io.Writer, k *keeper.Keeper, p *pond.Server, runID, formation string) error {
	r := k.State()
	if g := r.Switch(nil); g != nil && g.State != wire.Running {
		fmt.Fprintf(w, "\nformation launch skipped: everything is %s (koipond resume)\n", g.State)
		return nil
	}
	if run := r.Run(nil, runID); run == nil || run.State != state.RunRunning {
		fmt.Fprintf(w, "\nformation launch skipped: the demo run is not running\n")
		return nil
	}
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
	l, err := k.Launch(ctx, "demo", keeper.LaunchSpec{Formation: formation, Run: runID, Params: map[string]string{"channel_id": channel}})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n🐟 formation %q launched (%s) in #announcements (%s): starts %s, window %v\n",
		l.Name, l.ID, channel, l.Start.Format(time.TimeOnly), time.Duration(l.BeginWithinMS)*time.Millisecond)
	return nil
}
