package warehouse

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchRows is the export size of BenchmarkGenerate: WAREHOUSE_BENCH_ROWS,
// default 1,000,000 (bench.sh runs the 10,000,000-row target).
func benchRows(b *testing.B) int {
	if s := os.Getenv("WAREHOUSE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("WAREHOUSE_BENCH_ROWS: %v", err)
		}
		return n
	}
	return 1_000_000
}

var benchMethods = func() []string {
	base := []string{"conversations.history", "chat.postMessage", "users.info", "reactions.add", "conversations.mark",
		"users.setPresence", "files.upload", "search.messages", "conversations.list", "users.getPresence"}
	var out []string
	for i := range 30 {
		out = append(out, fmt.Sprintf("%s%s", base[i%len(base)], []string{"", ".v2", ".v3"}[i/len(base)]))
	}
	return out
}()

// writeBenchExport writes rows calls in parts files of one format: 50,000
// users over a week, methods skewed, rows in random order (not sorted by
// user or time). It streams: memory stays small whatever rows is.
func writeBenchExport(b testing.TB, dir, format string, rows, parts int) {
	r := rand.New(rand.NewPCG(42, 42))
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).Unix()
	next := func() call {
		u := r.IntN(50_000)
		m := benchMethods[min(r.IntN(len(benchMethods)), r.IntN(len(benchMethods)))]
		return call{User: "U" + strconv.Itoa(1_000_000+u), Method: m, Team: "T" + strconv.Itoa(u%40),
			Client: [2]string{"desktop", "mobile"}[u&1], T: time.Unix(start+r.Int64N(7*86400), 0)}
	}
	for p := range parts {
		n := rows/parts + map[bool]int{true: rows % parts}[p == parts-1]
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("part-%05d.%s", p, format)))
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		switch format {
		case "csv":
			w.WriteString("user,method,timestamp,team,client\n")
			var line []byte
			for range n {
				c := next()
				line = append(line[:0], c.User...)
				line = append(line, ',')
				line = append(line, c.Method...)
				line = append(line, ',')
				line = c.T.UTC().AppendFormat(line, time.RFC3339)
				line = append(line, ',')
				line = append(line, c.Team...)
				line = append(line, ',')
				line = append(line, c.Client...)
				line = append(line, '\n')
				w.Write(line)
			}
		case "jsonl":
			var line []byte
			for range n {
				c := next()
				line = append(line[:0], `{"user":"`...)
				line = append(line, c.User...)
				line = append(line, `","method":"`...)
				line = append(line, c.Method...)
				line = append(line, `","timestamp":"`...)
				line = c.T.UTC().AppendFormat(line, time.RFC3339)
				line = append(line, `","team":"`...)
				line = append(line, c.Team...)
				line = append(line, `","client":"`...)
				line = append(line, c.Client...)
				line = append(line, "\"}\n"...)
				w.Write(line)
			}
		case "parquet":
			const batch = 100_000
			calls := make([]call, 0, batch)
			pw := newParquetStream(b, w)
			for i := range n {
				calls = append(calls, next())
				if len(calls) == batch || i == n-1 {
					pw.write(calls)
					calls = calls[:0]
				}
			}
			pw.close()
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// peakRSS is the process's peak resident set, in MiB.
func peakRSS() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}

// BenchmarkGenerate reads a generated export (WAREHOUSE_BENCH_ROWS rows in
// 10 parts) per format and reports rows/s and the peak RSS of the process.
// WAREHOUSE_BENCH_KEEP=DIR keeps the exports in DIR (for bench.sh).
func BenchmarkGenerate(b *testing.B) {
	rows := benchRows(b)
	for _, format := range []string{"csv", "jsonl", "parquet"} {
		b.Run(format, func(b *testing.B) {
			dir := b.TempDir()
			if keep := os.Getenv("WAREHOUSE_BENCH_KEEP"); keep != "" {
				dir = filepath.Join(keep, format)
				os.MkdirAll(dir, 0o755)
			}
			if _, err := os.Stat(filepath.Join(dir, "part-00009."+format)); err != nil {
				writeBenchExport(b, dir, format, rows, 10)
			}
			b.ResetTimer()
			var res *Result
			for b.Loop() {
				var err error
				res, err = Generate(context.Background(), Options{From: dir, TempDir: b.TempDir()}, nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if res.Rows.Used != int64(rows) {
				b.Fatalf("%d rows used, want %d", res.Rows.Used, rows)
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(peakRSS(), "peak-RSS-MiB")
			b.ReportMetric(float64(res.SortRuns), "sort-runs")
		})
	}
}
