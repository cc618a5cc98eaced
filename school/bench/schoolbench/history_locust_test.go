package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Locust user of the locust phase whose rtm.connect is answered with
// something other than a Slack-style object naming a websocket stops,
// saying so, rather than failing with a traceback: a 200 that is not
// JSON, JSON that is not an object, and an ok without a url. Each lie is
// served by a real HTTP server to the embedded script run by real Locust.
func TestLocustUserStopsOnALyingRTMConnect(t *testing.T) {
	locust, err := exec.LookPath("locust")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("locust not found on CI (.ci/run installs python3-locust and python3-websocket)")
		}
		t.Skip("locust not found: apt-get install -y python3-locust python3-websocket to run this test")
	}
	script := filepath.Join(t.TempDir(), "history_locustfile.py")
	if err := os.WriteFile(script, []byte(locustScript), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"not JSON":   "not json {",
		"not object": "[1,2]",
		"no url":     `{"ok": true}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(body))
			}))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, locust, "-f", script, "--headless", "--only-summary",
				"-u", "2", "-r", "2", "-t", "3s", "--host", srv.URL)
			cmd.Env = append(os.Environ(), "EVERY_MS=1000", "FORM=channel=C000000")
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("locust did not end within 60 s:\n%s", out)
			}
			if got := strings.Count(string(out), "rtm.connect: HTTP 200"); got != 2 || strings.Contains(string(out), "Traceback") {
				t.Errorf("locust (%v): %d users said they stopped, want 2, and no traceback:\n%s", err, got, out)
			}
		})
	}
}
