package supervise

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTick is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// this runs on (getconf CLK_TCK).
const ClockTick = 10 * time.Millisecond

// Usage is what /proc says a process costs at one instant.
type Usage struct {
	// RSSKiB is its resident set (VmRSS) and PeakRSSKiB the largest it has
	// been (VmHWM), in KiB.
	RSSKiB, PeakRSSKiB int64
	// RSSFileKiB is the part of RSSKiB that maps files (RssFile): mostly
	// its own executable's pages, clean and shared with the page cache; 0
	// on a kernel that does not say.
	RSSFileKiB int64
	// CPU is the user and system time of all its threads so far.
	CPU time.Duration
}

// ReadUsage reads pid's Usage from /proc/PID/stat and /proc/PID/status.
func ReadUsage(pid int) (Usage, error) {
	var u Usage
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	if u.CPU, err = parseStatCPU(st); err != nil {
		return u, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	if err = parseStatusRSS(status, &u); err != nil {
		return u, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return u, nil
}

// parseStatCPU reads utime + stime from a /proc/PID/stat line.
func parseStatCPU(st []byte) (time.Duration, error) {
	// Fields after the command name (which may hold spaces and parens):
	// state is field 3, utime 14, stime 15, in clock ticks.
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' after the command name")
	}
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 63)
	stt, err2 := strconv.ParseUint(f[12], 10, 63)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime %q or stime %q", f[11], f[12])
	}
	return time.Duration(ut+stt) * ClockTick, nil
}

// parseStatusRSS reads VmRSS, VmHWM and RssFile (KiB) from
// /proc/PID/status into u.
func parseStatusRSS(status []byte, u *Usage) error {
	var got Usage
	found := false
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		for _, k := range []struct {
			prefix string
			dst    *int64
		}{{"VmRSS:", &got.RSSKiB}, {"VmHWM:", &got.PeakRSSKiB}, {"RssFile:", &got.RSSFileKiB}} {
			if rest, ok := strings.CutPrefix(sc.Text(), k.prefix); ok {
				v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err != nil {
					return fmt.Errorf("%s %q: %w", k.prefix, rest, err)
				}
				*k.dst = v
				found = found || k.prefix == "VmRSS:"
			}
		}
	}
	if !found {
		return fmt.Errorf("no VmRSS (a zombie, or not a process)")
	}
	u.RSSKiB, u.PeakRSSKiB, u.RSSFileKiB = got.RSSKiB, got.PeakRSSKiB, got.RSSFileKiB
	return nil
}

// MachineCPU returns the busy and total clock ticks of the whole machine
// (the "cpu" line of /proc/stat; idle and iowait are not busy).
func MachineCPU() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %.80q is not the cpu total", line)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: cpu field %d %q: %w", i+1, v, err)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// LoadAvg returns the 1, 5 and 15 minute load averages as /proc/loadavg
// writes them, or "?".
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
