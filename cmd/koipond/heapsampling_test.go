package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"
)

// heapSampleRate reads the runtime's rate under the lock every access of
// this package's takes.
func heapSampleRate() int {
	heapSampling.mu.Lock()
	defer heapSampling.mu.Unlock()
	return runtime.MemProfileRate
}

// The heap is sampled for profiles only by a command that serves them:
// main turns sampling off unless GODEBUG sets memprofilerate; a keeper
// without --pprof leaves it off; a keeper, school or pond with --pprof
// turns it back on at the rate the process started with, and its heap
// profile says that rate.
func TestHeapSampledOnlyWhereProfilesAreServed(t *testing.T) {
	start := heapSampleRate()
	if start == 0 {
		t.Fatal("the test process starts with heap sampling off; nothing to check")
	}
	t.Cleanup(func() {
		heapSampling.mu.Lock()
		runtime.MemProfileRate, heapSampling.stopped = start, 0
		heapSampling.mu.Unlock()
	})

	t.Setenv("GODEBUG", "panicnil=0, memprofilerate=4096")
	stopHeapSampling()
	if got := heapSampleRate(); got != start {
		t.Fatalf("with GODEBUG setting memprofilerate, main changed the rate to %d", got)
	}
	t.Setenv("GODEBUG", "")
	stopHeapSampling()
	if got := heapSampleRate(); got != 0 {
		t.Fatalf("main left the rate at %d, want 0", got)
	}

	data := t.TempDir()
	keeperOut := regexp.MustCompile(`UI (http://\S+)/, API \S+, NATS (\S+)`)
	m, stopKeeper := serveCmd(t, keeperOut, "keeper", "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1", "--data", data, "--nats-insecure")
	if got := heapSampleRate(); got != 0 {
		t.Errorf("a keeper without --pprof turned heap sampling on (rate %d)", got)
	}
	stopKeeper()

	m, stopKeeper = serveCmd(t, keeperOut, "keeper", "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1", "--data", data, "--nats-insecure", "--pprof")
	defer stopKeeper()
	wantRate(t, "keeper --pprof", m[1], start)

	for _, c := range []struct {
		name string
		out  *regexp.Regexp
		args []string
	}{
		{"pond", regexp.MustCompile(`pond listening on \S+ \(api (http://\S+)/api/`), []string{"pond", "--http", "127.0.0.1:0"}},
		{"school", regexp.MustCompile(`healthz=(http://\S+)/healthz`), []string{"school", "--nats", m[2], "--http", "127.0.0.1:0"}},
	} {
		stopHeapSampling() // as main leaves it
		sm, stop := serveCmd(t, c.out, append(c.args, "--pprof")...)
		wantRate(t, c.name+" --pprof", sm[1], start)
		stop()
	}
}

// wantRate checks that heap sampling is on at rate, in this process and
// in the heap profile served under base.
func wantRate(t *testing.T, what, base string, rate int) {
	t.Helper()
	if got := heapSampleRate(); got != rate {
		t.Errorf("%s: heap sampling rate %d, want %d", what, got, rate)
	}
	resp, err := http.Get(base + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first, _ := bufio.NewReader(resp.Body).ReadString('\n')
	// The text profile's header says twice the rate (runtime/pprof).
	if want := fmt.Sprintf("@ heap/%d", 2*rate); resp.StatusCode != 200 || !strings.Contains(first, want) {
		t.Errorf("%s: heap profile HTTP %d, first line %q, want it to say %q", what, resp.StatusCode, first, want)
	}
}

// serveCmd runs a serving command with args in this process until out
// matches its output (stdout or stderr), and returns the match and how
// to stop the command and wait for it to return (call it once).
func serveCmd(t *testing.T, out *regexp.Regexp, args ...string) ([]string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // a test that fails before stop leaves no command running
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &stdout, &stderr) }()
	var m []string
	wiretest.WaitFor(t, 30*time.Second, fmt.Sprintf("koipond %s's output to match %s", args[0], out), func() error {
		if m = out.FindStringSubmatch(stdout.String() + stderr.String()); m == nil {
			return fmt.Errorf("output so far:\n%s\n%s", stdout.String(), stderr.String())
		}
		return nil
	})
	return m, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("koipond %s returned %v\n%s", args[0], err, stderr.String())
		}
	}
}
