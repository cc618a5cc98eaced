package supervise

import (
	"strings"
	"testing"
	"time"
)

// /proc lines as the kernel writes them, and as they must not fool the
// parser: a command name with spaces and parens, short or garbled lines.
func TestParseProc(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		cpu        time.Duration
		err        string
	}{
		// The command name may hold ") (" : the last ')' ends it.
		{"tricky name", "42 (a) (b c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10", 300 * ClockTick, ""},
		{"no paren", "42 a S 1", 0, "no ')'"},
		{"short", "42 (a) S 1 2 3", 0, "fields"},
		{"garbled utime", "42 (a) S 1 42 42 0 -1 4194560 100 0 0 0 x 50 0 0", 0, "bad utime"},
		{"negative", "42 (a) S 1 42 42 0 -1 4194560 100 0 0 0 -5 50 0 0", 0, "bad utime"},
	} {
		cpu, err := parseStatCPU([]byte(tc.stat))
		if tc.err == "" && (err != nil || cpu != tc.cpu) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, %v; want %v, %q", tc.name, cpu, err, tc.cpu, tc.err)
		}
	}
	rss, hwm, err := parseStatusRSS([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	if err != nil || rss != 1024 || hwm != 2048 {
		t.Errorf("status: %d %d %v", rss, hwm, err)
	}
	if _, _, err := parseStatusRSS([]byte("Name:\tzombie\nState:\tZ\n")); err == nil {
		t.Error("status without VmRSS parsed")
	}
	if _, _, err := parseStatusRSS([]byte("VmRSS:\t lots kB\n")); err == nil {
		t.Error("garbled VmRSS parsed")
	}
}
