package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// The keeper's collector target: 50 by default, the flag's when given,
// GOGC's when the environment sets it and the flag is not given; a value
// out of range is refused before anything changes; the command puts the
// process's target back when it returns. Each case reads the target from
// a real keeper's /metrics.
func TestKeeperGCPercent(t *testing.T) {
	const before = 137 // neither Go's default nor the keeper's
	prev := debug.SetGCPercent(before)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	gogc, hadGOGC := os.LookupEnv("GOGC")
	os.Unsetenv("GOGC")
	t.Cleanup(func() {
		if hadGOGC {
			os.Setenv("GOGC", gogc)
		}
	})

	for _, bad := range []string{"5", "1001", "-1"} {
		_, errOut, code := runCmd(t, "keeper", "--gc-percent", bad, "--http", "127.0.0.1:0", "--data", t.TempDir())
		if code != 2 || !strings.Contains(errOut, "--gc-percent "+bad+": must be 10–1000") {
			t.Errorf("--gc-percent %s: exit %d, stderr %q", bad, code, errOut)
		}
		if cur := currentGCPercent(); cur != before {
			t.Errorf("--gc-percent %s changed the target to %d", bad, cur)
		}
	}

	for _, c := range []struct {
		name string
		args []string
		env  string // GOGC, as the runtime would have read it at start
		want int
	}{
		{name: "default", want: defaultKeeperGCPercent},
		{name: "flag", args: []string{"--gc-percent", "30"}, want: 30},
		{name: "GOGC", env: "150", want: 150},
		{name: "flag over GOGC", args: []string{"--gc-percent", "40"}, env: "150", want: 40},
	} {
		t.Run(c.name, func(t *testing.T) {
			debug.SetGCPercent(before)
			if c.env != "" {
				t.Setenv("GOGC", c.env)
				var n int
				fmt.Sscan(c.env, &n)
				debug.SetGCPercent(n) // what the runtime did with it at start
			}
			got := keeperGCPercentOnMetrics(t, c.args...)
			if got != c.want {
				t.Errorf("koipond_keeper_go_gc_percent %d, want %d", got, c.want)
			}
			if c.env == "" {
				if cur := currentGCPercent(); cur != before {
					t.Errorf("after the keeper returned the target is %d, want %d back", cur, before)
				}
			}
		})
	}
}

func currentGCPercent() int {
	cur := debug.SetGCPercent(-1)
	debug.SetGCPercent(cur)
	return cur
}

// keeperGCPercentOnMetrics runs `koipond keeper` with args in this
// process, reads koipond_keeper_go_gc_percent from its /metrics, stops it
// and waits for it to return.
func keeperGCPercentOnMetrics(t *testing.T, args ...string) int {
	t.Helper()
	m, stop := serveCmd(t, regexp.MustCompile(`UI (http://\S+)/`), append([]string{"keeper", "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1", "--data", t.TempDir()}, args...)...)
	defer stop()
	resp, err := http.Get(m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := -1
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "koipond_keeper_go_gc_percent "); ok {
			fmt.Sscan(v, &got)
		}
	}
	return got
}
