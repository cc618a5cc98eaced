package keeper

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPoll200Schools: 200 schools (one NATS connection each, in a
// child process so they do not count as keeper CPU) poll a keeper every
// second (±10%) while it holds a 100,000-koi run spread over them. Each
// iteration is one second of that load. It reports the poll round-trip
// p50/p99 seen by the schools and the CPU of this process: the keeper and
// its embedded nats-server.
//
//	go test ./keeper -run '^$' -bench Poll200 -benchtime 10x
func BenchmarkPoll200Schools(b *testing.B) {
	k := openKeeper(b, b.TempDir(), func(c *Config) { c.PollInterval, c.Lease = time.Second, 10*time.Second })
	seedRun(b, k, 100_000)
	b.ResetTimer()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "KOIPOND_HELPER_NATS="+k.NATSURL(), "KOIPOND_HELPER_SEED="+k.SchoolNKeyFile(), fmt.Sprintf("KOIPOND_HELPER_SECS=%d", b.N+2))
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// CPU is measured in the steady state: after every school registered
	// and the run was spread (the child says STEADY), until it ends.
	var cpu0, cpu time.Duration
	var wall0 time.Time
	var wall time.Duration
	var res struct{ P50, P99, PollsPerSec float64 }
	sc := bufio.NewScanner(pipe)
	var out bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		switch {
		case line == "STEADY":
			cpu0, wall0 = cpuTime(), time.Now()
		case strings.HasPrefix(line, "RESULT "):
			cpu, wall = cpuTime()-cpu0, time.Since(wall0)
			if err := json.Unmarshal([]byte(line[7:]), &res); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err != nil || wall == 0 {
		b.Fatalf("schools: %v\n%s", err, out.String())
	}
	b.StopTimer()
	b.ReportMetric(res.P50, "p50-ms")
	b.ReportMetric(res.P99, "p99-ms")
	b.ReportMetric(res.PollsPerSec, "polls/s")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "keeper-cpu-%")
	if v := k.RunView(k.State(), k.State().Runs(nil)[0].ID); v.Assigned != 100_000 || len(v.Assignments) != 200 {
		b.Errorf("run spread over %d schools, %d assigned", len(v.Assignments), v.Assigned)
	}
}

// TestMain runs the test binary as the 200 schools of
// BenchmarkPoll200Schools when the benchmark starts it as a child process
// (KOIPOND_HELPER_NATS set), and as the tests otherwise.
func TestMain(m *testing.M) {
	if url := os.Getenv("KOIPOND_HELPER_NATS"); url != "" {
		if err := helperSchools(url); err != nil {
			fmt.Fprintln(os.Stderr, "helper schools:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperSchools polls the keeper as 200 schools, each once a second
// (jittered), and prints the poll latencies it saw.
func helperSchools(url string) error {
	secs, _ := strconv.Atoi(os.Getenv("KOIPOND_HELPER_SECS"))
	const schools = 200
	conns := make([]*nats.Conn, schools)
	reqs := make([][]byte, schools)
	seed, err := nats.NkeyOptionFromSeed(os.Getenv("KOIPOND_HELPER_SEED"))
	if err != nil {
		return err
	}
	for i := range conns {
		nc, err := nats.Connect(url, seed, nats.CustomInboxPrefix(wire.SchoolInboxPrefix))
		if err != nil {
			return err
		}
		defer nc.Close()
		conns[i] = nc
		reqs[i], _ = wire.Encode(&wire.PollRequest{School: fmt.Sprintf("school-%03d", i), Capacity: 5000, Clock: time.Now(),
			Runs: []wire.RunStatus{{Run: "x", Koi: wire.KoiCounts{Connected: 500}}}, KoiRunning: 500, WebsocketsOpen: 500})
	}
	var mu sync.Mutex
	var rtts []time.Duration
	start := time.Now()
	time.AfterFunc(2*time.Second, func() { fmt.Println("STEADY") })
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
			for first := true; ctx.Err() == nil; first = false {
				t0 := time.Now()
				_, err := nc.Request(wire.SubjectPoll, reqs[i], 5*time.Second)
				d := time.Since(t0)
				if err == nil && !first && time.Since(start) > 2*time.Second {
					mu.Lock()
					rtts = append(rtts, d)
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(jitter(time.Second) - d):
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(rtts)
	q := func(p float64) float64 {
		if len(rtts) == 0 {
			return math.NaN()
		}
		return float64(rtts[int(p*float64(len(rtts)-1))]) / 1e6
	}
	res, _ := json.Marshal(map[string]float64{"P50": q(0.5), "P99": q(0.99), "PollsPerSec": float64(len(rtts)) / float64(secs-2)})
	fmt.Printf("RESULT %s\n", res)
	return nil
}

// reportSnapshots builds n encoded snapshots of keys metric keys, each key
// with a few dozen latencies, like one school's second.
func reportSnapshots(b testing.TB, n, keys int) [][]byte {
	out := make([][]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range out {
		var rec metrics.Recorder
		for k := range keys {
			key := fmt.Sprintf("api:method.%02d", k)
			for range 20 + r.IntN(40) {
				rec.Observe(key, time.Duration(math.Exp(r.NormFloat64()*0.8+3)*float64(time.Millisecond)), metrics.OK)
			}
			if r.IntN(10) == 0 {
				rec.Count(key, metrics.RateLimited)
			}
		}
		data, err := rec.Snapshot().MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		out[i] = data
	}
	return out
}

// BenchmarkMetricsIngest: one iteration is one second of 200 schools'
// reports, 50 sketches each, merged into one run's per-second series. It
// reports CPU per second of load (as % of a core) and the heap one
// second-bucket costs on the Go heap (encoded buckets are held outside it,
// in the run's store; see BenchmarkRunMemory for a whole run's history).
//
//	go test ./keeper -run '^$' -bench MetricsIngest -benchtime 60x
func BenchmarkMetricsIngest(b *testing.B) {
	const schools, keys = 200, 50
	snaps := reportSnapshots(b, schools, keys)
	k := &Keeper{agg: newAggregator()}
	base := time.Now().Truncate(time.Second)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		at := base.Add(time.Duration(i) * time.Second)
		for s := range schools {
			if err := k.agg.add("run", at, &wire.RunMetrics{Run: "run", Snapshot: snaps[s]}); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	b.ReportMetric(100*cpu.Seconds()/float64(b.N), "cpu-%-of-core")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*schools), "µs/report")
	buckets := min(b.N, int(tiers[0].horizon))
	encoded, n := 0, 0
	for _, bk := range k.agg.runs["run"].rings[0] {
		if bk.enc.n > 0 {
			encoded += bk.enc.n
			n++
		}
	}
	if n > 0 {
		b.ReportMetric(float64(encoded)/float64(n)/1024, "KiB/encoded-bucket")
	}
	b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/(1<<20), "MiB-heap-growth")
	runtime.KeepAlive(k)
	sum := k.RunMetrics("run", time.Duration(buckets+5)*time.Second)
	if len(sum.Keys) != keys {
		b.Errorf("%d keys merged", len(sum.Keys))
	}
}

func TestEncodedBucketSize(t *testing.T) {
	snaps := reportSnapshots(t, 200, 50)
	agg := &metrics.Snapshot{}
	for _, d := range snaps {
		var s metrics.Snapshot
		if err := s.UnmarshalBinary(d); err != nil {
			t.Fatal(err)
		}
		agg.Merge(&s)
	}
	enc, _ := agg.MarshalBinary()
	t.Logf("one school %d bytes; merged 200 schools %d bytes", len(snaps[0]), len(enc))
}
