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
	var u Usage
	err := parseStatusRSS([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t  700 kB\nRssFile:\t  300 kB\nRssShmem:\t  24 kB\n"), &u)
	if err != nil || u.RSSKiB != 1024 || u.PeakRSSKiB != 2048 || u.RSSFileKiB != 300 {
		t.Errorf("status: %+v %v", u, err)
	}
	// An older kernel has no RssFile: the rest still reads.
	u = Usage{}
	if err := parseStatusRSS([]byte("VmHWM:\t 8 kB\nVmRSS:\t 4 kB\n"), &u); err != nil || u.RSSKiB != 4 || u.RSSFileKiB != 0 {
		t.Errorf("status without RssFile: %+v %v", u, err)
	}
	u = Usage{RSSKiB: 9}
	if err := parseStatusRSS([]byte("Name:\tzombie\nState:\tZ\n"), &u); err == nil || u.RSSKiB != 9 {
		t.Errorf("status without VmRSS parsed (%v), or changed what it was given (%+v)", err, u)
	}
	if err := parseStatusRSS([]byte("VmRSS:\t lots kB\n"), &u); err == nil {
		t.Error("garbled VmRSS parsed")
	}
	if err := parseStatusRSS([]byte("VmRSS:\t 4 kB\nRssFile:\t many kB\n"), &u); err == nil || !strings.Contains(err.Error(), "RssFile") {
		t.Errorf("garbled RssFile: %v, want an error naming it", err)
	}
}
