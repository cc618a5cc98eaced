package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"
)

// The keeper's startup output says how to start a school, and both forms
// it prints (the flag, and the file in KOIPOND_NATS_NKEY) work as printed
// against its authenticated NATS.
func TestKeeperPrintsWorkingSchoolCommands(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 3)
	go func() {
		done <- run(ctx, []string{"keeper", "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1", "--data", t.TempDir(), "--poll", "200ms", "--lease", "2s"}, &out, &errOut)
	}()
	flagLine := regexp.MustCompile(`keeper: start a school with: koipond (school --nats \S+ --nats-nkey \S+)\n`)
	envLine := regexp.MustCompile(`keeper:\s+or: KOIPOND_NATS_NKEY=(\S+) koipond (school --nats \S+)\n`)
	api := regexp.MustCompile(`API (http://\S+)/api/v1`)
	wiretest.WaitFor(t, 30*time.Second, "a school command in the keeper's output", func() error {
		if !envLine.MatchString(out.String()) {
			return fmt.Errorf("output so far:\n%s\n%s", out.String(), errOut.String())
		}
		return nil
	})
	flagArgs := strings.Fields(flagLine.FindStringSubmatch(out.String())[1])
	env := envLine.FindStringSubmatch(out.String())
	base := api.FindStringSubmatch(out.String())[1]
	go func() { done <- run(ctx, append(flagArgs, "--id", "by-flag"), &syncBuffer{}, &syncBuffer{}) }()
	t.Setenv("KOIPOND_NATS_NKEY", env[1])
	go func() {
		done <- run(ctx, append(strings.Fields(env[2]), "--id", "by-env"), &syncBuffer{}, &syncBuffer{})
	}()

	wiretest.WaitFor(t, 30*time.Second, "schools started as printed to be live at the keeper", func() error {
		var schools []struct {
			ID     string `json:"id"`
			Health string `json:"health"`
		}
		if resp, err := http.Get(base + "/api/v1/schools"); err == nil {
			json.NewDecoder(resp.Body).Decode(&schools)
			resp.Body.Close()
		}
		live := map[string]bool{}
		for _, s := range schools {
			live[s.ID] = s.Health == "live"
		}
		if live["by-flag"] && live["by-env"] {
			return nil
		}
		return fmt.Errorf("live: %v", live)
	})
	cancel()
	for range 3 {
		if err := <-done; err != nil {
			t.Error(fmt.Errorf("a command ended with %w", err))
		}
	}
}

// koipond stop --nats without the keeper's keys refuses to run (an
// unsigned switch would be ignored by every school) and says what it
// needs; with them it stops (cmd/koipond/client_test.go).
func TestStopOverNATSNeedsTheKeepersKey(t *testing.T) {
	_, errOut, code := runCmd(t, "stop", "--nats", "nats://127.0.0.1:1", "--data", t.TempDir())
	if code == 0 || !strings.Contains(errOut, "switch key") || !strings.Contains(errOut, "--keeper-key-seed") {
		t.Errorf("stop --nats without keys: code %d\n%s", code, errOut)
	}
}
