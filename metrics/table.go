package metrics

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// tableQuantiles are the latency columns of WriteTable and String.
var tableQuantiles = []struct {
	name string
	q    float64
}{{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}}

// String summarizes the series on one line, e.g.
// "total=120 ok=117 timeout=3 p50=12.1ms p95=40.2ms p99=88ms".
func (ss *SeriesSnapshot) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "total=%d", ss.Total())
	for o, c := range ss.Counts {
		if c > 0 {
			fmt.Fprintf(&b, " %s=%d", Outcome(o), c)
		}
	}
	for _, tq := range tableQuantiles {
		if d, ok := ss.Quantile(tq.q); ok {
			fmt.Fprintf(&b, " %s=%s", tq.name, formatLatency(d))
		}
	}
	return b.String()
}

// WriteTable writes s as an aligned text table, one row per key in key
// order: the key, total count, rate per second over the interval, one
// column per outcome seen anywhere in s (ok always), then p50, p95 and p99
// latency ("-" where a key has no latency samples). For example:
//
//	KEY                         COUNT  RATE/S  OK    TIMEOUT  P50     P95     P99
//	api:conversations.history   1204   120.4   1200  4        12.1ms  40.2ms  88ms
func WriteTable(w io.Writer, s *Snapshot) error {
	cols := []Outcome{OK}
	for o := OK + 1; o < NumOutcomes; o++ {
		for _, ss := range s.Series {
			if ss != nil && ss.Counts[o] > 0 {
				cols = append(cols, o)
				break
			}
		}
	}
	secs := s.End.Sub(s.Start).Seconds()
	if s.Start.IsZero() || s.End.IsZero() {
		secs = 0
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"KEY", "COUNT", "RATE/S"}
	for _, o := range cols {
		head = append(head, strings.ToUpper(o.String()))
	}
	for _, tq := range tableQuantiles {
		head = append(head, strings.ToUpper(tq.name))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, key := range s.Keys() {
		ss := s.Series[key]
		if ss == nil {
			continue
		}
		row := []string{key, strconv.FormatUint(ss.Total(), 10), "-"}
		if secs > 0 {
			row[2] = strconv.FormatFloat(float64(ss.Total())/secs, 'f', 1, 64)
		}
		for _, o := range cols {
			row = append(row, strconv.FormatUint(ss.Counts[o], 10))
		}
		for _, tq := range tableQuantiles {
			cell := "-"
			if d, ok := ss.Quantile(tq.q); ok {
				cell = formatLatency(d)
			}
			row = append(row, cell)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// formatLatency prints d with three significant digits: 850µs, 12.1ms, 1.24s.
func formatLatency(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	r := time.Duration(1)
	for v := d; v >= 1000; v /= 10 {
		r *= 10
	}
	return d.Round(r).String()
}
