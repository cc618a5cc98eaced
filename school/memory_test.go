package school

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "2GiB", want: 2 << 30},       // binary unit
		{in: "512MiB", want: 512 << 20},   // binary unit
		{in: "1.5G", want: 3 << 29},       // one-letter form is binary
		{in: "800M", want: 800 << 20},     // one-letter form is binary
		{in: "1GB", want: 1e9},            // decimal unit
		{in: " 64k ", want: 64 << 10},     // spaces and lower case
		{in: "65536", want: 65536},        // plain bytes
		{in: "12 MiB", want: 12 << 20},    // space before the unit
		{in: "", bad: true},               // empty
		{in: "GiB", bad: true},            // no number
		{in: "2 parsecs", bad: true},      // unknown unit
		{in: "1e30", bad: true},           // 'e' is no unit
		{in: "99999999999TiB", bad: true}, // overflows int64
		{in: "1.2.3G", bad: true},         // not a number
	} {
		got, err := ParseBytes(c.in)
		if c.bad != (err != nil) || (!c.bad && got != c.want) {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, bad=%v", c.in, got, err, c.want, c.bad)
		}
	}
}

// The cgroup limit is read from the process's own v2 cgroup, "max" means
// none, and v1's "unlimited" value is ignored.
func TestCgroupLimit(t *testing.T) {
	write := func(root, path, content string) {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v2 := t.TempDir()
	write(v2, "proc/self/cgroup", "0::/kubepods/pod1/c1\n")
	write(v2, "sys/fs/cgroup/kubepods/pod1/c1/memory.max", "1073741824\n")
	if n, _, ok := cgroupLimit(v2); !ok || n != 1<<30 {
		t.Errorf("v2 limit = %d, %v; want 1GiB", n, ok)
	}
	none := t.TempDir()
	write(none, "proc/self/cgroup", "0::/\n")
	write(none, "sys/fs/cgroup/memory.max", "max\n")
	if n, _, ok := cgroupLimit(none); ok {
		t.Errorf("memory.max = max: limit %d, want none", n)
	}
	v1 := t.TempDir()
	write(v1, "sys/fs/cgroup/memory/memory.limit_in_bytes", "536870912\n")
	if n, _, ok := cgroupLimit(v1); !ok || n != 512<<20 {
		t.Errorf("v1 limit = %d, %v; want 512MiB", n, ok)
	}
	v1unlimited := t.TempDir()
	write(v1unlimited, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
	if n, _, ok := cgroupLimit(v1unlimited); ok {
		t.Errorf("v1 unlimited: limit %d, want none", n)
	}
	escape := t.TempDir()
	write(escape, "proc/self/cgroup", "0::/../../etc\n")
	if _, _, ok := cgroupLimit(escape); ok {
		t.Error("a cgroup path with .. was followed")
	}
	info := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(info, []byte("MemTotal:       16384000 kB\nMemFree: 1 kB\n"), 0o644)
	if n, ok := memTotal(info); !ok || n != 16384000*1024 {
		t.Errorf("MemTotal = %d, %v", n, ok)
	}
}

func TestValidateMemory(t *testing.T) {
	for _, c := range []Config{
		{MemoryLimit: 1 << 20},                        // below the minimum
		{ReplyBudget: -1},                             // negative
		{MemoryLimit: 64 << 20, ReplyBudget: 1 << 30}, // budget above the ceiling
		{PressureHold: -1},                            // negative
	} {
		if errs := c.Validate(); len(errs) != 1 {
			t.Errorf("%+v: %v, want one error", c, errs)
		}
	}
	if errs := (&Config{MemoryLimit: 2 << 30, ReplyBudget: 512 << 20}).Validate(); len(errs) > 0 {
		t.Errorf("a good memory config: %v", errs)
	}
}
