package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runSoakSummary re-reads a soak.csv and prints its summary and verdicts
// again, and redraws its chart beside it: to judge a soak with a changed
// rule, or one whose harness was cut short after writing samples.
func runSoakSummary(args []string) error {
	fs := flag.NewFlagSet("schoolbench soak-summary", flag.ContinueOnError)
	path := fs.String("csv", "", "a soak.csv written by schoolbench soak")
	koi := fs.Int("koi", 5000, "koi of the soaked run")
	schools := fs.Int("schools", 1, "school processes it was spread over")
	sample := fs.Duration("sample", 10*time.Second, "its sampling interval (for the chart's label)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *koi < 1 || *schools < 1 {
		return errors.New("--csv is needed; --koi and --schools must be ≥ 1")
	}
	f, err := os.Open(*path)
	if err != nil {
		return err
	}
	defer f.Close()
	samples, err := readSoakCSV(io.LimitReader(f, 256<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	var names []string
	for _, s := range samples {
		if !slices.Contains(names, s.process) {
			names = append(names, s.process)
		}
	}
	perSchool := int64((*koi + *schools - 1) / *schools)
	figs := map[string]soakFigures{}
	for _, n := range names {
		want := int64(*koi)
		if strings.HasPrefix(n, "school") {
			want = perSchool
		}
		line, fg := summarize(n, samples, want)
		figs[n] = fg
		fmt.Println(line)
	}
	// The CSV has no sample from before the run: the keeper's growth is
	// counted from its first sample.
	var delta int64
	if k := of("keeper", samples); len(k) > 0 {
		delta = (k[len(k)-1].rssBytes - k[0].rssBytes) >> 10
	}
	fmt.Println("against issue 14's targets (keeper memory from its first sample, not from before the run):")
	for _, v := range soakVerdicts(figs, names, keeperGrowth{rssKiB: delta}) {
		fmt.Println("  " + v)
	}
	svg := filepath.Join(filepath.Dir(*path), "soak.svg")
	title := fmt.Sprintf("soak: %d koi (%s)", *koi, filepath.Base(filepath.Dir(*path)))
	return os.WriteFile(svg, soakChart(title, names, samples, *sample), 0o644)
}

// readSoakCSV parses soak.csv (time,process,rss_bytes,cpu_seconds,koi,requests).
func readSoakCSV(r io.Reader) ([]soakSample, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 6
	head, err := cr.Read()
	if err != nil {
		return nil, err
	}
	if strings.Join(head, ",") != "time,process,rss_bytes,cpu_seconds,koi,requests" {
		return nil, fmt.Errorf("header %q is not a soak.csv's", head)
	}
	var out []soakSample
	for line := 2; line < 10_000_000; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		t, e1 := strconv.ParseFloat(rec[0], 64)
		rss, e2 := strconv.ParseInt(rec[2], 10, 64)
		cpu, e3 := strconv.ParseFloat(rec[3], 64)
		koi, e4 := strconv.ParseInt(rec[4], 10, 64)
		req, e5 := strconv.ParseUint(rec[5], 10, 64)
		if err := errors.Join(e1, e2, e3, e4, e5); err != nil || rec[1] == "" || t < 0 || rss < 0 || cpu < 0 || koi < 0 {
			return nil, fmt.Errorf("line %d: %q: not a sample (%v)", line, rec, err)
		}
		out = append(out, soakSample{t: t, process: rec[1], rssBytes: rss, cpuSecs: cpu, koi: koi, requests: req})
	}
	return nil, errors.New("more than 10 million lines")
}
