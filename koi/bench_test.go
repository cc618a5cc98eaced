package koi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// benchSet is one behavior whose single step has a pre_action, an api
// request with six args (two of them templates) and a post_action: the
// shape of a typical seed behavior.
const benchSet = `{"behaviors": {"history": {"steps": [{
  "pre_actions": ["{{ set \"channel\" (randomChannel false) }}"],
  "request": {
    "type": "api",
    "method": "conversations.history",
    "args": {
      "channel": "{{ (get \"channel\").ID }}",
      "channel_name": "{{ (get \"channel\").Name }}",
      "limit": "42",
      "ignore_replies": "true",
      "include_pin_count": "true",
      "no_user_profile": "true"
    },
    "post_actions": ["{{ addMessages (get \"channel\").ID .messages }}"]
  }}]}}}`

// historyReply is what the bench server answers to every api call.
const historyReply = `{"ok":true,"messages":[` +
	`{"type":"message","ts":"1700000002.000200","user":"U2","text":"newest"},` +
	`{"type":"message","ts":"1700000001.000100","user":"U1","text":"older"}],"has_more":false}`

// newBenchAPIServer is a lean API server over real loopback sockets: it
// drains the request and answers a constant reply, so that (apart from
// net/http's own server-side allocations, which run in this process too)
// the numbers are the koi's.
func newBenchAPIServer(b *testing.B) string {
	b.Helper()
	reply := []byte(historyReply)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(reply))}
		_, _ = w.Write(reply)
	}))
	b.Cleanup(srv.Close)
	return srv.URL + "/api"
}

func benchStore(st *behaviors.Store) {
	for i, name := range []string{"general", "random", "koi-talk", "pond-ops"} {
		st.AddChannel(behaviors.Channel{ID: fmt.Sprintf("C%d", i+1), Name: name, IsMember: i%2 == 0, NumMembers: 10 * (i + 1)})
	}
}

// BenchmarkAPIStep runs one api step end to end: pre_action, rendering the
// args, the HTTP round trip to an in-process server over loopback, decoding
// the JSON reply, and the post_action.
func BenchmarkAPIStep(b *testing.B) {
	set := parseSet(b, benchSet)
	rt := newRuntime(b, koi.RuntimeConfig{Set: set, APIBase: newBenchAPIServer(b)})
	k := rt.New(behaviors.Identity{Index: 1, UserID: "U1", Token: "xoxp-pond-1"}, 1)
	benchStore(k.Store())
	seq := set.Behavior("history").Sequence
	ctx := context.Background()
	// One warm-up call opens the keep-alive connection.
	if err := k.RunSequence(ctx, seq, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := k.RunSequence(ctx, seq, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderArgs renders the api request's args alone (no network):
// the template cost of one step's request. One op renders all six args.
func BenchmarkRenderArgs(b *testing.B) {
	set := parseSet(b, benchSet)
	req := set.Behavior("history").Sequence.Steps[0].Request
	st := behaviors.NewStore(behaviors.Identity{Index: 1, UserID: "U1", Token: "xoxp-pond-1"})
	benchStore(st)
	if err := st.Set("channel", st.RandomChannel(false)); err != nil {
		b.Fatal(err)
	}
	env := &behaviors.Env{Store: st}
	templates := 0
	for _, a := range req.Args {
		if !a.Value.IsConst() {
			templates++
		}
		v, err := set.Prog.Render(context.Background(), env, a.Value, nil)
		if err != nil || v == "" {
			b.Fatalf("rendering %s: %q, %v", a.Name, v, err)
		}
	}
	if len(req.Args) != 6 || templates != 2 {
		b.Fatalf("%d args, %d templates; want 6 and 2", len(req.Args), templates)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, a := range req.Args {
			if _, err := set.Prog.Render(context.Background(), env, a.Value, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// idleKoiResult is the outcome of one idle-koi measurement.
type idleKoiResult struct {
	n                  int
	heap, stack        int64 // deltas, bytes
	goroutines         int
	allocBytes, allocs uint64 // allocated while bringing the koi up
	connect            time.Duration
}

// idleKoi is the last measurement: the first call of each benchmark run
// (b.N == 1, so once per -count) measures; later calls with a larger b.N
// report it again.
var idleKoi *idleKoiResult

// BenchmarkIdleKoiMemory measures what N idle koi (default 5000, or
// KOI_BENCH_N), each with an open websocket, cost in live heap and
// goroutine stacks. The websocket server runs in a separate process (this
// test binary re-executed with KOI_MEMSERVER=1) so its memory is not
// counted. KOI_BENCH_HEAPPROFILE=<file> also writes a heap profile of the
// idle koi. The measurement is taken once per run, on the first call;
// one "op" is one koi: ns/op is the wall time to connect all N divided by
// N, and B/op and allocs/op are what was allocated (live or not) while
// bringing them up, per koi. The iteration count go test prints is
// meaningless here: when the measurement takes less than -benchtime, the
// framework ramps b.N up over calls that only report the cached result.
func BenchmarkIdleKoiMemory(b *testing.B) {
	if b.N == 1 || idleKoi == nil {
		idleKoi = nil
		idleKoi = measureIdleKoi(b)
	}
	r := idleKoi
	if r == nil {
		b.Fatal("the idle koi measurement failed")
	}
	n := float64(r.n)
	b.ReportMetric(float64(r.heap+r.stack)/n, "bytes/koi")
	b.ReportMetric(float64(r.heap)/n, "heap-bytes/koi")
	b.ReportMetric(float64(r.stack)/n, "stack-bytes/koi")
	b.ReportMetric(float64(r.goroutines)/n, "goroutines/koi")
	b.ReportMetric(float64(r.connect.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(r.allocBytes)/n, "B/op")
	b.ReportMetric(float64(r.allocs)/n, "allocs/op")
	if per := float64(r.heap+r.stack) / n; per > 24<<10 {
		b.Logf("%.0f bytes per idle koi is above the 24 KiB target", per)
	}
}

func measureIdleKoi(b *testing.B) *idleKoiResult {
	n := 5000
	if s := os.Getenv("KOI_BENCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("KOI_BENCH_N=%q is not a positive integer", s)
		}
		n = v
	}
	if lim, err := raiseNoFile(); err != nil {
		b.Fatalf("raising RLIMIT_NOFILE: %v", err)
	} else if lim < uint64(n)+256 {
		b.Fatalf("RLIMIT_NOFILE is %d: too low for %d websockets", lim, n)
	}

	wsURL, stopServer := startMemServer(b)
	defer stopServer()

	set := parseSet(b, `{"behaviors": {}}`)
	rt := newRuntime(b, koi.RuntimeConfig{Set: set, Websocket: behaviors.WebsocketSpec{URL: wsURL}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	start := time.Now()

	kois := make([]*koi.Koi, n)
	for i := range kois {
		k := rt.New(behaviors.Identity{Index: i, UserID: "U" + strconv.Itoa(i), Token: "xoxp-pond-" + strconv.Itoa(i)}, 1)
		kois[i] = k
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = k.Run(ctx)
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		up := 0
		for _, k := range kois {
			if k.Connected() {
				up++
			}
		}
		if up == n {
			break
		}
		if time.Now().After(deadline) {
			states := map[koi.State]int{}
			for _, k := range kois {
				states[k.State()]++
			}
			cancel()
			b.Fatalf("only %d of %d koi connected within 60s (states: %v; ws:connect %+v)",
				up, n, states, rt.Metrics().Snapshot().Series["ws:connect"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	connect := time.Since(start)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	if path := os.Getenv("KOI_BENCH_HEAPPROFILE"); path != "" {
		writeHeapProfile(b, path)
	}
	runtime.KeepAlive(kois)

	res := &idleKoiResult{
		n:          n,
		heap:       int64(after.HeapAlloc) - int64(before.HeapAlloc),
		stack:      int64(after.StackInuse) - int64(before.StackInuse),
		goroutines: g1 - g0,
		allocBytes: after.TotalAlloc - before.TotalAlloc,
		allocs:     after.Mallocs - before.Mallocs,
		connect:    connect,
	}

	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("koi Run calls did not all return within 30s of stop")
	}
	return res
}

// writeHeapProfile writes the live heap while the koi sit idle (the
// -memprofile of go test is written only after they have stopped). Use it
// with -memprofilerate=1 for exact numbers.
func writeHeapProfile(b *testing.B, path string) { writeProfile(b, "heap", path) }

// writeProfile writes the named runtime/pprof profile to path.
func writeProfile(b *testing.B, name, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// startMemServer re-executes the test binary as the websocket server and
// returns its URL and a function that stops it.
func startMemServer(b *testing.B) (string, func()) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), memServerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the websocket server process: %v", err)
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ws://127.0.0.1:") {
		stop()
		b.Fatalf("websocket server process: read %q, %v", line, err)
	}
	return strings.TrimSpace(line), stop
}

// benchMetric is one value a long measurement reports (b.ReportMetric).
type benchMetric struct {
	value float64
	unit  string
}

// measured caches long measurements by benchmark name; see reportOnce.
var measured = map[string][]benchMetric{}

// reportOnce runs a long measurement on a benchmark's first call (b.N ==
// 1, so once per -count) and reports it; later calls, which the framework
// makes with a larger b.N when the measurement took less than -benchtime,
// report the cached result again instead of measuring b.N times, as
// BenchmarkIdleKoiMemory does.
func reportOnce(b *testing.B, measure func() []benchMetric) {
	ms, ok := measured[b.Name()]
	if b.N == 1 || !ok {
		ms = measure()
		measured[b.Name()] = ms
	}
	for _, m := range ms {
		b.ReportMetric(m.value, m.unit)
	}
}
