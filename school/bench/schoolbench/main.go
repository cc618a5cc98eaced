// Command schoolbench measures the school's benchmark targets:
// density (RSS and idle CPU of 5,000 and 15,000 connected koi), boot time
// of 5,000 koi with the ramp unlimited, CPU cost per API call against a
// bare Go loop, and stop latency. Run it through school/bench.sh.
//
//	schoolbench run  --koipond PATH [--phases boot,density,big,busy,bare] …
//	    starts pond and the school as separate processes, an embedded
//	    nats-server and a keeper stand-in in this process, and prints a
//	    summary table.
//	schoolbench bare --base URL --n 5000 --rate 2000 --duration 30s
//	    the bare Go loop: n goroutines (token xoxp-pond-<i>) each POSTing
//	    auth.test once per period n/rate at a random instant within the
//	    period (as the koi schedule does with frequency 1), reading and
//	    decoding the reply.
//
// Traffic goes only to 127.0.0.0/8; every loop is bounded in count and
// time; only processes this program started are signaled, by pid.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/deploy/supervise"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: schoolbench run|bare|soak|soak-summary [flags] (see the package doc; normally run by school/bench.sh)")
		os.Exit(2)
	}
	mode, args := os.Args[1], os.Args[2:]
	var err error
	switch mode {
	case "run":
		err = runHarness(args)
	case "bare":
		err = runBare(args)
	case "soak":
		err = runSoak(args)
	case "soak-summary":
		err = runSoakSummary(args)
	default:
		err = fmt.Errorf("unknown mode %q (want run, bare, soak or soak-summary)", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "schoolbench:", err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------------
// Processes: every child is recorded and stopped by its pid on exit.

var (
	procsMu sync.Mutex
	procs   []*supervise.Proc
)

func startProc(name, logPath string, argv ...string) (*supervise.Proc, error) {
	return startProcEnv(name, logPath, nil, argv...)
}

// startProcEnv starts a child with extra environment variables and
// records it for stopAll.
func startProcEnv(name, logPath string, env []string, argv ...string) (*supervise.Proc, error) {
	p, err := supervise.Start(supervise.Command{Name: name, Path: argv[0], Args: argv[1:], Env: env, Log: logPath})
	if err != nil {
		return nil, err
	}
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

// stop sends SIGTERM to the child's pid, waits up to grace, then SIGKILLs
// it (saying so). It returns how long the child took to exit after
// SIGTERM.
func stop(p *supervise.Proc, grace time.Duration) time.Duration {
	took, err := p.Stop(syscall.SIGTERM, grace)
	if err != nil {
		fmt.Fprintln(os.Stderr, "schoolbench:", err)
	}
	return took
}

// stopAll stops every child still running, newest first.
func stopAll() {
	procsMu.Lock()
	ps := slices.Clone(procs)
	procsMu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		stop(ps[i], 6*time.Second)
	}
}

// ---------------------------------------------------------------------
// /proc readers (supervise), in the units the phases print.

// rssKiB returns VmRSS and VmHWM (peak) of pid.
func rssKiB(pid int) (rss, hwm int64, err error) {
	u, err := supervise.ReadUsage(pid)
	return u.RSSKiB, u.PeakRSSKiB, err
}

// cpuSecs returns utime+stime of pid (all threads) in seconds.
func cpuSecs(pid int) (float64, error) {
	u, err := supervise.ReadUsage(pid)
	return u.CPU.Seconds(), err
}

// window measures a process over an interval.
type window struct {
	pid         int
	t0          time.Time
	cpu0        float64
	busy0, tot0 uint64
	load0       string
}

func beginWindow(pid int) (*window, error) {
	c, err := cpuSecs(pid)
	if err != nil {
		return nil, err
	}
	b, t, _ := supervise.MachineCPU()
	return &window{pid: pid, t0: time.Now(), cpu0: c, busy0: b, tot0: t, load0: supervise.LoadAvg()}, nil
}

type windowResult struct {
	secs, cpu    float64 // wall seconds, CPU seconds of the process
	machine      float64 // machine busy fraction (of all cores)
	load0, load1 string
}

func (w *window) end() (windowResult, error) {
	c, err := cpuSecs(w.pid)
	if err != nil {
		return windowResult{}, err
	}
	b, t, _ := supervise.MachineCPU()
	r := windowResult{secs: time.Since(w.t0).Seconds(), cpu: c - w.cpu0, load0: w.load0, load1: supervise.LoadAvg()}
	if t > w.tot0 {
		r.machine = float64(b-w.busy0) / float64(t-w.tot0)
	}
	return r, nil
}

// connsBySource counts established TCP connections to port, by local IPv4
// address (from /proc/net/tcp; the table is per network namespace).
func connsBySource(port int) map[string]int {
	out := map[string]int{}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	want := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[3] != "01" || !strings.HasSuffix(fs[2], want) {
			continue
		}
		hexIP, _, _ := strings.Cut(fs[1], ":")
		v, err := strconv.ParseUint(hexIP, 16, 32)
		if err != nil {
			continue
		}
		// Little-endian on the machines this runs on.
		ip := net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)).String()
		out[ip]++
	}
	return out
}

// ---------------------------------------------------------------------
// Pond's /stats.

// waitStats polls /stats every step until cond holds, up to timeout.
func waitStats(ctx context.Context, base string, step, timeout time.Duration, cond func(pond.Stats) bool) (pond.Stats, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		st, err := supervise.PondStats(ctx, base)
		now := time.Now()
		if err == nil && cond(st) {
			return st, now, nil
		}
		if now.After(deadline) || i > 1_000_000 {
			if err == nil {
				err = fmt.Errorf("timed out after %v (websockets_open %d)", timeout, st.WebsocketsOpen)
			}
			return st, now, err
		}
		if !sleepCtx(ctx, step) {
			return st, now, ctx.Err()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ---------------------------------------------------------------------
// The keeper stand-in: poll replies with assignments, blobs by hash, and
// the control publisher.

type keeper struct {
	nc  *nats.Conn
	key nkeys.KeyPair // signs the switches, as the keeper does

	mu         sync.Mutex
	sw         wire.Control
	assign     []wire.Assignment
	assignedAt time.Time // first poll reply that carried assign
	blobs      map[string][]wire.File
	polls      map[string]wire.PollRequest
	pollMS     int64
}

func newKeeper(url string) (*keeper, error) {
	nc, err := nats.Connect(url, nats.Name("schoolbench-keeper"))
	if err != nil {
		return nil, err
	}
	key, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	k := &keeper{nc: nc, key: key, sw: wire.Control{Epoch: 1, State: wire.Running, At: time.Now()},
		blobs: map[string][]wire.File{}, polls: map[string]wire.PollRequest{}, pollMS: 1000}
	if _, err := nc.Subscribe(wire.SubjectPoll, k.onPoll); err != nil {
		return nil, err
	}
	if _, err := nc.Subscribe(wire.SubjectBlob, k.onBlob); err != nil {
		return nil, err
	}
	return k, nc.Flush()
}

func (k *keeper) onPoll(m *nats.Msg) {
	var req wire.PollRequest
	if err := wire.Decode(m.Data, &req); err != nil {
		fmt.Fprintln(os.Stderr, "keeper: bad poll:", err)
		return
	}
	k.mu.Lock()
	k.polls[req.School] = req
	if len(k.assign) > 0 && k.assignedAt.IsZero() {
		k.assignedAt = time.Now()
	}
	rep := &wire.PollReply{Switch: k.sw, KeeperTime: time.Now(), PollIntervalMS: k.pollMS, LeaseMS: 10000,
		Assignments: append([]wire.Assignment(nil), k.assign...)}
	rep.KeeperKey, _ = k.key.PublicKey()
	k.sign(&rep.Switch)
	for i := range rep.Assignments {
		k.sign(&rep.Assignments[i].Switch)
	}
	b, err := wire.Encode(rep)
	k.mu.Unlock()
	if err == nil {
		_ = m.Respond(b)
	}
}

func (k *keeper) onBlob(m *nats.Msg) {
	var req wire.BlobRequest
	if err := wire.Decode(m.Data, &req); err != nil {
		return
	}
	k.mu.Lock()
	files, ok := k.blobs[req.Hash]
	k.mu.Unlock()
	rep := &wire.BlobReply{Kind: req.Kind, Hash: req.Hash, Files: files}
	if !ok {
		rep.Error = "no such blob"
	}
	b, _ := wire.Encode(rep)
	_ = m.Respond(b)
}

// addSet parses a behavior set, stores it as a blob and returns its hash.
func (k *keeper) addSet(name, src string) (string, error) {
	f := behaviors.File{Name: name, Data: []byte(src)}
	set, diags := behaviors.Parse(f)
	if set == nil {
		return "", fmt.Errorf("behavior set %s: %v", name, diags)
	}
	k.mu.Lock()
	k.blobs[set.Hash] = []wire.File{{Name: f.Name, Data: f.Data}}
	k.mu.Unlock()
	return set.Hash, nil
}

// setAssignments replaces the assignments; assignedAt restarts.
func (k *keeper) setAssignments(as []wire.Assignment) {
	k.mu.Lock()
	k.assign = as
	k.assignedAt = time.Time{}
	k.mu.Unlock()
}

func (k *keeper) assignedTime() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.assignedAt
}

func (k *keeper) lastPoll(school string) (wire.PollRequest, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.polls[school]
	return p, ok
}

// sign signs a switch with the stand-in keeper's key.
func (k *keeper) sign(c *wire.Control) {
	c.Sig, _ = k.key.Sign(c.SigningBytes())
}

// resetSwitch makes the global switch running again with a new epoch
// (between phases, so a new school starts running).
func (k *keeper) resetSwitch() {
	k.mu.Lock()
	k.sw = wire.Control{Epoch: k.sw.Epoch + 1, State: wire.Running, At: time.Now()}
	k.mu.Unlock()
}

// publish pushes a global switch change on koipond.control and returns
// the instant just before the publish.
func (k *keeper) publish(state wire.State) (time.Time, uint64, error) {
	k.mu.Lock()
	k.sw = wire.Control{Epoch: k.sw.Epoch + 1, State: state, By: "schoolbench", At: time.Now()}
	c := k.sw
	k.mu.Unlock()
	k.sign(&c)
	b, err := wire.Encode(&c)
	if err != nil {
		return time.Time{}, 0, err
	}
	at := time.Now()
	if err := k.nc.Publish(wire.SubjectControl, b); err != nil {
		return at, 0, err
	}
	return at, c.Epoch, k.nc.Flush()
}

// ---------------------------------------------------------------------
// Behavior sets.

// idleSet: boot calls rtm.connect and opens the websocket it names; no
// behavior has a frequency, so connected koi sit idle.
const idleSet = `{
  "boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {}}`

// busySet: the same boot, and one api behavior at frequency 1 (one call
// per koi per behavior minute; the time scale sets the rate).
const busySet = `{
  "boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`

// ---------------------------------------------------------------------
// The harness.

type harness struct {
	ctx         context.Context
	tmp         string
	koipond     string
	self        string
	pondBase    string
	pondPort    int
	schoolHTTP  string
	natsURL     string
	k           *keeper
	idleHash    string
	busyHash    string
	historyHash string
	schools     int

	n, big, sources       int
	densityRamp           float64
	schoolEnv             []string
	schoolArgs            []string // added to every school's arguments
	hold                  time.Duration
	bigRamp, rate         float64
	idle, settle, measure time.Duration

	rows      [][]string // summary: figure, target, measured, verdict
	notes     []string
	idleCPUps float64 // school CPU-s per second, 5,000 idle koi

	historyKoi   int           // koi of the history phases
	historyEvery time.Duration // mean period of their calls
	k6           string        // k6 binary for the k6 phase ("": PATH)
	locust       string        // locust for the locust phase ("": PATH)
}

func (h *harness) row(figure, target, got string, pass bool) {
	v := "PASS"
	if !pass {
		v = "MISS"
	}
	h.rows = append(h.rows, []string{figure, target, got, v})
}

func (h *harness) info(figure, got string) {
	h.rows = append(h.rows, []string{figure, "-", got, ""})
}

func logf(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func runHarness(args []string) error {
	fs := flag.NewFlagSet("schoolbench run", flag.ContinueOnError)
	koipond := fs.String("koipond", "", "koipond binary (default: go build -o TMP/koipond ./cmd/koipond)")
	goBin := fs.String("go", "go", "go command, to build koipond when --koipond is not given")
	phases := fs.String("phases", "boot,density,big,busy,bare", "comma-separated phases: boot (N idle koi booted with the ramp unlimited: boot time, then RSS and CPU), density (N idle koi booted at --density-ramp: RSS and CPU), big (BIG idle koi), busy (cost per call + stop latency), bare (the bare loop), and, not by default, history (CPU per request: --history-koi koi calling conversations.history every --history-every), history-bare (the bare loop making those calls), k6 (k6 making them, if a k6 binary is there), locust (Locust making them, if locust is there)")
	pondPort := fs.Int("pond-port", 19290, "pond's port on 127.0.0.1")
	schoolPort := fs.Int("school-port", 19291, "the school's --http port on 127.0.0.1")
	n := fs.Int("n", 5000, "koi for boot, density, cost and stop")
	big := fs.Int("big", 15000, "koi for the big density figure")
	sources := fs.Int("sources", 8, "source addresses 127.0.0.2… for the big school")
	densityRamp := fs.Float64("density-ramp", 2500, "ramp (koi/s) of the density phase")
	hold := fs.Duration("hold", 0, "after the idle window, keep the N idle koi until this long after boot and measure again (0: skip)")
	bigRamp := fs.Float64("big-ramp", 3000, "ramp (koi/s) of the big school (0: unlimited)")
	rate := fs.Float64("rate", 2000, "api calls/s of the busy school (sets the time scale)")
	idle := fs.Duration("idle", 30*time.Second, "idle CPU window")
	settle := fs.Duration("settle", 10*time.Second, "wait after connecting before measuring")
	measure := fs.Duration("measure", 20*time.Second, "cost-per-call window")
	timeout := fs.Duration("timeout", 20*time.Minute, "bound on the whole run")
	historyKoi := fs.Int("history-koi", 2000, "koi (and bare-loop goroutines, k6 VUs, Locust users) of the history phases")
	historyEvery := fs.Duration("history-every", 6*time.Second, "mean period of each koi's conversations.history call")
	k6 := fs.String("k6", os.Getenv("K6"), "k6 binary for the k6 phase (default $K6, else k6 on PATH; absent: the row is skipped)")
	locust := fs.String("locust", os.Getenv("LOCUST"), "locust command for the locust phase (default $LOCUST, else locust on PATH; absent: the row is skipped)")
	tmpDir := fs.String("tmp", "", "work directory for binaries and logs (default: a new temporary one, removed at the end)")
	var schoolEnv, schoolArgs, pondArgs listFlag
	fs.Var(&schoolArgs, "school-arg", "extra argument for every `koipond school` (repeatable; e.g. --school-arg=--fire-granularity=0 to compare)")
	fs.Var(&pondArgs, "pond-arg", "extra argument for `koipond pond` (repeatable; e.g. --pond-arg=--ping-interval=-1s for an investigation)")
	fs.Var(&schoolEnv, "school-env", "KEY=VALUE added to the school's environment (repeatable; e.g. GODEBUG=gctrace=1 for an investigation)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *historyKoi < 1 || *historyKoi > 20000 || *historyEvery < 100*time.Millisecond || *historyEvery > 10*time.Minute {
		return errors.New("--history-koi must be 1..20000, --history-every 100ms..10m")
	}
	if *n < 1 || *n > 20000 || *big < 1 || *big > 20000 || *sources < 1 || *sources > 250 || *rate <= 0 || *rate > 50000 {
		return errors.New("--n and --big must be 1..20000 (pond has 20,000 users), --sources 1..250, --rate in (0, 50000]")
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	defer stopAll()
	// On SIGINT/SIGTERM: stop every child by pid, then exit.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "schoolbench: %v: stopping the processes it started\n", s)
		cancel()
		stopAll()
		os.Exit(130)
	}()

	// The children inherit this limit (supervise.RaiseNoFile).
	nofile, err := supervise.RaiseNoFile()
	if err != nil {
		return err
	}

	tmp := *tmpDir
	if tmp == "" {
		d, err := os.MkdirTemp("", "schoolbench-")
		if err != nil {
			return err
		}
		tmp = d
		defer os.RemoveAll(tmp)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	h := &harness{ctx: ctx, tmp: tmp, koipond: *koipond, self: self, pondPort: *pondPort,
		pondBase:   fmt.Sprintf("http://127.0.0.1:%d", *pondPort),
		schoolHTTP: fmt.Sprintf("127.0.0.1:%d", *schoolPort),
		n:          *n, big: *big, sources: *sources, bigRamp: *bigRamp, rate: *rate,
		idle: *idle, settle: *settle, measure: *measure, densityRamp: *densityRamp, hold: *hold, schoolEnv: schoolEnv, schoolArgs: schoolArgs,
		historyKoi: *historyKoi, historyEvery: *historyEvery, k6: *k6, locust: *locust}
	if len(schoolArgs) > 0 {
		h.notes = append(h.notes, "school arguments: "+strings.Join(schoolArgs, " "))
	}
	if len(schoolEnv) > 0 {
		h.notes = append(h.notes, "school environment: "+strings.Join(schoolEnv, " "))
	}
	if h.koipond == "" {
		h.koipond = filepath.Join(tmp, "koipond")
		logf("building %s", h.koipond)
		b := exec.CommandContext(ctx, *goBin, "build", "-o", h.koipond, "./cmd/koipond")
		b.Stdout, b.Stderr = os.Stdout, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}
	if uint64(h.big)+1000 > nofile {
		h.notes = append(h.notes, fmt.Sprintf("open-files limit %d is tight for %d koi", nofile, h.big))
	}
	logf("machine: %d cores, open-files limit %d, load average %s", nprocs(), nofile, supervise.LoadAvg())

	// NATS and the keeper, in this process.
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		return errors.New("nats-server did not start")
	}
	defer ns.Shutdown()
	h.natsURL = ns.ClientURL()
	if h.k, err = newKeeper(h.natsURL); err != nil {
		return err
	}
	defer h.k.nc.Close()
	if h.idleHash, err = h.k.addSet("idle.json", idleSet); err != nil {
		return err
	}
	if h.busyHash, err = h.k.addSet("busy.json", busySet); err != nil {
		return err
	}
	if h.historyHash, err = h.k.addSet("history.json", historySet); err != nil {
		return err
	}

	// Pond, a separate process, for every phase.
	pondArgv := append([]string{h.koipond, "pond", "--http", fmt.Sprintf("127.0.0.1:%d", h.pondPort), "--users", "20000", "--no-rate-limits"}, pondArgs...)
	if len(pondArgs) > 0 {
		h.notes = append(h.notes, "pond arguments: "+strings.Join(pondArgs, " "))
	}
	pondProc, err := startProc("pond", filepath.Join(tmp, "pond.log"), pondArgv...)
	if err != nil {
		return err
	}
	if _, _, err := waitStats(ctx, h.pondBase, 100*time.Millisecond, 30*time.Second, func(pond.Stats) bool { return true }); err != nil {
		return fmt.Errorf("pond did not come up: %v\n%s", err, supervise.Tail(pondProc.Log, 20))
	}
	logf("pond pid %d at %s; nats at %s", pondProc.Pid(), h.pondBase, h.natsURL)

	want := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		want[strings.TrimSpace(p)] = true
	}
	var runErr error
	for _, ph := range []struct {
		name string
		f    func() error
	}{{"boot", func() error { return h.phaseIdle(0) }}, {"density", func() error { return h.phaseIdle(h.densityRamp) }}, {"big", h.phaseBig}, {"busy", h.phaseBusy}, {"bare", h.phaseBare},
		{"history", h.phaseHistory}, {"history-bare", h.phaseHistoryBare}, {"k6", h.phaseK6}, {"locust", h.phaseLocust}} {
		if !want[ph.name] || ctx.Err() != nil {
			continue
		}
		if err := ph.f(); err != nil {
			logf("phase %s failed: %v", ph.name, err)
			runErr = errors.Join(runErr, fmt.Errorf("phase %s: %w", ph.name, err))
		}
		// Every phase leaves pond without koi: wait for the sockets to go.
		_, _, _ = waitStats(ctx, h.pondBase, 100*time.Millisecond, 10*time.Second, func(s pond.Stats) bool { return s.WebsocketsOpen == 0 })
		if pondProc.Exited() {
			return fmt.Errorf("pond exited:\n%s", supervise.Tail(pondProc.Log, 20))
		}
	}
	h.summary()
	return runErr
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func nprocs() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor") + boolInt(strings.HasPrefix(string(b), "processor"))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// startSchool starts `koipond school` and waits for its first poll.
func (h *harness) startSchool(capacity int, extra ...string) (*supervise.Proc, string, error) {
	h.schools++
	id := fmt.Sprintf("bench-%d", h.schools)
	// Every school starts from zero: no assignment until the phase sets one.
	h.k.setAssignments(nil)
	argv := append([]string{h.koipond, "school", "--nats", h.natsURL, "--id", id,
		"--capacity", strconv.Itoa(capacity), "--http", h.schoolHTTP}, append(slices.Clone(h.schoolArgs), extra...)...)
	p, err := startProcEnv("school "+id, filepath.Join(h.tmp, id+".log"), h.schoolEnv, argv...)
	if err != nil {
		return nil, id, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, ok := h.k.lastPoll(id); ok {
			break
		}
		if p.Exited() || time.Now().After(deadline) || !sleepCtx(h.ctx, 20*time.Millisecond) {
			return p, id, fmt.Errorf("school %s did not poll the keeper:\n%s", id, supervise.Tail(p.Log, 20))
		}
	}
	logf("school %s pid %d polling (capacity %d %s)", id, p.Pid(), capacity, strings.Join(extra, " "))
	return p, id, nil
}

func (h *harness) spec(name, set string, timeScale float64) wire.RunSpec {
	return wire.RunSpec{Name: name, BehaviorSet: set, APIBase: h.pondBase + "/api",
		Token: "xoxp-pond-{{.Index}}", TimeScale: timeScale}
}

// stopSchool sends SIGTERM and reports how the websockets went away.
func (h *harness) stopSchool(p *supervise.Proc) {
	took := stop(p, 8*time.Second)
	st, _, err := waitStats(h.ctx, h.pondBase, 20*time.Millisecond, 5*time.Second, func(s pond.Stats) bool { return s.WebsocketsOpen == 0 })
	if err != nil {
		logf("after SIGTERM: pond still has %d websockets open", st.WebsocketsOpen)
		return
	}
	logf("school pid %d exited %v after SIGTERM; pond websockets_open 0", p.Pid(), took.Round(time.Millisecond))
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// metricsClient scrapes the school's /metrics on loopback.
var metricsClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}

// schoolMemory scrapes the school's /metrics (the Go collector) for where
// its memory is: heap in use, heap idle but not yet returned to the OS,
// goroutine stacks, goroutines.
func (h *harness) schoolMemory() string {
	resp, err := metricsClient.Get("http://" + h.schoolHTTP + "/metrics")
	if err != nil {
		return "(/metrics: " + err.Error() + ")"
	}
	defer resp.Body.Close()
	want := []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
		"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_goroutines", "koipond_school_websockets_open"}
	got := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for i := 0; sc.Scan() && i < 100000; i++ {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(want, name) {
			continue
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		got[name] = v
	}
	m := func(k string) float64 { return got[k] / (1 << 20) }
	return fmt.Sprintf("heap in use %.1f MiB, heap idle %.1f (released %.1f), stacks %.1f MiB, Go sys %.1f MiB, %.0f goroutines",
		m("go_memstats_heap_inuse_bytes"), m("go_memstats_heap_idle_bytes"), m("go_memstats_heap_released_bytes"),
		m("go_memstats_stack_inuse_bytes"), m("go_memstats_sys_bytes"), got["go_goroutines"])
}

// apiConns counts the school's TCP connections to pond from 127.0.0.1
// (websockets and keep-alive API connections; the harness's own /stats
// connection is one of them).
func (h *harness) conns127() int { return connsBySource(h.pondPort)["127.0.0.1"] }

// idleWindow measures p over h.idle, sampling its RSS every second; it
// returns the window, the RSS at its end, the largest RSS seen in it
// (that one included) and the peak VmHWM, all in KiB.
func (h *harness) idleWindow(p *supervise.Proc) (res windowResult, rss, maxRSS, hwm int64, err error) {
	w, err := beginWindow(p.Pid())
	if err != nil {
		return res, 0, 0, 0, err
	}
	for end := time.Now().Add(h.idle); time.Now().Before(end); {
		if r, _, err := rssKiB(p.Pid()); err == nil {
			maxRSS = max(maxRSS, r)
		}
		if !sleepCtx(h.ctx, time.Second) {
			return res, 0, 0, 0, h.ctx.Err()
		}
	}
	if res, err = w.end(); err != nil {
		return res, 0, 0, 0, err
	}
	if rss, hwm, err = rssKiB(p.Pid()); err != nil {
		return res, 0, 0, 0, err
	}
	return res, rss, max(maxRSS, rss), hwm, nil
}

// cpuWindow measures p over d.
func (h *harness) cpuWindow(p *supervise.Proc, d time.Duration) (windowResult, error) {
	w, err := beginWindow(p.Pid())
	if err != nil {
		return windowResult{}, err
	}
	if !sleepCtx(h.ctx, d) {
		return windowResult{}, h.ctx.Err()
	}
	return w.end()
}

// authTestWindow measures p over h.measure and counts the auth.test calls
// pond answered meanwhile: with 200, and otherwise.
func (h *harness) authTestWindow(p *supervise.Proc) (res windowResult, calls, bad uint64, err error) {
	s0, err := supervise.PondStats(h.ctx, h.pondBase)
	if err != nil {
		return res, 0, 0, err
	}
	if res, err = h.cpuWindow(p, h.measure); err != nil {
		return res, 0, 0, err
	}
	s1, err := supervise.PondStats(h.ctx, h.pondBase)
	if err != nil {
		return res, 0, 0, err
	}
	ok0, bad0 := supervise.Calls(s0, "auth.test")
	ok1, bad1 := supervise.Calls(s1, "auth.test")
	return res, ok1 - ok0, bad1 - bad0, nil
}

// phaseBoot: N koi from zero to connected with the ramp unlimited, then
// the density of N idle koi (RSS, CPU over the idle window).
func (h *harness) phaseIdle(ramp float64) error {
	how := "ramp unlimited"
	if ramp > 0 {
		how = fmt.Sprintf("ramp %g/s", ramp)
	}
	logf("== boot + density: %d koi, %s, idle behavior set", h.n, how)
	h.k.resetSwitch()
	p, id, err := h.startSchool(h.n)
	if err != nil {
		return err
	}
	defer h.stopSchool(p)
	if !sleepCtx(h.ctx, 2*time.Second) {
		return h.ctx.Err()
	}
	rss0, _, err := rssKiB(p.Pid())
	if err != nil {
		return err
	}
	before, err := supervise.PondStats(h.ctx, h.pondBase)
	if err != nil {
		return err
	}
	if before.WebsocketsOpen != 0 {
		return fmt.Errorf("pond has %d websockets open before the boot", before.WebsocketsOpen)
	}
	load := supervise.LoadAvg()
	set := time.Now()
	h.k.setAssignments([]wire.Assignment{{Run: "idle", From: 0, To: h.n, Ramp: ramp, Spec: h.spec("idle", h.idleHash, 1)}})
	st, done, err := waitStats(h.ctx, h.pondBase, 10*time.Millisecond, 120*time.Second, func(s pond.Stats) bool { return s.WebsocketsOpen >= int64(h.n) })
	if err != nil {
		return fmt.Errorf("waiting for %d websockets: %v\n%s", h.n, err, supervise.Tail(p.Log, 20))
	}
	t0 := h.k.assignedTime()
	if t0.IsZero() || t0.Before(set) {
		return fmt.Errorf("the keeper did not record when it handed out the assignment")
	}
	boot := done.Sub(t0)
	rtm, rtmOther := supervise.Calls(st, "rtm.connect")
	rtm0, _ := supervise.Calls(before, "rtm.connect")
	logf("boot: %d websockets open %v after the poll reply carrying the assignment (%v after it was set; load %s); rtm.connect +%d (non-200: %d)",
		st.WebsocketsOpen, boot.Round(time.Millisecond), done.Sub(set).Round(time.Millisecond), load, rtm-rtm0, rtmOther)
	if ramp == 0 {
		h.row(fmt.Sprintf("boot: %d koi to connected, ramp unlimited", h.n), "≤ 10 s",
			fmt.Sprintf("%.2f s (load %s)", boot.Seconds(), load), boot <= 10*time.Second)
	} else {
		h.info(fmt.Sprintf("boot: %d koi to connected, %s", h.n, how), fmt.Sprintf("%.2f s", boot.Seconds()))
	}

	logf("settling %v", h.settle)
	if !sleepCtx(h.ctx, h.settle) {
		return h.ctx.Err()
	}
	res, rss, maxRSS, hwm, err := h.idleWindow(p)
	if err != nil {
		return err
	}
	st, err = supervise.PondStats(h.ctx, h.pondBase)
	if err != nil {
		return err
	}
	pr, _ := h.k.lastPoll(id)
	cpuPct := 100 * res.cpu / res.secs
	h.idleCPUps = res.cpu / res.secs
	logf("density %d: RSS %.1f MiB (max in window %.1f, peak VmHWM %.1f, empty school %.1f), %.1f KiB/koi; CPU %.2f s over %.1f s = %.2f%% of a core; machine busy %.0f%%; load %s → %s; pond websockets_open %d; school reports %d koi running, %d websockets",
		h.n, mib(rss), mib(maxRSS), mib(hwm), mib(rss0), float64(rss)/float64(h.n), res.cpu, res.secs, cpuPct,
		100*res.machine, res.load0, res.load1, st.WebsocketsOpen, pr.KoiRunning, pr.WebsocketsOpen)
	mem := h.schoolMemory()
	apiConns := h.conns127() - 1 - int(st.WebsocketsOpen)
	logf("school memory: %s; school connections to pond: %d websockets + %d keep-alive API connections", mem, st.WebsocketsOpen, apiConns)
	h.row(fmt.Sprintf("density: RSS, %d idle koi (%s)", h.n, how), "≤ 120 MiB",
		fmt.Sprintf("%.1f MiB (max %.1f; %.1f KiB/koi; pond websockets_open %d)", mib(rss), mib(maxRSS), float64(rss)/float64(h.n), st.WebsocketsOpen),
		maxRSS <= 120*1024 && st.WebsocketsOpen == int64(h.n))
	h.info("  where the memory is (school /metrics)", fmt.Sprintf("%s; %d keep-alive API connections; VmHWM %.1f MiB", mem, apiConns, mib(hwm)))
	h.row(fmt.Sprintf("density: CPU, %d idle koi (%s) over %v", h.n, how, h.idle), "≤ 3% of one core",
		fmt.Sprintf("%.2f%% (%.2f CPU-s; load %s → %s)", cpuPct, res.cpu, res.load0, res.load1), cpuPct <= 3)
	if h.hold > 0 {
		// Watch RSS while the school's idle API connections expire (the
		// transport closes them after 90 s idle) and the Go runtime
		// returns freed memory.
		for time.Since(done) < h.hold {
			if !sleepCtx(h.ctx, 10*time.Second) {
				return h.ctx.Err()
			}
			r, _, _ := rssKiB(p.Pid())
			logf("  %3.0f s after boot: RSS %.1f MiB; %s; school connections to pond %d",
				time.Since(done).Seconds(), mib(r), h.schoolMemory(), h.conns127()-1)
		}
		res, err := h.cpuWindow(p, h.idle)
		if err != nil {
			return err
		}
		r, _, _ := rssKiB(p.Pid())
		logf("  %3.0f s after boot: RSS %.1f MiB; CPU %.2f%% of a core over %.0f s", time.Since(done).Seconds(), mib(r), 100*res.cpu/res.secs, res.secs)
		h.info(fmt.Sprintf("  RSS and CPU %.0f s after boot, %d idle koi", time.Since(done).Seconds(), h.n),
			fmt.Sprintf("%.1f MiB, %.2f%% of a core (load %s → %s)", mib(r), 100*res.cpu/res.secs, res.load0, res.load1))
	}
	return nil
}

// phaseBig: BIG idle koi in one school over several source addresses.
func (h *harness) phaseBig() error {
	logf("== density: %d koi in one school, %d source addresses, ramp %v/s", h.big, h.sources, h.bigRamp)
	h.k.resetSwitch()
	var srcs []string
	for i := range h.sources {
		srcs = append(srcs, fmt.Sprintf("127.0.0.%d", 2+i))
	}
	p, id, err := h.startSchool(h.big, "--source-ips", strings.Join(srcs, ","))
	if err != nil {
		return err
	}
	defer h.stopSchool(p)
	set := time.Now()
	h.k.setAssignments([]wire.Assignment{{Run: "big", From: 0, To: h.big, Ramp: h.bigRamp, Spec: h.spec("big", h.idleHash, 1)}})
	_, done, err := waitStats(h.ctx, h.pondBase, 50*time.Millisecond, 180*time.Second, func(s pond.Stats) bool { return s.WebsocketsOpen >= int64(h.big) })
	if err != nil {
		pr, _ := h.k.lastPoll(id)
		return fmt.Errorf("waiting for %d websockets: %v (school: %+v)\n%s", h.big, err, pr.Runs, supervise.Tail(p.Log, 20))
	}
	logf("%d websockets open %v after the assignment was set", h.big, done.Sub(set).Round(time.Millisecond))
	if !sleepCtx(h.ctx, h.settle) {
		return h.ctx.Err()
	}
	res, rss, maxRSS, hwm, err := h.idleWindow(p)
	if err != nil {
		return err
	}
	st, err := supervise.PondStats(h.ctx, h.pondBase)
	if err != nil {
		return err
	}
	bySrc := connsBySource(h.pondPort)
	var parts []string
	for _, s := range srcs {
		parts = append(parts, fmt.Sprintf("%s:%d", s, bySrc[s]))
	}
	if n := bySrc["127.0.0.1"]; n > 0 {
		parts = append(parts, fmt.Sprintf("127.0.0.1:%d", n))
	}
	cpuPct := 100 * res.cpu / res.secs
	logf("density %d: RSS %.1f MiB (max %.1f, VmHWM %.1f), %.1f KiB/koi; CPU %.2f%% of a core over %.0f s; load %s → %s; pond websockets_open %d; connections to pond by source: %s",
		h.big, mib(rss), mib(maxRSS), mib(hwm), float64(rss)/float64(h.big), cpuPct, res.secs, res.load0, res.load1,
		st.WebsocketsOpen, strings.Join(parts, " "))
	h.row(fmt.Sprintf("density: RSS, %d idle koi, %d sources", h.big, h.sources), "≤ 360 MiB",
		fmt.Sprintf("%.1f MiB (max %.1f; %.1f KiB/koi; pond websockets_open %d)", mib(rss), mib(maxRSS), float64(rss)/float64(h.big), st.WebsocketsOpen),
		maxRSS <= 360*1024 && st.WebsocketsOpen == int64(h.big))
	h.info(fmt.Sprintf("  CPU, %d idle koi", h.big), fmt.Sprintf("%.2f%% of a core", cpuPct))
	h.info("  connections to pond by source", strings.Join(parts, " "))
	return nil
}

// busy is what phaseBusy measured, for phaseBare.
var busy struct {
	rate, per10k float64
	calls        uint64
}

// phaseBusy: N busy koi; CPU per 10,000 api calls, then the stop latency.
func (h *harness) phaseBusy() error {
	scale := h.rate * 60 / float64(h.n)
	logf("== busy: %d koi, auth.test at frequency 1, time scale %.2f (%.0f calls/s)", h.n, scale, h.rate)
	h.k.resetSwitch()
	p, id, err := h.startSchool(h.n)
	if err != nil {
		return err
	}
	defer h.stopSchool(p)
	h.k.setAssignments([]wire.Assignment{{Run: "busy", From: 0, To: h.n, Ramp: 0, Spec: h.spec("busy", h.busyHash, scale)}})
	if _, _, err := waitStats(h.ctx, h.pondBase, 20*time.Millisecond, 120*time.Second, func(s pond.Stats) bool { return s.WebsocketsOpen >= int64(h.n) }); err != nil {
		return fmt.Errorf("waiting for %d websockets: %v\n%s", h.n, err, supervise.Tail(p.Log, 20))
	}
	settle := min(h.settle, 5*time.Second)
	if !sleepCtx(h.ctx, settle) {
		return h.ctx.Err()
	}
	res, calls, bad, err := h.authTestWindow(p)
	if err != nil {
		return err
	}
	if calls == 0 {
		return errors.New("no auth.test calls reached pond")
	}
	busy.rate = float64(calls) / res.secs
	busy.per10k = res.cpu / float64(calls) * 10000
	busy.calls = calls
	logf("school: %d auth.test calls (non-200: %d) in %.1f s = %.0f/s; CPU %.2f s = %.1f%% of a core → %.3f CPU-s per 10,000 calls; machine busy %.0f%%; load %s → %s",
		calls, bad, res.secs, busy.rate, res.cpu, 100*res.cpu/res.secs, busy.per10k, 100*res.machine, res.load0, res.load1)
	h.info("cost: school CPU-s per 10,000 api steps", fmt.Sprintf("%.3f (%.0f calls/s, %.1f%% of a core; load %s → %s)",
		busy.per10k, busy.rate, 100*res.cpu/res.secs, res.load0, res.load1))

	// Stop latency: publish a global stop; poll /stats every few ms.
	logf("publishing a global stop")
	pre, _ := supervise.PondStats(h.ctx, h.pondBase)
	stopAt, epoch, err := h.k.publish(wire.Stopped)
	if err != nil {
		return err
	}
	last := pre.RequestsTotal
	lastChange := stopAt
	var wsZero time.Time
	var after uint64
	polls := 0
	for deadline := stopAt.Add(15 * time.Second); time.Now().Before(deadline); {
		st, err := supervise.PondStats(h.ctx, h.pondBase)
		now := time.Now()
		polls++
		if err == nil {
			if st.RequestsTotal != last {
				after += st.RequestsTotal - last
				last, lastChange = st.RequestsTotal, now
			}
			if wsZero.IsZero() && st.WebsocketsOpen == 0 {
				wsZero = now
			}
			if !wsZero.IsZero() && now.Sub(lastChange) >= 500*time.Millisecond {
				break
			}
		}
		if !sleepCtx(h.ctx, 3*time.Millisecond) {
			return h.ctx.Err()
		}
	}
	lastReq := lastChange.Sub(stopAt)
	logf("stop (epoch %d): last request reached pond %v after the publish (%d requests counted after it; %d /stats polls); websockets_open 0 after %v; load %s",
		epoch, lastReq.Round(time.Millisecond), after, polls, wsZero.Sub(stopAt).Round(time.Millisecond), supervise.LoadAvg())
	h.row(fmt.Sprintf("stop: last request after a global stop, %d busy koi", h.n), "≤ 250 ms",
		fmt.Sprintf("%d ms (%d requests after the publish)", lastReq.Milliseconds(), after), lastReq <= 250*time.Millisecond)
	if wsZero.IsZero() {
		h.row("stop: all websockets closed", "≤ 2 s", "not within 15 s", false)
	} else {
		h.row("stop: all websockets closed", "≤ 2 s", fmt.Sprintf("%d ms", wsZero.Sub(stopAt).Milliseconds()), wsZero.Sub(stopAt) <= 2*time.Second)
	}
	waitPoll := time.Now().Add(5 * time.Second)
	for time.Now().Before(waitPoll) {
		if pr, ok := h.k.lastPoll(id); ok && pr.Epoch == epoch && pr.KoiRunning == 0 && pr.WebsocketsOpen == 0 {
			logf("the school confirmed the stop in a poll (koi_running 0, websockets_open 0)")
			break
		}
		if !sleepCtx(h.ctx, 50*time.Millisecond) {
			return h.ctx.Err()
		}
	}
	h.k.setAssignments(nil)
	return nil
}

// phaseBare: the bare loop, a separate process, at the school's rate.
func (h *harness) phaseBare() error {
	rate := busy.rate
	if rate == 0 {
		rate = h.rate
		h.notes = append(h.notes, "bare loop ran at --rate (the busy phase did not run)")
	}
	warm := 5 * time.Second
	total := warm + h.measure + 5*time.Second
	logf("== bare Go loop: %d goroutines, auth.test at %.0f calls/s total, %v", h.n, rate, total)
	p, err := startProc("bare loop", filepath.Join(h.tmp, "bare.log"), h.self, "bare",
		"--base", h.pondBase, "--n", strconv.Itoa(h.n), "--rate", strconv.FormatFloat(rate, 'f', 1, 64),
		"--duration", total.String())
	if err != nil {
		return err
	}
	defer stop(p, 5*time.Second)
	if !sleepCtx(h.ctx, warm) {
		return h.ctx.Err()
	}
	if p.Exited() {
		return fmt.Errorf("bare loop exited:\n%s", supervise.Tail(p.Log, 20))
	}
	res, calls, bad, err := h.authTestWindow(p)
	if err != nil {
		return err
	}
	if calls == 0 {
		return errors.New("no auth.test calls from the bare loop")
	}
	per10k := res.cpu / float64(calls) * 10000
	select {
	case <-p.Done():
	case <-time.After(total):
	}
	logf("bare: %d calls (non-200: %d) in %.1f s = %.0f/s; CPU %.2f s = %.1f%% of a core → %.3f CPU-s per 10,000 calls; machine busy %.0f%%; load %s → %s; its own report: %s",
		calls, bad, res.secs, float64(calls)/res.secs, res.cpu, 100*res.cpu/res.secs, per10k, 100*res.machine, res.load0, res.load1,
		strings.TrimSpace(supervise.Tail(p.Log, 1)))
	h.info("cost: bare Go loop CPU-s per 10,000 calls", fmt.Sprintf("%.3f (%.0f calls/s, %.1f%% of a core; load %s → %s)",
		per10k, float64(calls)/res.secs, 100*res.cpu/res.secs, res.load0, res.load1))
	if busy.per10k > 0 {
		ratio := busy.per10k / per10k
		h.row("cost per call: school ÷ bare loop", "≤ 1.5×", fmt.Sprintf("%.2f×", ratio), ratio <= 1.5)
		if h.idleCPUps > 0 && busy.rate > 0 {
			adj := busy.per10k - h.idleCPUps*10000/busy.rate
			h.info("  the same, less the idle websocket upkeep", fmt.Sprintf("%.2f× (%.3f CPU-s per 10,000 once %.2f%% idle CPU is taken off)", adj/per10k, adj, 100*h.idleCPUps))
		}
	}
	return nil
}

func (h *harness) summary() {
	fmt.Println()
	fmt.Println("== school benchmark summary ==")
	fmt.Printf("machine: %d cores; load average now %s\n", nprocs(), supervise.LoadAvg())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tTARGET\tMEASURED\t")
	for _, r := range h.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r[0], r[1], r[2], r[3])
	}
	tw.Flush()
	for _, n := range h.notes {
		fmt.Println("note:", n)
	}
}

// ---------------------------------------------------------------------
// The bare loop.

func runBare(args []string) error {
	fs := flag.NewFlagSet("schoolbench bare", flag.ContinueOnError)
	base := fs.String("base", "http://127.0.0.1:19290", "pond base URL (loopback only)")
	n := fs.Int("n", 5000, "goroutines, one token each (xoxp-pond-<i>)")
	rate := fs.Float64("rate", 2000, "calls per second, all goroutines together")
	method := fs.String("method", "auth.test", "API method")
	form := fs.String("form", "", "form body of every call (e.g. channel=C000000&limit=42)")
	duration := fs.Duration("duration", 30*time.Second, "how long to run (bounded by 10 min)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*base)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return fmt.Errorf("--base %q: only 127.0.0.0/8", *base)
	}
	if *n < 1 || *n > 20000 || *rate <= 0 || *rate > 100000 || *duration <= 0 || *duration > 10*time.Minute {
		return errors.New("--n 1..20000, --rate (0, 100000], --duration (0, 10m]")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *duration)
	defer cancel2()

	// The same transport settings as the school's (koi.NewHTTPClient).
	client := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		ReadBufferSize:      8 << 10,
		WriteBufferSize:     8 << 10,
	}}
	target := strings.TrimRight(*base, "/") + "/api/" + *method
	period := time.Duration(float64(*n) / *rate * float64(time.Second))
	var calls, fails, replyBytes atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			auth := "Bearer xoxp-pond-" + strconv.Itoa(i)
			rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(i)))
			// Random phase, then one call at a uniform instant of each period.
			periodStart := start.Add(-time.Duration(rng.Int64N(int64(period))))
			for range 1_000_000 {
				periodStart = periodStart.Add(period)
				at := periodStart.Add(time.Duration(rng.Int64N(int64(period))))
				if !sleepCtx(ctx, time.Until(at)) {
					return
				}
				n, err := bareCall(ctx, client, target, auth, *form)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					fails.Add(1)
					continue
				}
				calls.Add(1)
				replyBytes.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("bare: %d calls ok, %d failed, in %.1f s (%.0f/s), replies of %.0f bytes on average\n",
		calls.Load(), fails.Load(), el, float64(calls.Load())/el, float64(replyBytes.Load())/float64(max(1, calls.Load())))
	return nil
}

// bareCall makes the call koi make for an api step: POST, form body,
// bearer token; it reads and decodes the JSON reply, checks ok and
// returns the reply's size.
func bareCall(ctx context.Context, client *http.Client, target, auth, form string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 || v["ok"] != true {
		return 0, fmt.Errorf("HTTP %d %v", resp.StatusCode, v["error"])
	}
	return len(body), nil
}
