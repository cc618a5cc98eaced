package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/wire/wiretest"
)

// closedPort returns a loopback address nothing listens on: it was bound
// and released, so a connection is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Each exit code a CI job can see, from the commands a user runs. Pass (0)
// and a failed threshold (1) of `run create --wait` are covered end to
// end by TestRunCreateWaitGatesOnThresholds; the keeper going away during
// --wait (3) by TestWaitExitsUnavailableWhenTheKeeperGoes.
func TestExitCodes(t *testing.T) {
	down := "http://" + closedPort(t)
	status := func(code int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			w.Write([]byte("upstream keeper is restarting"))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error": {"code": "not_found", "message": "no run run-x"}}`))
	}))
	t.Cleanup(refusing.Close)
	// The keeper's data directory holds the keys `stop --nats` signs and
	// connects with; its NATS address is then closed.
	dataDir := t.TempDir()
	k, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dataDir,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	k.Close()

	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string // in stderr, when not empty
	}{
		// Asked for help or the version: nothing failed.
		{"help", []string{"run", "show", "--help"}, exitOK, ""},
		{"version flag", []string{"--version"}, exitOK, ""},
		{"version command", []string{"version"}, exitOK, ""},
		// Usage errors: the command line is wrong, nothing was tried.
		{"unknown command", []string{"raport"}, exitUsage, "Did you mean this?\n\treport"},
		{"unknown verb", []string{"run", "sow"}, exitUsage, "Did you mean this?\n\tshow"},
		{"unknown flag", []string{"run", "list", "--kepeer", down}, exitUsage, "unknown flag: --kepeer (did you mean --keeper?)"},
		{"missing argument", []string{"report", "--format", "csv"}, exitUsage, "want one run ID"},
		{"extra argument", []string{"status", "now"}, exitUsage, "want no arguments"},
		{"bad flag value", []string{"run", "scale", "RUN", "--koi", "many"}, exitUsage, "invalid argument"},
		{"group without verb", []string{"webhook"}, exitUsage, "Available Commands"},
		{"negative fire granularity", []string{"school", "--fire-granularity", "-5ms"}, exitUsage, "--fire-granularity -5ms: negative"},
		// A failure on the merits: validation problems, the keeper refusing.
		{"validator problems", []string{"behaviors", "validate", "../../behaviors/testdata/bad/syntax.json"}, exitFailed, ""},
		{"keeper refuses", []string{"run", "show", "--keeper", refusing.URL, "run-x"}, exitFailed, "not_found"},
		// koipond itself unavailable: nothing listens, or a proxy says so.
		{"keeper down", []string{"run", "list", "--keeper", down}, exitUnavailable, "keeper at " + down + " unreachable"},
		{"keeper down, old flag", []string{"status", "-keeper", down}, exitUnavailable, "connection refused"},
		{"keeper 502", []string{"run", "list", "--keeper", status(http.StatusBadGateway)}, exitUnavailable, "unavailable: keeper answered 502"},
		{"keeper 503", []string{"report", "RUN", "--keeper", status(http.StatusServiceUnavailable)}, exitUnavailable, "restarting"},
		{"keeper 504", []string{"stop", "--keeper", status(http.StatusGatewayTimeout)}, exitUnavailable, "504"},
		{"unresolvable keeper", []string{"run", "list", "--keeper", "http://keeper.invalid:8080"}, exitUnavailable, "unreachable"},
		{"NATS down", []string{"stop", "--nats", "nats://" + closedPort(t), "--data", dataDir}, exitUnavailable, "NATS at nats://"},
	} {
		out, errOut, code := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(errOut+out, c.stderr) {
			t.Errorf("%s: koipond %s: exit %d, want %d with %q\n%s%s", c.name, strings.Join(c.args, " "), code, c.code, c.stderr, out, errOut)
		}
	}
}

// `run create --wait` whose keeper goes away mid-run ends with 3 and
// says the keeper is unreachable: an outage, not a failed threshold (1).
func TestWaitExitsUnavailableWhenTheKeeperGoes(t *testing.T) {
	k := testKeeper(t)
	p := testPond(t, 20, 2, nil)
	testSchool(t, k, "a", 10)
	base := "http://" + k.HTTPAddr()
	wiretest.API{Base: base + "/api/v1"}.Call(t, "POST", "/behavior-sets", map[string]any{"name": "tick", "files": []map[string]string{{"name": "tick.json", "content": tickSet}}}, nil)

	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		err := run(context.Background(), []string{"run", "create", "--keeper", base, "--name", "outage", "--behaviors", "tick",
			"--api-base", p.URL() + "/api", "--token-template", "xoxp-pond-{{.Index}}", "--koi", "2", "--ramp", "0",
			"--duration", "5m", "--wait", "--wait-unavailable", "3s", "--threshold", "api:auth.test=error_rate < 1%"}, &out, &errb)
		done <- exitCode(err, &errb)
	}()
	// Once --wait is streaming, the keeper goes.
	wiretest.Until(t, 60*time.Second, "--wait to stream progress", func() bool { return strings.Contains(errb.String(), "connected") })
	k.Close()
	select {
	case code := <-done:
		if code != exitUnavailable || !strings.Contains(errb.String(), "keeper at "+base+" unreachable") {
			t.Errorf("exit %d, want %d (unavailable)\n%s%s", code, exitUnavailable, out.String(), errb.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("--wait did not give up within 3 minutes of the keeper closing\n%s", errb.String())
	}
}
