package school

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Memory defaults. A school's memory ceiling (Config.MemoryLimit) is, unless
// given:
//   - CgroupShare of the container's memory limit (cgroup v2 memory.max,
//     v1 memory.limit_in_bytes) when one is set: the rest is headroom for
//     what the Go runtime's limit does not govern and for the moments the
//     school needs to pause a run, so the kernel's OOM killer never
//     fires first;
//   - else RAMShare of the machine's memory (/proc/meminfo MemTotal): a
//     school shares its host with the target or other schools;
//   - else (neither readable) FallbackMemoryLimit;
//
// and never more than a lower limit the runtime already has (GOMEMLIMIT).
//
// The ceiling is applied as the Go runtime's soft memory limit
// (runtime/debug.SetMemoryLimit) and watched by the pressure monitor.
const (
	CgroupShare         = 0.9
	RAMShare            = 0.5
	FallbackMemoryLimit = 2 << 30
	// MinMemoryLimit is the smallest ceiling Validate accepts.
	MinMemoryLimit = 16 << 20
	// ReplyBudgetShare is the default share of the ceiling koi may hold
	// in reply bytes being read (Config.ReplyBudget).
	ReplyBudgetShare = 0.25
)

// ParseBytes reads a size such as "2GiB", "512MiB", "1.5G", "800M",
// "65536" or "64k" (binary units and their one-letter forms are powers of
// 1024; "kB", "MB", "GB", "TB" are powers of 1000).
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("size %q: not a number followed by a unit", short(s))
	}
	mult, ok := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)", short(s), short(unit))
	}
	b := v * mult
	if b >= math.MaxInt64 || math.IsNaN(b) {
		return 0, fmt.Errorf("size %q is too large", short(s))
	}
	return int64(b), nil
}

// FormatBytes writes n in binary units with one decimal, e.g. "1.5GiB".
func FormatBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	v, u := float64(n)/1024, 0
	for v >= 1024 && u < 4 {
		v /= 1024
		u++
	}
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[u]
}

// DefaultMemoryLimit returns the default ceiling and where it came from.
func DefaultMemoryLimit() (int64, string) {
	if lim, src, ok := cgroupLimit("/"); ok {
		return int64(float64(lim) * CgroupShare), fmt.Sprintf("%.0f%% of the cgroup limit %s (%s)", CgroupShare*100, FormatBytes(lim), src)
	}
	if total, ok := memTotal("/proc/meminfo"); ok {
		return int64(float64(total) * RAMShare), fmt.Sprintf("%.0f%% of MemTotal %s", RAMShare*100, FormatBytes(total))
	}
	return FallbackMemoryLimit, "fallback (no cgroup limit, /proc/meminfo unreadable)"
}

// cgroupLimit reads the memory limit of this process's cgroup under root
// ("/" outside tests): v2 memory.max of the cgroup named in
// /proc/self/cgroup (or the mount's root), else v1 memory.limit_in_bytes.
// "max" and v1's near-2^63 "unlimited" values count as no limit.
func cgroupLimit(root string) (int64, string, bool) {
	var paths []string
	if data, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok && !strings.Contains(rest, "..") {
				paths = append(paths, filepath.Join(root, "sys/fs/cgroup", rest, "memory.max"))
			}
		}
	}
	paths = append(paths, filepath.Join(root, "sys/fs/cgroup/memory.max"),
		filepath.Join(root, "sys/fs/cgroup/memory/memory.limit_in_bytes"))
	for _, p := range paths {
		data, err := readSmall(p)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(data))
		if v == "max" {
			return 0, "", false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 { // v1 says "unlimited" with a page-rounded 2^63
			continue
		}
		return n, p, true
	}
	return 0, "", false
}

// memTotal reads MemTotal from a meminfo file.
func memTotal(path string) (int64, bool) {
	data, err := readSmall(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb <= 0 || kb > math.MaxInt64/1024 {
				return 0, false
			}
			return kb * 1024, true
		}
	}
	return 0, false
}

// readSmall reads at most 64 KiB of a (proc or sys) file.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, err := f.Read(buf)
	if n == 0 && err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// memorySamples are the runtime metrics whose difference is the memory the
// Go runtime's soft limit governs: everything mapped, less what has been
// returned to the OS.
var memorySamples = []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}

// memoryInUse returns the memory the Go runtime counts against its limit.
func memoryInUse() int64 {
	s := make([]metrics.Sample, len(memorySamples))
	copy(s, memorySamples)
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64() - min(s[0].Value.Uint64(), s[1].Value.Uint64()))
}
