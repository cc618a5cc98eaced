package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// of returns the samples of one process, in time order (as sampled).
func of(name string, samples []soakSample) []soakSample {
	var out []soakSample
	for _, s := range samples {
		if s.process == name {
			out = append(out, s)
		}
	}
	return out
}

// rssSlope fits a line to RSS over the samples at or after from (seconds)
// and returns its slope as a share of their mean RSS per second, and how
// many samples it used. A fit over fewer than 2 samples is NaN.
func rssSlope(ss []soakSample, from float64) (perSec float64, n int) {
	var sx, sy, sxx, sxy float64
	for _, s := range ss {
		if s.t < from {
			continue
		}
		x, y := s.t, float64(s.rssBytes)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
		n++
	}
	fn := float64(n)
	den := fn*sxx - sx*sx
	if n < 2 || den == 0 || sy == 0 {
		return math.NaN(), n
	}
	slope := (fn*sxy - sx*sy) / den // bytes per second
	return slope / (sy / fn), n
}

// rssRate is rssSlope in bytes per second.
func rssRate(ss []soakSample, from float64) float64 {
	s, n := rssSlope(ss, from)
	if n < 2 || math.IsNaN(s) {
		return math.NaN()
	}
	var sum float64
	for _, x := range ss {
		if x.t >= from {
			sum += float64(x.rssBytes)
		}
	}
	return s * sum / float64(n)
}

// keeperGauges are the keeper's /metrics gauges a soak samples beside its
// RSS, each in soakSample.rssBytes: the runs' encoded metrics history
// (koipond_run_history_bytes, summed over runs), the Go heap's classes,
// the Go runtime's own memory beside its heap, the stores holding the
// history outside the heap (memory) and their space (in the history file,
// on disk, or that memory), and the file-backed part of the RSS.
type keeperGauges struct {
	history, live, unused, free, store, space []soakSample
	// runtime is what the Go runtime has mapped and not released, less
	// its heap: goroutine stacks, GC metadata, profiling buckets.
	runtime []soakSample
	// file is the RSS that maps files (supervise.Usage.RSSFileKiB): the
	// executable's pages, clean and shared with the page cache.
	file []soakSample
}

// add appends, at soak time t, each gauge the keeper's /metrics (m) has:
// an older keeper lacks the live heap and the stores.
func (g *keeperGauges) add(t float64, m map[string]float64) {
	for _, x := range []struct {
		name string
		to   *[]soakSample
	}{{"koipond_run_history_bytes", &g.history}, {"koipond_keeper_go_heap_live_bytes", &g.live}, {"koipond_keeper_go_heap_unused_bytes", &g.unused},
		{"koipond_keeper_go_heap_free_bytes", &g.free}, {"koipond_keeper_history_store_bytes", &g.store},
		{"koipond_keeper_history_space_bytes", &g.space}} {
		if v, ok := m[x.name]; ok {
			*x.to = append(*x.to, soakSample{t: t, process: "keeper " + x.name, rssBytes: int64(v)})
		}
	}
	// The runtime's own: mapped (total) less released, less the heap's
	// objects, unused and free spans.
	parts := []string{"koipond_keeper_go_memory_bytes", "koipond_keeper_go_heap_released_bytes", "koipond_keeper_go_heap_objects_bytes",
		"koipond_keeper_go_heap_unused_bytes", "koipond_keeper_go_heap_free_bytes"}
	v := make([]float64, len(parts))
	for i, name := range parts {
		var ok bool
		if v[i], ok = m[name]; !ok {
			return
		}
	}
	g.runtime = append(g.runtime, soakSample{t: t, process: "keeper Go runtime", rssBytes: int64(v[0] - v[1] - v[2] - v[3] - v[4])})
}

// addFile appends the keeper's file-backed RSS at soak time t.
func (g *keeperGauges) addFile(t float64, kib int64) {
	g.file = append(g.file, soakSample{t: t, process: "keeper file-backed", rssBytes: kib << 10})
}

// keeperGrowthLine says how fast the keeper's RSS grew over the last 20
// minutes (or since the first minute, in a shorter soak) and how fast,
// meanwhile, its Go heap's live objects, fragmentation (unused) and free
// pages not yet returned grew, the Go runtime's own memory, the stores
// holding the history outside the heap, the file-backed pages, and its
// runs' encoded metrics history: a
// run's history fills by design (an hour of 10 s buckets, then 6 hours
// of minutes, then a day of 5 minutes), and the Go heap holds up to twice
// what is live before a collection. "" without two samples of RSS and of
// the history; a heap class with fewer is left out.
func keeperGrowthLine(keeper []soakSample, g keeperGauges) string {
	if len(keeper) < 2 || len(g.history) < 2 {
		return ""
	}
	last := keeper[len(keeper)-1].t
	from, over := last-20*60, "the last 20 minutes"
	if from < keeper[0].t {
		from, over = 60, "the soak after its first minute"
	}
	rss, hist := rssRate(keeper, from), rssRate(g.history, from)
	if math.IsNaN(rss) || math.IsNaN(hist) {
		return ""
	}
	var heap []string
	for _, c := range []struct {
		name string
		ss   []soakSample
	}{{"live", g.live}, {"unused", g.unused}, {"free", g.free}} {
		if r := rssRate(c.ss, from); !math.IsNaN(r) {
			heap = append(heap, fmt.Sprintf("%s %+.0f", c.name, r*600/1024))
		}
	}
	heapPart := ""
	if len(heap) > 0 {
		heapPart = "; Go heap " + strings.Join(heap, ", ") + " KiB per 10 min"
	}
	for _, c := range []struct {
		what string
		ss   []soakSample
	}{{"the Go runtime's own (stacks, GC metadata, profiling)", g.runtime}, {"outside the Go runtime, the history stores", g.store},
		{"file-backed pages (the executable's, clean)", g.file}, {"the history stores' space (the history file on disk, or their memory)", g.space}} {
		if r := rssRate(c.ss, from); !math.IsNaN(r) {
			heapPart += fmt.Sprintf("; %s %+.0f KiB per 10 min", c.what, r*600/1024)
		}
	}
	return fmt.Sprintf("keeper growth over %s: RSS %+.0f KiB per 10 min%s; the runs' metrics history (encoded, koipond_run_history_bytes) %+.0f KiB per 10 min, %.2f MiB at the end\n",
		over, rss*600/1024, heapPart, hist*600/1024, float64(g.history[len(g.history)-1].rssBytes)/(1<<20))
}

// soakFigures are one process's figures that issue targets judge; NaN
// where the soak was too short to tell.
type soakFigures struct {
	maxKiBPerKoi float64 // largest RSS per koi after the first minute
	slope2       float64 // RSS slope over the last 2 minutes, % per minute
	growth20     float64 // RSS growth over the last 20 minutes, % per 10 minutes
	short, after int     // samples after the first minute with under 95% of the koi wanted, of all after it
}

// summarize is the summary line of one process: RSS per koi (of want, the
// koi it should hold: a school that dropped koi is not made to look
// lighter) at each sample after the first minute, "*" marking samples with
// fewer than 95% of them connected; the last two minutes' slope (% per
// minute), growth per 10 minutes over the last 20, its CPU.
func summarize(name string, samples []soakSample, want int64) (string, soakFigures) {
	f := soakFigures{maxKiBPerKoi: math.NaN(), slope2: math.NaN(), growth20: math.NaN()}
	ss := of(name, samples)
	if len(ss) == 0 {
		return name + ": no samples", f
	}
	last := ss[len(ss)-1]
	var b strings.Builder
	fmt.Fprintf(&b, "%s: RSS %.1f MiB at %.0f s (%d koi)", name, float64(last.rssBytes)/(1<<20), last.t, last.koi)
	var perKoi []string
	maxPK := 0.0
	for _, s := range ss {
		if s.t < 60 || want <= 0 {
			continue
		}
		pk := float64(s.rssBytes) / 1024 / float64(want)
		maxPK = max(maxPK, pk)
		mark := ""
		if f.after++; float64(s.koi) < 0.95*float64(want) {
			f.short++
			mark = "*"
		}
		perKoi = append(perKoi, fmt.Sprintf("%.1f%s", pk, mark))
	}
	if len(perKoi) > 0 {
		f.maxKiBPerKoi = maxPK
		fmt.Fprintf(&b, "; RSS per koi (of %d) after the first minute (KiB, each sample; * under 95%% connected): max %.1f [%s]", want, maxPK, strings.Join(perKoi, " "))
	}
	if s, n := rssSlope(ss, last.t-120); !math.IsNaN(s) {
		f.slope2 = 100 * s * 60
		fmt.Fprintf(&b, "; RSS slope over the last 2 min %+.2f%%/min (%d samples from %.0f s)", 100*s*60, n, max(ss[0].t, last.t-120))
	}
	if span := last.t - ss[0].t; span >= 20*60 {
		s, n := rssSlope(ss, last.t-20*60)
		f.growth20 = 100 * s * 600
		fmt.Fprintf(&b, "; growth over the last 20 min %+.2f%% per 10 min (%d samples)", 100*s*600, n)
	} else {
		b.WriteString("; growth per 10 min over the last 20: n/a (shorter than 20 min)")
	}
	// CPU after the first minute (the ramp), per second and per request.
	var first *soakSample
	for i := range ss {
		if ss[i].t >= 60 {
			first = &ss[i]
			break
		}
	}
	if first != nil && last.t > first.t {
		cpu := last.cpuSecs - first.cpuSecs
		fmt.Fprintf(&b, "; CPU after the first minute %.1f%% of a core", 100*cpu/(last.t-first.t))
		if req := last.requests - first.requests; last.requests > first.requests {
			fmt.Fprintf(&b, ", %.2f CPU-s per 10,000 pond requests (%d requests)", cpu/float64(req)*10000, req)
		}
	}
	return b.String(), f
}

// soakVerdicts judges the figures against issue 14's "done when": every
// school ≤ 48 KiB per koi after the first minute and a last-2-minutes
// slope ≤ 2% per minute; school and keeper growth ≤ 1% per 10 minutes over
// the last 20 (soaks of 20 minutes or more); the keeper's memory for the
// run ≤ 16 MB: its live heap's growth when the keeper could say it, else
// its RSS growth.
func soakVerdicts(figs map[string]soakFigures, names []string, keeper keeperGrowth) []string {
	var out []string
	judge := func(ok bool, what string, args ...any) {
		v := "PASS"
		if !ok {
			v = "MISS"
		}
		out = append(out, v+"  "+fmt.Sprintf(what, args...))
	}
	for _, n := range names {
		f := figs[n]
		isSchool := strings.HasPrefix(n, "school")
		if isSchool && f.after > 0 {
			judge(f.short == 0, "%s: at least 95%% of its koi connected at every sample after the first minute: %d of %d samples short", n, f.short, f.after)
		}
		if isSchool {
			if math.IsNaN(f.maxKiBPerKoi) {
				out = append(out, "n/a   "+n+": RSS per koi after the first minute (no sample after it)")
			} else {
				judge(f.maxKiBPerKoi <= 48, "%s: RSS per koi at every sample after the first minute ≤ 48 KiB: max %.1f KiB", n, f.maxKiBPerKoi)
			}
			if !math.IsNaN(f.slope2) {
				judge(f.slope2 <= 2, "%s: RSS slope over the last 2 minutes ≤ 2%%/min: %+.2f%%/min", n, f.slope2)
			}
		}
		if (isSchool || n == "keeper") && !math.IsNaN(f.growth20) {
			judge(f.growth20 <= 1, "%s: RSS growth over the last 20 minutes ≤ 1%% per 10 min: %+.2f%%", n, f.growth20)
		}
	}
	rss := float64(keeper.rssKiB) * 1024 / 1e6
	if keeper.heapKnown {
		live := float64(keeper.liveHeap) / 1e6
		judge(live <= 16, "keeper: memory for the run (live heap, as its last GC found it, and history store growth since it was created) ≤ 16 MB: %.1f MB (RSS growth %.1f MB)", live, rss)
	} else {
		judge(rss <= 16, "keeper: memory for the run (RSS growth since it was created) ≤ 16 MB: %.1f MB", rss)
	}
	return out
}

// keeperGrowth is what the keeper took on over a soak: its RSS, and its
// live heap (as its last GC found it) when its /metrics said.
type keeperGrowth struct {
	rssKiB    int64
	liveHeap  int64 // bytes
	heapKnown bool
}

// soakChart draws RSS (MiB) and CPU (% of one core over each sample
// interval) of every process against time, as a small standalone SVG.
func soakChart(title string, names []string, samples []soakSample, interval time.Duration) []byte {
	const (
		w, panelH   = 900, 260
		left, right = 70, 150
		top, gap    = 56, 60
	)
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}
	tMax := 0.0
	for _, s := range samples {
		tMax = max(tMax, s.t)
	}
	tMax = max(tMax, interval.Seconds())
	type series struct {
		name   string
		rss    [][2]float64
		cpuPct [][2]float64
	}
	var all []series
	rssMax, cpuMax := 1.0, 1.0
	for _, n := range names {
		ss := of(n, samples)
		sr := series{name: n}
		for i, s := range ss {
			r := float64(s.rssBytes) / (1 << 20)
			sr.rss = append(sr.rss, [2]float64{s.t, r})
			rssMax = max(rssMax, r)
			if i > 0 && s.t > ss[i-1].t {
				c := 100 * (s.cpuSecs - ss[i-1].cpuSecs) / (s.t - ss[i-1].t)
				sr.cpuPct = append(sr.cpuPct, [2]float64{s.t, c})
				cpuMax = max(cpuMax, c)
			}
		}
		all = append(all, sr)
	}
	var b strings.Builder
	h := top + 2*panelH + gap + 50
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">%s</text>`+"\n", left, html.EscapeString(title))
	panel := func(y0 int, label string, yMax float64, pts func(series) [][2]float64) {
		pw := float64(w - left - right)
		ph := float64(panelH)
		yTop := niceCeil(yMax)
		px := func(t float64) float64 { return float64(left) + pw*t/tMax }
		py := func(v float64) float64 { return float64(y0) + ph - ph*v/yTop }
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, pw, ph)
		for i := 0; i <= 4; i++ {
			v := yTop * float64(i) / 4
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
				left, py(v), float64(left)+pw, py(v), left-6, py(v)+4, trimFloat(v))
		}
		step := niceStep(tMax / 60 / 6) // about six ticks, in minutes
		for m := 0.0; m*60 <= tMax+1e-9 && m < 10000; m += step {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", px(m*60), float64(y0)+ph+16, trimFloat(m))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left, y0-6, html.EscapeString(label))
		for i, s := range all {
			p := pts(s)
			if len(p) == 0 {
				continue
			}
			var d strings.Builder
			for j, q := range p {
				if j > 0 {
					d.WriteByte(' ')
				}
				fmt.Fprintf(&d, "%.1f,%.1f", px(q[0]), py(q[1]))
			}
			c := colors[i%len(colors)]
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`+"\n", c, d.String())
			fmt.Fprintf(&b, `<text x="%.0f" y="%d" fill="%s">%s</text>`+"\n", float64(left)+pw+10, y0+16+16*i, c, html.EscapeString(s.name))
		}
	}
	panel(top, "RSS, MiB", rssMax, func(s series) [][2]float64 { return s.rss })
	panel(top+panelH+gap, fmt.Sprintf("CPU, %% of one core over each %v", interval), cpuMax, func(s series) [][2]float64 { return s.cpuPct })
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">minutes since the run was created</text>`+"\n", left+(w-left-right)/2, h-8)
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten (at least 0.5).
func niceStep(x float64) float64 {
	if x <= 0.5 || math.IsNaN(x) {
		return 0.5
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

// niceCeil rounds x up to a round axis top.
func niceCeil(x float64) float64 {
	s := niceStep(x / 4)
	return math.Ceil(x/s) * s
}

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}
