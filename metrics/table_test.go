package metrics

import (
	"strings"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := WriteTable(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"KEY", "COUNT", "RATE/S", "OK", "SERVER_ERROR", "RATE_LIMITED", "TIMEOUT", "TRANSPORT", "HALTED", "INVALID", "P50", "P95", "P99"},
		{"api:conversations.history", "1000", "100.0", "980", "10", "10", "0", "0", "0", "0"},
		{"event:message", "2", "0.2", "1", "0", "0", "0", "0", "0", "1", "-", "-", "-"},
		{"formation:announce:react", "1", "0.1", "0", "0", "0", "0", "0", "1", "0", "0s", "0s", "0s"},
		{"ws:connect", "3", "0.3", "1", "0", "0", "1", "1", "0", "0", "80.6ms", "80.6ms", "80.6ms"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i, w := range want {
		got := strings.Fields(lines[i])
		if len(got) != len(want[0]) {
			t.Errorf("line %d has %d columns: %q", i, len(got), lines[i])
			continue
		}
		for j, cell := range w {
			if got[j] != cell {
				t.Errorf("line %d column %s = %q, want %q", i, want[0][j], got[j], cell)
			}
		}
	}
	t.Logf("\n%s", b.String())
}

func TestSeriesString(t *testing.T) {
	ss := fixture().Series["ws:connect"]
	got := ss.String()
	for _, part := range []string{"total=3", "ok=1", "timeout=1", "transport=1", "p50=80.6ms", "p99=80.6ms"} {
		if !strings.Contains(got, part) {
			t.Errorf("String() = %q, missing %q", got, part)
		}
	}
}

func TestFormatLatency(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{850 * time.Microsecond, "850µs"},
		{12345678, "12.3ms"},
		{1234567890, "1.23s"},
		{999, "999ns"},
		{90 * time.Minute, "1h30m0s"},
	}
	for _, tt := range tests {
		if got := formatLatency(tt.in); got != tt.want {
			t.Errorf("formatLatency(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
