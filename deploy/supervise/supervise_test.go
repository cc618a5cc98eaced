package supervise_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/koipond/koipond/deploy/supervise"
	"github.com/koipond/koipond/pond"
)

// The test binary doubles as the child: SUPERVISE_CHILD says what to be.
func TestMain(m *testing.M) {
	switch os.Getenv("SUPERVISE_CHILD") {
	case "":
		os.Exit(m.Run())
	case "polite": // exits 0 on SIGTERM
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		fmt.Println("bye")
		os.Exit(0)
	case "stubborn": // ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Minute)
	case "busy": // burns CPU and holds 32 MiB until killed
		hold := make([]byte, 32<<20)
		for i := range hold {
			hold[i] = byte(i)
		}
		fmt.Println("ready")
		deadline := time.Now().Add(time.Minute)
		for n := 0; time.Now().Before(deadline); n++ {
			hold[n%len(hold)]++
		}
	case "fail":
		fmt.Fprintln(os.Stderr, "line 1\nline 2\nline 3")
		os.Exit(3)
	}
	os.Exit(2)
}

// child starts the test binary as a child of the given kind and waits for
// it to say ready (when it will).
func child(t *testing.T, kind string) *supervise.Proc {
	t.Helper()
	p, err := supervise.Start(supervise.Command{Name: kind, Path: os.Args[0], Args: []string{"-test.run=^$"},
		Env: []string{"SUPERVISE_CHILD=" + kind}, Log: filepath.Join(t.TempDir(), kind+".log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, time.Second) })
	if kind == "fail" {
		return p
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(supervise.Tail(p.Log, 5), "ready") {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s never said ready (exited %v: %v):\n%s", kind, p.Exited(), p.Err(), supervise.Tail(p.Log, 20))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// A child that exits on SIGTERM stops within the grace period, without an
// error; its log starts with its command line and holds its output.
func TestStopPolite(t *testing.T) {
	p := child(t, "polite")
	if p.Pid() <= 0 || p.Exited() {
		t.Fatalf("pid %d, exited %v", p.Pid(), p.Exited())
	}
	took, err := p.Stop(syscall.SIGTERM, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Exited() || p.Err() != nil {
		t.Errorf("after Stop: exited %v, err %v", p.Exited(), p.Err())
	}
	log, _ := os.ReadFile(p.Log)
	if !strings.HasPrefix(string(log), "# "+os.Args[0]+" -test.run=^$\n") || !strings.Contains(string(log), "bye") {
		t.Errorf("log:\n%s", log)
	}
	if _, err := p.Stop(syscall.SIGTERM, time.Second); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
	t.Logf("stopped in %v", took)
}

// A child that ignores SIGTERM is killed after the grace period, and Stop
// says so.
func TestStopStubborn(t *testing.T) {
	p := child(t, "stubborn")
	took, err := p.Stop(syscall.SIGTERM, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a child ignoring SIGTERM: %v", err)
	}
	if took < 200*time.Millisecond || !p.Exited() {
		t.Errorf("took %v, exited %v", took, p.Exited())
	}
	if ws, ok := p.Err().(interface{ Sys() any }); !ok || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exit: %v, want killed by SIGKILL", p.Err())
	}
}

// A child that fails on its own: Done closes, Err holds the status and
// Tail the last lines of its output.
func TestChildExits(t *testing.T) {
	p := child(t, "fail")
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not exit")
	}
	if p.Err() == nil || !strings.Contains(p.Err().Error(), "exit status 3") {
		t.Errorf("err %v", p.Err())
	}
	if got := supervise.Tail(p.Log, 2); got != "line 2\nline 3" {
		t.Errorf("tail %q", got)
	}
	if got := supervise.Tail(filepath.Join(t.TempDir(), "none"), 2); got != "" {
		t.Errorf("tail of a missing file %q", got)
	}
}

// Start refuses a command missing its name, program or log, naming each,
// and a program that does not exist.
func TestStartRefuses(t *testing.T) {
	_, err := supervise.Start(supervise.Command{})
	for _, want := range []string{"without a name", "no program", "no log"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty command: %v, want %q", err, want)
		}
	}
	_, err = supervise.Start(supervise.Command{Name: "ghost", Path: filepath.Join(t.TempDir(), "nothing"), Log: filepath.Join(t.TempDir(), "g.log")})
	if err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Errorf("missing program: %v", err)
	}
}

// /proc of a real child: RSS at least the 32 MiB it holds, peak at least
// RSS, and CPU time growing while it burns.
func TestReadUsage(t *testing.T) {
	p := child(t, "busy")
	u0, err := supervise.ReadUsage(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if u0.RSSKiB < 32<<10 || u0.PeakRSSKiB < u0.RSSKiB {
		t.Errorf("usage %+v: want RSS ≥ 32 MiB (it holds that much) and peak ≥ RSS", u0)
	}
	var u1 supervise.Usage
	deadline := time.Now().Add(30 * time.Second)
	for u1.CPU <= u0.CPU {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stuck at %v over 30 s of a busy loop", u0.CPU)
		}
		time.Sleep(50 * time.Millisecond)
		if u1, err = supervise.ReadUsage(p.Pid()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := supervise.ReadUsage(p.Pid()); err == nil {
		t.Error("ReadUsage of a reaped child succeeded")
	}
	busy, total, err := supervise.MachineCPU()
	if err != nil || total == 0 || busy > total {
		t.Errorf("machine CPU busy %d total %d: %v", busy, total, err)
	}
	if la := supervise.LoadAvg(); len(strings.Fields(la)) != 3 {
		t.Errorf("load average %q", la)
	}
}

// PondStats reads a real pond's /stats; a /stats that is not pond's (an
// error status, not JSON) is an error naming it, not zero counters.
func TestPondStats(t *testing.T) {
	p, err := pond.Open(context.Background(), pond.Config{Users: 10, Channels: 2, DisableRateLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	resp, err := http.Post(p.URL()+"/api/auth.test", "application/x-www-form-urlencoded", strings.NewReader("token=xoxp-pond-1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st, err := supervise.PondStats(t.Context(), p.URL())
	if err != nil {
		t.Fatal(err)
	}
	if ok, other := supervise.Calls(st, "auth.test"); ok+other != 1 || st.RequestsTotal < 1 {
		t.Errorf("stats %+v: auth.test ok %d other %d, want one call", st, ok, other)
	}
	for name, h := range map[string]http.HandlerFunc{
		"HTTP 500": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) },
		"invalid":  func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "{not json") },
	} {
		srv := httptest.NewServer(h)
		if _, err := supervise.PondStats(t.Context(), srv.URL); err == nil || !strings.Contains(err.Error(), "/stats") {
			t.Errorf("%s: %v", name, err)
		}
		srv.Close()
	}
}
