package koi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	kmetrics "github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/pond"
)

// pondServerEnv, when set to "users,channels", turns the test binary into a
// pond server (see runPondServer): the busy-koi benchmark runs pond in its
// own process so that pond's memory and CPU are not counted as the koi's.
const pondServerEnv = "KOI_PONDSERVER"

// runPondServer opens pond on loopback, prints its URL and serves until
// stdin closes.
func runPondServer(spec string) int {
	if _, err := raiseNoFile(); err != nil {
		fmt.Fprintln(os.Stderr, "pondserver: rlimit:", err)
	}
	var users, channels int
	if _, err := fmt.Sscanf(spec, "%d,%d", &users, &channels); err != nil {
		fmt.Fprintf(os.Stderr, "pondserver: %s=%q: %v\n", pondServerEnv, spec, err)
		return 1
	}
	p, err := pond.Open(context.Background(), pond.Config{Users: users, Channels: channels, DisableRateLimits: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pondserver:", err)
		return 1
	}
	defer p.Close()
	fmt.Println(p.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startPondProcess re-executes the test binary as a pond server.
func startPondProcess(b *testing.B, users, channels int) (string, func()) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), pondServerEnv+"="+strconv.Itoa(users)+","+strconv.Itoa(channels))
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
		b.Fatalf("starting the pond process: %v", err)
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://127.0.0.1:") {
		_ = cmd.Process.Kill()
		stop()
		b.Fatalf("pond process: read %q, %v", line, err)
	}
	return strings.TrimSpace(line), stop
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q is not a positive integer", name, s)
	}
	return v
}

// gcCPU reads the process's GC and total CPU seconds (runtime/metrics
// estimates).
func gcCPU() (gc, total float64) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64(), s[1].Value.Float64()
}

// processCPU is the user+system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBusyKoiMemory runs KOI_BENCH_N koi (default 500) with the
// demo's Slack behaviors (examples/slack) against pond in its own process
// (200 channels), at time scale KOI_BENCH_SCALE (default 60) for
// KOI_BENCH_MINUTES behavior minutes (default 10), then reports the live
// heap per koi (after GC, the koi paused but still connected: what they
// keep), its stacks and goroutines, the share of CPU the
// garbage collector took during the run, and CPU per api request. Like the
// idle benchmark, the iteration count is meaningless: one measurement is
// made per run and reported (reportOnce). KOI_BENCH_HEAPPROFILE=<file>
// and KOI_BENCH_GOROUTINEPROFILE=<file> write those profiles of the
// paused koi.
func BenchmarkBusyKoiMemory(b *testing.B) {
	reportOnce(b, func() []benchMetric { return measureBusyKoi(b) })
}

func measureBusyKoi(b *testing.B) []benchMetric {
	n := envInt(b, "KOI_BENCH_N", 500)
	scale := envInt(b, "KOI_BENCH_SCALE", 60)
	minutes := envInt(b, "KOI_BENCH_MINUTES", 10)
	if lim, err := raiseNoFile(); err != nil {
		b.Fatalf("raising RLIMIT_NOFILE: %v", err)
	} else if lim < uint64(2*n)+256 {
		b.Fatalf("RLIMIT_NOFILE is %d: too low for %d koi", lim, n)
	}
	base, stopPond := startPondProcess(b, max(n, 100), 200)
	defer stopPond()

	set := loadSet(b, "../examples/slack/frequencies.json", "../examples/slack/sequences.json")
	rt := newRuntime(b, koi.RuntimeConfig{Set: set, APIBase: base + "/api", TimeScale: float64(scale)})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	kois := make([]*koi.Koi, n)
	for i := range kois {
		k := rt.New(behaviors.Identity{Index: i, UserID: pond.UserID(i), Token: pond.Token(i)}, 1)
		kois[i] = k
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = k.Run(ctx)
		}()
	}
	// Boot (rtm.connect, conversations.list) is a burst: the clock starts
	// once every koi is connected, or after a minute.
	bootStart := time.Now()
	for deadline := bootStart.Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		up := 0
		for _, k := range kois {
			if k.Connected() {
				up++
			}
		}
		if up == n {
			break
		}
	}
	boot := time.Since(bootStart)
	rt.Metrics().Snapshot() // the run's requests are counted from here
	gc0, cpu0 := gcCPU()
	proc0 := processCPU()
	time.Sleep(time.Duration(minutes) * time.Minute / time.Duration(scale))
	gc1, cpu1 := gcCPU()
	proc1 := processCPU()
	snap := rt.Metrics().Snapshot()
	// Pause every koi and let in-flight requests and frames drain, so the
	// heap holds what the koi keep (stores, connections), not what they
	// were doing at that instant.
	for _, k := range kois {
		k.Pause()
	}
	time.Sleep(time.Second)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	up := 0
	for _, k := range kois {
		if k.Connected() {
			up++
		}
	}
	if path := os.Getenv("KOI_BENCH_HEAPPROFILE"); path != "" {
		writeHeapProfile(b, path)
	}
	goroutines := runtime.NumGoroutine()
	if path := os.Getenv("KOI_BENCH_GOROUTINEPROFILE"); path != "" {
		writeProfile(b, "goroutine", path)
	}
	runtime.KeepAlive(kois)
	stopStart := time.Now()
	cancel()
	wg.Wait()
	b.Logf("boot took %v, stop %v", boot.Round(time.Millisecond), time.Since(stopStart).Round(time.Millisecond))

	var requests, failed uint64
	for key, ss := range snap.Series {
		if !strings.HasPrefix(key, "api:") || strings.Count(key, ":") != 1 {
			continue
		}
		requests += ss.Total()
		failed += ss.Total() - ss.Counts[kmetrics.OK]
		if testing.Verbose() {
			b.Logf("%s: %v", key, ss.Counts)
		}
	}
	if requests == 0 {
		b.Fatalf("no api request was made (series: %d)", len(snap.Series))
	}
	b.Logf("%d koi, scale %d, %d behavior minutes: %d api requests (%d not ok)", n, scale, minutes, requests, failed)
	logWorkspace(b, rt)
	return []benchMetric{
		{float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), "heap-bytes/koi"},
		{float64(after.StackInuse) / float64(n), "stack-bytes/koi"},
		{float64(goroutines) / float64(n), "goroutines/koi"},
		{(gc1 - gc0) / (cpu1 - cpu0), "gc-share"},
		{float64(proc1-proc0) / float64(requests), "cpu-ns/request"},
		{float64(requests), "requests"},
		{float64(up) / float64(n), "connected"},
	}
}

// historyReplyFromPond fetches a real conversations.history reply of
// about 6.6 KB from an in-process pond (42 messages), so the reply
// benchmarks decode what a koi really gets.
func historyReplyFromPond(b *testing.B) []byte {
	p, err := pond.Open(context.Background(), pond.Config{Users: 100, Channels: 10, DisableRateLimits: true})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	form := url.Values{"channel": {pond.ChannelID(0)}, "limit": {"42"}}
	req, _ := http.NewRequest(http.MethodPost, p.URL()+"/api/conversations.history", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+pond.Token(1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok":true`) {
		b.Fatalf("conversations.history from pond: %d %.200s %v", resp.StatusCode, body, err)
	}
	return body
}

// BenchmarkHistoryReply runs one conversations.history step against a
// server answering a real ~6.6 KB pond reply, with the demo's post_actions
// (the reply is read) and without any (nothing reads it).
func BenchmarkHistoryReply(b *testing.B) {
	reply := historyReplyFromPond(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(reply))}
		_, _ = w.Write(reply)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, post string
	}{
		{"post_action", `"post_actions": ["{{ addMessages \"C1\" .messages }}", "{{ addUserIDs (extractStrings .messages \"user\") }}"]`},
		{"no_post_action", `"post_actions": []`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			set := parseSet(b, `{"behaviors": {"history": {"steps": [{"request": {"type": "api", "method": "conversations.history",
				"args": {"channel": "C1", "limit": "42"}, `+tc.post+`}}]}}}`)
			rt := newRuntime(b, koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api"})
			k := rt.New(behaviors.Identity{Index: 1, UserID: "U1", Token: "xoxp-pond-1"}, 1)
			seq := set.Behavior("history").Sequence
			ctx := context.Background()
			if err := k.RunSequence(ctx, seq, nil); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(reply)))
			b.ReportAllocs()
			for b.Loop() {
				if err := k.RunSequence(ctx, seq, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
