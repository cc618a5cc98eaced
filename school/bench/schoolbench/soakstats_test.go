package main

import (
	"encoding/xml"
	"math"
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
	line := summarize("school-1", ss)
	for _, want := range []string{"RSS 102.0 MiB at 300 s (1000 koi)", "max 104.4", "+0.99%/min (13 samples from 180 s)", "n/a (shorter than 20 min)"} {
		if !strings.Contains(line, want) {
			t.Errorf("summary %q lacks %q", line, want)
		}
	}
	if got := summarize("keeper", ss); got != "keeper: no samples" {
		t.Errorf("summary of an unsampled process: %q", got)
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
