package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A line of known slope is measured as that slope, over the window asked
// for only; too few samples give NaN, not a number made up.
func TestRSSSlope(t *testing.T) {
	var ss []soakSample
	for i := range 31 { // 0..300 s every 10 s
		ts := float64(10 * i)
		rss := 100 << 20 // flat for the first 3 minutes, then +1 MiB per minute
		if ts > 180 {
			rss += int((ts - 180) / 60 * (1 << 20))
		}
		ss = append(ss, soakSample{t: ts, process: "school-1", rssBytes: int64(rss), koi: 1000})
	}
	s, n := rssSlope(ss, 180)
	if n != 13 {
		t.Fatalf("used %d samples from 180 s, want 13", n)
	}
	// 1 MiB/min over a mean of 101 MiB: 0.99 %/min.
	if got, want := 100*s*60, 100.0/101; math.Abs(got-want) > 0.01 {
		t.Errorf("slope %.4f %%/min, want %.4f", got, want)
	}
	if s, _ := rssSlope(ss, 0); s <= 0 || 100*s*60 >= 100.0/101 {
		t.Errorf("slope over the whole run %.4f %%/min: the flat start must pull it below the last 2 min's", 100*s*60)
	}
	if s, n := rssSlope(ss, 300); !math.IsNaN(s) || n != 1 {
		t.Errorf("one sample: slope %v from %d samples, want NaN", s, n)
	}
	// 1 MiB per minute.
	if r := rssRate(ss, 180); math.Abs(r-(1<<20)/60.0) > 1 {
		t.Errorf("rate %.1f B/s, want %.1f", r, (1<<20)/60.0)
	}
	ss[20].koi = 900 // one sample short of koi: marked, and per koi still of 1000
	line, f := summarize("school-1", ss, 1000)
	for _, want := range []string{"RSS 102.0 MiB at 300 s (1000 koi)", "max 104.4", "102.7*", "(of 1000)", "+0.99%/min (13 samples from 180 s)", "n/a (shorter than 20 min)"} {
		if !strings.Contains(line, want) {
			t.Errorf("summary %q lacks %q", line, want)
		}
	}
	if got, f := summarize("keeper", ss, 1000); got != "keeper: no samples" || !math.IsNaN(f.slope2) {
		t.Errorf("summary of an unsampled process: %q, %+v", got, f)
	}
	if math.Abs(f.maxKiBPerKoi-104.448) > 0.01 || math.Abs(f.slope2-100.0/101) > 0.01 || !math.IsNaN(f.growth20) {
		t.Errorf("figures %+v", f)
	}
	// Judged: 104 KiB per koi misses 48; the slope (0.99%/min) passes 2;
	// no 20-minute growth is judged on a 5-minute soak; the keeper's 20 MB
	// misses 16.
	v := soakVerdicts(map[string]soakFigures{"school-1": f, "keeper": {maxKiBPerKoi: math.NaN(), slope2: math.NaN(), growth20: math.NaN()}}, []string{"keeper", "school-1"}, keeperGrowth{rssKiB: 20_000_000 / 1024})
	want := []string{"MISS  school-1: at least 95% of its koi connected at every sample after the first minute: 1 of 25", "MISS  school-1: RSS per koi", "PASS  school-1: RSS slope", "MISS  keeper: memory for the run"}
	if len(v) != len(want) {
		t.Fatalf("verdicts %q, want %d", v, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(v[i], w) {
			t.Errorf("verdict %d %q, want %q…", i, v[i], w)
		}
	}
	// With the keeper's live heap known, that is what is judged: 9 MB of
	// live heap passes beside 20 MB of RSS.
	v = soakVerdicts(map[string]soakFigures{}, nil, keeperGrowth{rssKiB: 20_000_000 / 1024, liveHeap: 9_000_000, heapKnown: true})
	if len(v) != 1 || !strings.HasPrefix(v[0], "PASS  keeper: memory for the run (live heap") || !strings.Contains(v[0], "9.0 MB (RSS growth 20.0 MB)") {
		t.Errorf("verdicts with the live heap known: %q", v)
	}
}

// keeperGrowthLine gives the keeper's RSS growth, its Go heap classes'
// and its metrics history's over the last 20 minutes of a long soak (the
// growth before them left out), over the soak after its first minute in
// a short one, and nothing without samples.
func TestKeeperGrowthLine(t *testing.T) {
	series := func(minutes int) (keeper []soakSample, g keeperGauges) {
		for i := 0; i <= minutes*6; i++ {
			ts := float64(10 * i)
			perMin := func(base, kib int64) soakSample {
				return soakSample{t: ts, rssBytes: base + int64(ts/60*float64(kib<<10))}
			}
			rss := perMin(50<<20, 200) // +200 KiB a minute
			if ts < 600 {
				rss = perMin(40<<20, 1024) // a steeper start, left out of the last 20 minutes
			}
			keeper = append(keeper, rss)
			g.history = append(g.history, perMin(0, 10))
			g.live = append(g.live, perMin(20<<20, 30))
			g.unused = append(g.unused, perMin(2<<20, -5))
			g.free = append(g.free, perMin(1<<20, 70))
			g.store = append(g.store, perMin(1<<20, 11))
			g.runtime = append(g.runtime, perMin(6<<20, 3))
			g.file = append(g.file, perMin(30<<20, 2))
		}
		return keeper, g
	}
	k, g := series(30)
	line := keeperGrowthLine(k, g)
	for _, want := range []string{"over the last 20 minutes", "RSS +2000 KiB per 10 min", "Go heap live +300, unused -50, free +700 KiB per 10 min",
		"the Go runtime's own (stacks, GC metadata, profiling) +30 KiB per 10 min", "outside the Go runtime, the history stores +110 KiB per 10 min",
		"file-backed pages (the executable's, clean) +20 KiB per 10 min",
		"history (encoded, koipond_run_history_bytes) +100 KiB per 10 min", "0.29 MiB at the end"} {
		if !strings.Contains(line, want) {
			t.Errorf("30-minute soak: %q lacks %q", line, want)
		}
	}
	k, g = series(5)
	if line := keeperGrowthLine(k, g); !strings.Contains(line, "after its first minute") || !strings.Contains(line, "history (encoded, koipond_run_history_bytes) +100 KiB") {
		t.Errorf("5-minute soak: %q", line)
	}
	// A keeper without the live gauge and the stores (an older build): the
	// line names what it has.
	k, g = series(30)
	g.live, g.store, g.runtime, g.file = nil, nil, nil, nil
	if line := keeperGrowthLine(k, g); strings.Contains(line, "live") || strings.Contains(line, "stores") || strings.Contains(line, "runtime") ||
		strings.Contains(line, "file-backed") || !strings.Contains(line, "Go heap unused -50, free +700 KiB") {
		t.Errorf("without the live gauge: %q", line)
	}
	if line := keeperGrowthLine(k[:1], keeperGauges{history: g.history[:1]}); line != "" {
		t.Errorf("one sample: %q, want nothing", line)
	}
}

// A keeper's /metrics sample lands in the gauge it names; the Go
// runtime's own memory is what it mapped, less what it released and its
// heap, and only with all five of those gauges.
func TestKeeperGaugesAdd(t *testing.T) {
	m := map[string]float64{
		"koipond_run_history_bytes": 1000, "koipond_keeper_go_heap_live_bytes": 4 << 20, "koipond_keeper_history_store_bytes": 2000,
		"koipond_keeper_go_memory_bytes": 30 << 20, "koipond_keeper_go_heap_released_bytes": 8 << 20, "koipond_keeper_go_heap_objects_bytes": 9 << 20,
		"koipond_keeper_go_heap_unused_bytes": 2 << 20, "koipond_keeper_go_heap_free_bytes": 3 << 20,
	}
	var g keeperGauges
	g.add(10, m)
	g.addFile(10, 300)
	if len(g.runtime) != 1 || g.runtime[0].rssBytes != 8<<20 || g.runtime[0].t != 10 {
		t.Errorf("runtime: %+v, want one sample of 8 MiB at 10 s", g.runtime)
	}
	if len(g.history) != 1 || g.history[0].rssBytes != 1000 || len(g.live) != 1 || len(g.store) != 1 || len(g.free) != 1 || len(g.unused) != 1 {
		t.Errorf("gauges: %+v", g)
	}
	if len(g.file) != 1 || g.file[0].rssBytes != 300<<10 {
		t.Errorf("file-backed: %+v, want 300 KiB", g.file)
	}
	delete(m, "koipond_keeper_go_heap_released_bytes")
	g.add(20, m)
	if len(g.runtime) != 1 || len(g.history) != 2 {
		t.Errorf("without the released gauge: runtime %d samples (want 1), history %d (want 2)", len(g.runtime), len(g.history))
	}
}

// The chart is well-formed XML with one line per process in each panel,
// and names from outside are escaped.
func TestSoakChart(t *testing.T) {
	var ss []soakSample
	for i := 1; i <= 30; i++ {
		for j, p := range []string{"pond", "keeper", "school-<1>"} {
			ss = append(ss, soakSample{t: float64(10 * i), process: p, rssBytes: int64(j+1) << 24, cpuSecs: float64(i * (j + 1)), koi: 10})
		}
	}
	svg := soakChart(`soak "&" <test>`, []string{"pond", "keeper", "school-<1>"}, ss, 10*time.Second)
	d := xml.NewDecoder(strings.NewReader(string(svg)))
	polylines := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("not well-formed XML: %v\n%s", err, svg)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 6 {
		t.Errorf("%d polylines, want 6 (3 processes × RSS and CPU)", polylines)
	}
	if !strings.Contains(string(svg), "school-&lt;1&gt;") {
		t.Error("a process name is not escaped")
	}
}

func TestNiceAxis(t *testing.T) {
	for _, tc := range []struct{ in, step float64 }{{0, 0.5}, {0.3, 0.5}, {0.8, 1}, {1.5, 2}, {3, 5}, {7, 10}, {23, 50}} {
		if got := niceStep(tc.in); got != tc.step {
			t.Errorf("niceStep(%g) = %g, want %g", tc.in, got, tc.step)
		}
	}
	if got := niceCeil(83); got < 83 || got > 100 {
		t.Errorf("niceCeil(83) = %g", got)
	}
}

// scrapeMetrics sums a metric over its labels, ignores comments, other
// metrics and garbled values, and survives a line longer than its buffer.
func TestScrapeMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# HELP koipond_school_koi Koi.")
		fmt.Fprintln(w, `koipond_school_koi{run="a",state="connected"} 3`)
		fmt.Fprintln(w, `koipond_school_koi{run="b",state="connected"} 4`)
		fmt.Fprintln(w, "koipond_school_websockets_open 7")
		fmt.Fprintln(w, "koipond_school_websockets_open_total 100")
		fmt.Fprintln(w, "koipond_school_koi garbage")
	}))
	defer srv.Close()
	m, err := scrapeMetrics(context.Background(), srv.URL, "koipond_school_koi", "koipond_school_websockets_open")
	if err != nil || m["koipond_school_koi"] != 7 || m["koipond_school_websockets_open"] != 7 {
		t.Errorf("got %v, %v", m, err)
	}
	long := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "x %s\n", strings.Repeat("9", 2<<20))
	}))
	defer long.Close()
	if _, err := scrapeMetrics(context.Background(), long.URL, "x"); err == nil {
		t.Error("a 2 MiB line was accepted")
	}
}

func TestSoakConfigValidate(t *testing.T) {
	ok := soakConfig{koi: 5000, schools: 1, timeScale: 1, sample: 10 * time.Second, duration: 5 * time.Minute, timeout: 10 * time.Minute, out: "x"}
	if errs := ok.Validate(); len(errs) != 0 {
		t.Fatalf("valid config: %v", errs)
	}
	bad := soakConfig{koi: 30000, schools: 0, timeScale: 0, sample: 0, duration: time.Hour * 48, timeout: time.Minute, ramp: -1}
	if errs := bad.Validate(); len(errs) != 8 {
		t.Errorf("%d problems, want 8 (koi, schools, time scale, sample, duration, timeout, ramp, out): %v", len(errs), errs)
	}
}

// A soak.csv reads back as the samples written; anything else is refused
// with the line that is wrong.
func TestReadSoakCSV(t *testing.T) {
	ss, err := readSoakCSV(strings.NewReader("time,process,rss_bytes,cpu_seconds,koi,requests\n10.0,school-1,1048576,1.50,5000,123\n"))
	if err != nil || len(ss) != 1 || ss[0] != (soakSample{t: 10, process: "school-1", rssBytes: 1 << 20, cpuSecs: 1.5, koi: 5000, requests: 123}) {
		t.Fatalf("%+v, %v", ss, err)
	}
	for _, bad := range []string{
		"",
		"a,b,c,d,e,f\n",
		"time,process,rss_bytes,cpu_seconds,koi,requests\n10,school-1,-5,1,1,1\n",
		"time,process,rss_bytes,cpu_seconds,koi,requests\n10,school-1,x,1,1,1\n",
		"time,process,rss_bytes,cpu_seconds,koi,requests\n10,school-1,1\n",
		"time,process,rss_bytes,cpu_seconds,koi,requests\n10,,1,1,1,1\n",
	} {
		if _, err := readSoakCSV(strings.NewReader(bad)); err == nil {
			t.Errorf("%q was read", bad)
		}
	}
}
