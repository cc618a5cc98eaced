package warehouse

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkGenerateSessions reads the CSV export of BenchmarkGenerate
// (WAREHOUSE_BENCH_ROWS rows, 50,000 users over a week, random order)
// with and without --sessions, at a memory budget that makes both sorts
// spill, and reports rows/s, the transitions learned and the peak RSS.
func BenchmarkGenerateSessions(b *testing.B) {
	rows := benchRows(b)
	dir := b.TempDir()
	if keep := os.Getenv("WAREHOUSE_BENCH_KEEP"); keep != "" {
		dir = filepath.Join(keep, "csv")
		os.MkdirAll(dir, 0o755)
	}
	if _, err := os.Stat(filepath.Join(dir, "part-00009.csv")); err != nil {
		writeBenchExport(b, dir, "csv", rows, 10)
	}
	for _, sessions := range []bool{false, true} {
		name := "frequencies"
		if sessions {
			name = "sessions"
		}
		b.Run(name, func(b *testing.B) {
			var res *Result
			for b.Loop() {
				var err error
				res, err = Generate(context.Background(), Options{From: dir, TempDir: b.TempDir(), Sessions: sessions, MemoryBytes: 16 << 20}, nil)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(peakRSS(), "peak-RSS-MiB")
			if res.Sessions != nil {
				b.ReportMetric(float64(len(res.Sessions.Transitions)), "transitions")
			}
		})
	}
}
