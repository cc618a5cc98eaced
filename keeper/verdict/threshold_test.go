package verdict

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseThreshold(t *testing.T) {
	for _, c := range []struct {
		expr  string
		stat  string
		op    string
		limit float64
		unit  string
	}{
		{"p95 < 300ms", "p95", "<", 300, "ms"},
		{"p99<2s", "p99", "<", 2000, "ms"},
		{"p99.9 <= 1.5s", "p99.9", "<=", 1500, "ms"},
		{"max < 10s", "max", "<", 10000, "ms"},
		{"P50 > 0ms", "p50", ">", 0, "ms"},
		{"error_rate < 1%", "error_rate", "<", 0.01, "fraction"},
		{"error_rate <= 0.05", "error_rate", "<=", 0.05, "fraction"},
		{"success_rate >= 99.5%", "success_rate", ">=", 0.995, "fraction"},
		{"count >= 100", "count", ">=", 100, "count"},
		{"errors < 5", "errors", "<", 5, "count"},
		{"rate > 50/s", "rate", ">", 50, "per_sec"},
		{"  rate   >=  2.5 ", "rate", ">=", 2.5, "per_sec"},
	} {
		th, err := ParseThreshold("api:x", c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		if th.Stat != c.stat || th.Op != c.op || math.Abs(th.Limit-c.limit) > 1e-9 || th.Unit() != c.unit {
			t.Errorf("%q: got %+v unit %s", c.expr, th, th.Unit())
		}
	}
	for _, c := range []struct{ expr, want string }{
		{"", "want STAT OP VALUE"},
		{"p95 300ms", "want STAT OP VALUE"},
		{"p95 < 300ms extra", "want STAT OP VALUE"},
		{"p95 = 300ms", "operator"},
		{"p95 << 300ms", "operator"},
		{"p0 < 1s", "percentile"},
		{"p101 < 1s", "percentile"},
		{"pxx < 1s", "percentile"},
		{"avg < 1s", "unknown statistic"},
		{"p95 < 300", "duration with a unit"},
		{"p95 < -1s", "negative"},
		{"error_rate < 150%", "outside"},
		{"error_rate < 2", "outside"},
		{"error_rate < lots", "percentage"},
		{"count > -1", "non-negative"},
		{"rate > NaN", "non-negative"},
	} {
		_, err := ParseThreshold("api:x", c.expr)
		if err == nil || !errors.Is(err, errThreshold) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one mentioning %q", c.expr, err, c.want)
		}
	}
}
