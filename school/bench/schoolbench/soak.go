package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/koipond/koipond/deploy/supervise"
	"github.com/koipond/koipond/examples"
	"github.com/koipond/koipond/pond"
)

// The soak mode: a long busy run with pond, the real keeper and the
// schools each in its own process, sampled every --sample.

// soakConfig is what `schoolbench soak` runs.
type soakConfig struct {
	koipond, goBin, out   string
	koi, schools          int
	timeScale, ramp       float64
	sigma                 float64
	duration, sample      time.Duration
	pondPort, keeperPort  int
	natsPort, schoolPort  int
	users, channels       int
	timeout               time.Duration
	keepWorkDir           bool
	keeperPprof           bool
	schoolEnv, schoolArgs listFlag
}

// Validate returns every problem of c.
func (c soakConfig) Validate() []error {
	var errs []error
	if c.koi < 1 || c.koi > 20000 {
		errs = append(errs, fmt.Errorf("--koi %d: must be 1..20000 (pond has at most 20,000 users here)", c.koi))
	}
	if c.schools < 1 || c.schools > 16 {
		errs = append(errs, fmt.Errorf("--schools %d: must be 1..16", c.schools))
	}
	if c.timeScale <= 0 || c.timeScale > 600 {
		errs = append(errs, fmt.Errorf("--time-scale %g: must be in (0, 600]", c.timeScale))
	}
	if c.sample < time.Second || c.sample > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--sample %v: must be 1s..10m", c.sample))
	}
	if c.duration < c.sample || c.duration > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--duration %v: must be from --sample to 24h", c.duration))
	}
	if c.timeout < c.duration {
		errs = append(errs, fmt.Errorf("--timeout %v is shorter than --duration %v", c.timeout, c.duration))
	}
	if c.ramp < 0 {
		errs = append(errs, fmt.Errorf("--ramp %g: must be ≥ 0", c.ramp))
	}
	if c.out == "" {
		errs = append(errs, errors.New("--out: a folder for soak.csv, soak.svg and the logs is needed"))
	}
	return errs
}

func runSoak(args []string) error {
	fs := flag.NewFlagSet("schoolbench soak", flag.ContinueOnError)
	var c soakConfig
	fs.StringVar(&c.koipond, "koipond", "", "koipond binary (default: go build -o OUT/koipond ./cmd/koipond)")
	fs.StringVar(&c.goBin, "go", "go", "go command, to build koipond when --koipond is not given")
	fs.StringVar(&c.out, "out", "", "folder for soak.csv, soak.svg, summary.txt and the processes' logs (created)")
	fs.IntVar(&c.koi, "koi", 5000, "koi in the always-on run")
	fs.IntVar(&c.schools, "schools", 1, "school processes (the koi are spread over them)")
	fs.Float64Var(&c.timeScale, "time-scale", 1, "the run's time scale (10: behavior minutes last 6 s)")
	fs.Float64Var(&c.ramp, "ramp", 500, "koi started per second (0: all at once)")
	fs.Float64Var(&c.sigma, "activity-sigma", 0.8, "spread of light and heavy users, as the demo's")
	fs.DurationVar(&c.duration, "duration", 5*time.Minute, "how long to sample after the run is created")
	fs.DurationVar(&c.sample, "sample", 10*time.Second, "sampling interval")
	fs.IntVar(&c.pondPort, "pond-port", 19390, "pond's port on 127.0.0.1")
	fs.IntVar(&c.keeperPort, "keeper-port", 19391, "the keeper's API port on 127.0.0.1")
	fs.IntVar(&c.natsPort, "nats-port", 19392, "the keeper's embedded NATS port on 127.0.0.1")
	fs.IntVar(&c.schoolPort, "school-port", 19393, "first school's --http port on 127.0.0.1 (the next ones follow)")
	fs.IntVar(&c.users, "users", 0, "pond users (default: max(koi, 5000), as the demo)")
	fs.IntVar(&c.channels, "channels", 200, "pond channels, as the demo's")
	fs.BoolVar(&c.keeperPprof, "keeper-pprof", false, "run the keeper with --pprof, which also samples its heap for profiles (as deployed it does neither), and save its heap profile at the end")
	fs.DurationVar(&c.timeout, "timeout", 0, "bound on the whole soak (default: duration + 5m)")
	fs.Var(&c.schoolEnv, "school-env", "KEY=VALUE added to each school's environment (repeatable)")
	fs.Var(&c.schoolArgs, "school-arg", "extra argument for `koipond school` (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.timeout == 0 {
		c.timeout = c.duration + 5*time.Minute
	}
	if c.users == 0 {
		c.users = max(c.koi, 5000)
	}
	if errs := c.Validate(); len(errs) > 0 {
		return errors.Join(errs...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	defer stopAll()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "schoolbench soak: %v: stopping the processes it started\n", s)
		cancel()
		stopAll()
		os.Exit(130)
	}()
	if _, err := supervise.RaiseNoFile(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if c.koipond == "" {
		c.koipond = filepath.Join(c.out, "koipond")
		logf("building %s", c.koipond)
		b := exec.CommandContext(ctx, c.goBin, "build", "-o", c.koipond, "./cmd/koipond")
		b.Stdout, b.Stderr = os.Stdout, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}
	return soak(ctx, c)
}

// soakProc is one sampled process.
type soakProc struct {
	name    string
	p       *supervise.Proc
	metrics string // its /metrics URL, for the koi of a school ("" otherwise)
}

// soakSample is one row of soak.csv.
type soakSample struct {
	t        float64 // seconds since the run was created
	process  string
	rssBytes int64
	cpuSecs  float64
	koi      int64
	requests uint64
}

func soak(ctx context.Context, c soakConfig) error {
	pondBase := fmt.Sprintf("http://127.0.0.1:%d", c.pondPort)
	keeperBase := fmt.Sprintf("http://127.0.0.1:%d", c.keeperPort)
	logf("soak: %d koi over %d school(s), the demo's Slack behaviors, time scale %g, ramp %g/s, %v sampled every %v; machine %d cores, load average %s",
		c.koi, c.schools, c.timeScale, c.ramp, c.duration, c.sample, nprocs(), supervise.LoadAvg())

	pp, err := startProc("pond", filepath.Join(c.out, "pond.log"), c.koipond, "pond",
		"--http", fmt.Sprintf("127.0.0.1:%d", c.pondPort), "--users", strconv.Itoa(c.users),
		"--channels", strconv.Itoa(c.channels), "--no-rate-limits")
	if err != nil {
		return err
	}
	if _, _, err := waitStats(ctx, pondBase, 100*time.Millisecond, 30*time.Second, func(pond.Stats) bool { return true }); err != nil {
		return fmt.Errorf("pond did not come up: %v\n%s", err, supervise.Tail(pp.Log, 20))
	}
	keeperArgs := []string{c.koipond, "keeper", "--http", fmt.Sprintf("127.0.0.1:%d", c.keeperPort), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", c.natsPort),
		"--data", filepath.Join(c.out, "keeper-data"), "--nats-insecure"}
	if c.keeperPprof {
		keeperArgs = append(keeperArgs, "--pprof")
	}
	kp, err := startProc("keeper", filepath.Join(c.out, "keeper.log"), keeperArgs...)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, keeperBase+"/api/v1/status", 30*time.Second); err != nil {
		return fmt.Errorf("the keeper did not come up: %v\n%s", err, supervise.Tail(kp.Log, 20))
	}
	procs := []soakProc{{name: "pond", p: pp}, {name: "keeper", p: kp, metrics: keeperBase + "/metrics"}}
	perSchool := (c.koi + c.schools - 1) / c.schools
	for i := range c.schools {
		name := fmt.Sprintf("school-%d", i+1)
		addr := fmt.Sprintf("127.0.0.1:%d", c.schoolPort+i)
		argv := append([]string{c.koipond, "school", "--nats", fmt.Sprintf("nats://127.0.0.1:%d", c.natsPort),
			"--id", "soak-" + strconv.Itoa(i+1), "--capacity", strconv.Itoa(perSchool), "--http", addr}, c.schoolArgs...)
		sp, err := startProcEnv(name, filepath.Join(c.out, name+".log"), c.schoolEnv, argv...)
		if err != nil {
			return err
		}
		if err := waitHTTP(ctx, "http://"+addr+"/metrics", 30*time.Second); err != nil {
			return fmt.Errorf("%s did not come up: %v\n%s", name, err, supervise.Tail(sp.Log, 20))
		}
		procs = append(procs, soakProc{name: name, p: sp, metrics: "http://" + addr + "/metrics"})
	}
	// Let the schools register with the keeper before the run is spread.
	if !sleepCtx(ctx, 3*time.Second) {
		return ctx.Err()
	}
	heapBefore, heapErr := keeperLiveHeap(ctx, keeperBase, "")
	if heapErr != nil {
		logf("the keeper's live heap before the run: %v (its RSS growth is judged instead)", heapErr)
	}
	keeperBefore, err := supervise.ReadUsage(kp.Pid())
	if err != nil {
		return err
	}
	runID, err := createSoakRun(ctx, keeperBase, pondBase, c)
	if err != nil {
		return err
	}
	start := time.Now()
	logf("run %s created; keeper RSS before it %.1f MiB", runID, mib(keeperBefore.RSSKiB))

	csvF, err := os.Create(filepath.Join(c.out, "soak.csv"))
	if err != nil {
		return err
	}
	defer csvF.Close()
	cw := csv.NewWriter(csvF)
	_ = cw.Write([]string{"time", "process", "rss_bytes", "cpu_seconds", "koi", "requests"})
	var samples []soakSample
	// gauges are the keeper's history and heap classes at each sample:
	// what of its growth the runs' metrics history explains, and what the
	// Go runtime keeps around it.
	var gauges keeperGauges
	for i := 1; ; i++ {
		next := start.Add(time.Duration(i) * c.sample)
		if next.Sub(start) > c.duration || !sleepCtx(ctx, time.Until(next)) {
			break
		}
		st, err := supervise.PondStats(ctx, pondBase)
		if err != nil {
			logf("sample %d: pond /stats: %v", i, err)
		}
		t := time.Since(start).Seconds()
		var line []string
		for _, sp := range procs {
			if sp.p.Exited() {
				return fmt.Errorf("%s exited during the soak: %v\n%s", sp.name, sp.p.Err(), supervise.Tail(sp.p.Log, 20))
			}
			u, err := supervise.ReadUsage(sp.p.Pid())
			if err != nil {
				return fmt.Errorf("sampling %s: %w", sp.name, err)
			}
			koi := st.WebsocketsOpen
			heap := ""
			if sp.name == "keeper" && sp.metrics != "" {
				if m, err := scrapeMetrics(ctx, sp.metrics, "koipond_keeper_go_heap_objects_bytes", "koipond_keeper_go_heap_goal_bytes", "koipond_run_history_bytes",
					"koipond_keeper_go_heap_live_bytes", "koipond_keeper_go_heap_unused_bytes", "koipond_keeper_go_heap_free_bytes", "koipond_keeper_history_store_bytes",
					"koipond_keeper_history_space_bytes", "koipond_keeper_go_memory_bytes", "koipond_keeper_go_heap_released_bytes", "koipond_keeper_go_gc_percent"); err == nil {
					gogc := ""
					if v, ok := m["koipond_keeper_go_gc_percent"]; ok {
						gogc = fmt.Sprintf(" at GOGC %.0f", v)
					}
					heap = fmt.Sprintf(" (heap objects %.1f, live %.1f, unused %.1f, free %.1f, GC goal %.1f MiB%s; metrics history %.2f MiB, in stores of %.2f MiB in memory, %.2f MiB in all; files mapped %.1f MiB)", m["koipond_keeper_go_heap_objects_bytes"]/(1<<20),
						m["koipond_keeper_go_heap_live_bytes"]/(1<<20), m["koipond_keeper_go_heap_unused_bytes"]/(1<<20), m["koipond_keeper_go_heap_free_bytes"]/(1<<20),
						m["koipond_keeper_go_heap_goal_bytes"]/(1<<20), gogc, m["koipond_run_history_bytes"]/(1<<20), m["koipond_keeper_history_store_bytes"]/(1<<20), m["koipond_keeper_history_space_bytes"]/(1<<20), mib(u.RSSFileKiB))
					gauges.add(t, m)
				}
				gauges.addFile(t, u.RSSFileKiB)
			} else if sp.metrics != "" {
				m, err := scrapeMetrics(ctx, sp.metrics, "koipond_school_websockets_open", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines")
				if err == nil {
					koi = int64(m["koipond_school_websockets_open"])
					heap = fmt.Sprintf(" (heap in use %.1f, stacks %.1f MiB, %.0f goroutines)",
						m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_stack_inuse_bytes"]/(1<<20), m["go_goroutines"])
				}
			}
			s := soakSample{t: t, process: sp.name, rssBytes: u.RSSKiB << 10, cpuSecs: u.CPU.Seconds(), koi: koi, requests: st.RequestsTotal}
			samples = append(samples, s)
			_ = cw.Write([]string{strconv.FormatFloat(t, 'f', 1, 64), s.process, strconv.FormatInt(s.rssBytes, 10),
				strconv.FormatFloat(s.cpuSecs, 'f', 2, 64), strconv.FormatInt(s.koi, 10), strconv.FormatUint(s.requests, 10)})
			line = append(line, fmt.Sprintf("%s %.1f MiB%s %.1f CPU-s", sp.name, mib(u.RSSKiB), heap, s.cpuSecs))
		}
		cw.Flush()
		logf("%4.0f s: koi %d, requests %d; %s; load %s", t, st.WebsocketsOpen, st.RequestsTotal, strings.Join(line, "; "), supervise.LoadAvg())
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("soak.csv: %w", err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("soak cut short: %w", ctx.Err())
	}
	keeperAfter, err := supervise.ReadUsage(kp.Pid())
	if err != nil {
		return err
	}
	growth := keeperGrowth{rssKiB: keeperAfter.RSSKiB - keeperBefore.RSSKiB}
	heapProfile := ""
	if c.keeperPprof {
		heapProfile = filepath.Join(c.out, "keeper.heap.pprof")
	}
	if heapAfter, err := keeperLiveHeap(ctx, keeperBase, heapProfile); err == nil && heapErr == nil {
		growth.liveHeap, growth.heapKnown = heapAfter-heapBefore, true
		logf("keeper live heap (as its last GC found it) and history stores: %.1f MiB before the run, %.1f MiB at the end", mib(heapBefore>>10), mib(heapAfter>>10))
		if heapProfile != "" {
			logf("the keeper's heap profile: %s", heapProfile)
		}
	} else if err != nil {
		logf("the keeper's live heap at the end: %v", err)
	}

	title := fmt.Sprintf("soak: %d koi, time scale %g, %v (load %s)", c.koi, c.timeScale, c.duration, supervise.LoadAvg())
	var names []string
	for _, sp := range procs {
		names = append(names, sp.name)
	}
	svg := soakChart(title, names, samples, c.sample)
	if err := os.WriteFile(filepath.Join(c.out, "soak.svg"), svg, 0o644); err != nil {
		return err
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "== soak summary: %d koi over %d school(s), time scale %g, %v, sampled every %v; %d cores, load average %s\n",
		c.koi, c.schools, c.timeScale, c.duration, c.sample, nprocs(), supervise.LoadAvg())
	figs := map[string]soakFigures{}
	for _, name := range names {
		want := int64(c.koi)
		if strings.HasPrefix(name, "school") {
			want = int64(perSchool)
		}
		line, f := summarize(name, samples, want)
		figs[name] = f
		fmt.Fprintln(&sum, line)
	}
	fmt.Fprintf(&sum, "keeper memory for the run: RSS %.1f MiB before it was created, %.1f MiB at the end: %+.1f MiB",
		mib(keeperBefore.RSSKiB), mib(keeperAfter.RSSKiB), mib(growth.rssKiB))
	if growth.heapKnown {
		fmt.Fprintf(&sum, "; live heap (as its last GC found it), with the history stores outside it, %+.1f MiB", mib(growth.liveHeap>>10))
		if heapProfile != "" {
			fmt.Fprintf(&sum, " (profile: %s)", heapProfile)
		}
	}
	fmt.Fprintln(&sum)
	fmt.Fprint(&sum, keeperGrowthLine(of("keeper", samples), gauges))
	// SIGTERM each school as an operator would: it must exit within a few
	// seconds however busy it is.
	for _, sp := range procs {
		if !strings.HasPrefix(sp.name, "school") {
			continue
		}
		took, err := sp.p.Stop(syscall.SIGTERM, 10*time.Second)
		verdict := "ok (≤ 5 s)"
		switch {
		case err != nil:
			verdict = "FAIL: " + err.Error()
		case took > 5*time.Second:
			verdict = "FAIL (> 5 s)"
		}
		fmt.Fprintf(&sum, "%s exited %v after SIGTERM: %s\n", sp.name, took.Round(time.Millisecond), verdict)
	}
	fmt.Fprintln(&sum, "against issue 14's targets:")
	for _, v := range soakVerdicts(figs, names, growth) {
		fmt.Fprintln(&sum, "  "+v)
	}
	fmt.Fprintf(&sum, "files: %s, %s\n", filepath.Join(c.out, "soak.csv"), filepath.Join(c.out, "soak.svg"))
	fmt.Print("\n" + sum.String())
	return os.WriteFile(filepath.Join(c.out, "summary.txt"), []byte(sum.String()), 0o644)
}

// createSoakRun uploads the demo's behavior files to the keeper and
// creates the always-on run as the demo does (without its guardrail, which
// could pause the run on a loaded machine and end the soak early).
func createSoakRun(ctx context.Context, keeperBase, pondBase string, c soakConfig) (string, error) {
	type file struct {
		Name    string `json:"name"`
		Content string `json:"content"`
	}
	set := struct {
		Name  string `json:"name"`
		Files []file `json:"files"`
	}{Name: "slack"}
	for _, name := range []string{"slack/frequencies.json", "slack/sequences.json"} {
		b, err := fs.ReadFile(examples.FS, name)
		if err != nil {
			return "", err
		}
		set.Files = append(set.Files, file{Name: "examples/" + name, Content: string(b)})
	}
	var setRep struct {
		Hash string `json:"hash"`
	}
	if err := keeperCall(ctx, keeperBase+"/api/v1/behavior-sets", set, &setRep); err != nil {
		return "", fmt.Errorf("uploading the demo's behaviors: %w", err)
	}
	spec := map[string]any{
		"name": "soak", "labels": map[string]string{"kind": "always-on"},
		"target":       map[string]string{"api_base": pondBase + "/api", "token": "xoxp-pond-{{.Index}}", "user_id": `U{{printf "%06d" .Index}}`},
		"behavior_set": setRep.Hash, "koi": c.koi, "ramp": c.ramp, "time_scale": c.timeScale, "activity_sigma": c.sigma,
	}
	var run struct {
		ID string `json:"id"`
	}
	if err := keeperCall(ctx, keeperBase+"/api/v1/runs", spec, &run); err != nil {
		return "", fmt.Errorf("creating the run: %w", err)
	}
	if run.ID == "" {
		return "", errors.New("creating the run: the keeper's reply has no id")
	}
	return run.ID, nil
}

// keeperClient talks to the keeper on loopback.
var keeperClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}

// keeperCall POSTs body as JSON and decodes the reply into out.
func keeperCall(ctx context.Context, url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := keeperClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: HTTP %d: %.300s", url, resp.StatusCode, rb)
	}
	if err := json.Unmarshal(rb, out); err != nil {
		return fmt.Errorf("%s: %w: %.200s", url, err, rb)
	}
	return nil
}

// waitHTTP polls url until it answers 200, up to timeout.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := keeperClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%s: no 200 within %v: %v", url, timeout, last)
}

// scrapeMetrics reads the Prometheus text at url and returns the named
// metrics (summed over their labels).
func scrapeMetrics(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	got := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for i := 0; sc.Scan() && i < 100000; i++ {
		line := sc.Text()
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line[:sp], "{")
		for _, n := range names {
			if name == n {
				v, err := strconv.ParseFloat(line[sp+1:], 64)
				if err == nil {
					got[n] += v
				}
			}
		}
	}
	return got, sc.Err()
}

// keeperLiveHeap returns what the keeper holds for its runs: its live
// heap as its last garbage collection found it (it collects every few
// seconds under load) and what its runs' history stores hold outside the
// heap, from its /metrics. With file, it first takes the keeper's heap
// profile with gc=1 (the keeper runs with --pprof), which makes that
// collection a fresh one, and saves the profile to file.
func keeperLiveHeap(ctx context.Context, keeperBase, file string) (int64, error) {
	if file != "" {
		if err := saveHeapProfile(ctx, keeperBase, file); err != nil {
			return 0, err
		}
	}
	m, err := scrapeMetrics(ctx, keeperBase+"/metrics", "koipond_keeper_go_heap_live_bytes", "koipond_keeper_history_store_bytes")
	if err != nil {
		return 0, err
	}
	v, ok := m["koipond_keeper_go_heap_live_bytes"]
	if !ok {
		return 0, errors.New("the keeper's /metrics has no koipond_keeper_go_heap_live_bytes")
	}
	return int64(v + m["koipond_keeper_history_store_bytes"]), nil
}

// saveHeapProfile saves the keeper's heap profile, taken after a forced
// garbage collection, to file.
func saveHeapProfile(ctx context.Context, keeperBase, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, keeperBase+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("keeper heap profile: HTTP %d", resp.StatusCode)
	}
	prof, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("keeper heap profile: %w", err)
	}
	return os.WriteFile(file, prof, 0o644)
}
