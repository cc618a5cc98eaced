package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	code = exitCode(err, &errb) // writes the error to errb: read it after
	return out.String(), errb.String(), code
}

func TestHelpAndUsage(t *testing.T) {
	out, _, code := runCmd(t, "help")
	if code != 0 || !strings.Contains(out, "demo") || !strings.Contains(out, "behaviors") {
		t.Errorf("help: code %d\n%s", code, out)
	}
	_, errOut, code := runCmd(t, "demi")
	if code != 2 || !strings.Contains(errOut, `unknown command "demi" (did you mean demo?)`) {
		t.Errorf("typo: code %d\n%s", code, errOut)
	}
	for _, c := range commands {
		out, errOut, code := runCmd(t, c.name, "--help")
		if code != 0 || !strings.Contains(out+errOut, "Usage: koipond "+c.name) {
			t.Errorf("%s --help: code %d\n%s%s", c.name, code, out, errOut)
		}
	}
}

func TestValidateCommands(t *testing.T) {
	out, _, code := runCmd(t, "behaviors", "validate", "../../examples/slack/frequencies.json", "../../examples/slack/sequences.json")
	if code != 0 || !strings.Contains(out, "ok: 8 behaviors (8 scheduled)") {
		t.Errorf("valid set: code %d\n%s", code, out)
	}
	out, errOut, code := runCmd(t, "behaviors", "validate", "../../behaviors/testdata/bad/wrong_type.json", "../../behaviors/testdata/bad/request_type.json")
	if code != 1 || strings.Count(out, "\n") != 3 || !strings.Contains(errOut, "3 errors") {
		t.Errorf("bad files: code %d, want 1 and all three errors\n%s%s", code, out, errOut)
	}
	out, _, code = runCmd(t, "behaviors", "validate", "--json", "../../behaviors/testdata/bad/syntax.json")
	var res struct {
		Valid       bool
		Diagnostics []struct {
			File     string
			Line     int
			Col      int
			Severity string
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Valid || len(res.Diagnostics) != 1 ||
		res.Diagnostics[0].Line != 2 || res.Diagnostics[0].Severity != "error" {
		t.Errorf("--json: code %d err %v\n%s", code, err, out)
	}
	out, _, code = runCmd(t, "formations", "validate", "../../examples/seed/announcement-reaction.formation.json")
	if code != 0 || !strings.Contains(out, "10% of connected koi start 3 steps within 6m0s") {
		t.Errorf("formation: code %d\n%s", code, out)
	}
	if _, _, code := runCmd(t, "behaviors", "validate"); code != 2 {
		t.Errorf("no files: code %d, want 2", code)
	}
}

// The demo runs end to end in-process on random ports: keeper, NATS,
// pond and two schools; koi boot, all connect, behaviors and the seed
// formation run, and everything stops when --duration ends.
func TestDemoEndToEnd(t *testing.T) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	err := run(ctx, []string{"demo", "--http", "127.0.0.1:0", "--pond", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1",
		"--koi", "60", "--schools", "2", "--ramp", "200", "--users", "200", "--channels", "20", "--time-scale", "60",
		"--duration", "7s", "--status", "1s", "--formation-after", "1500ms"}, &out, &errb)
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Errorf("demo took %v for --duration 7s", d)
	}
	o := out.String()
	m := regexp.MustCompile(`koi (\d+) connected`).FindAllStringSubmatch(o, -1)
	best := 0
	for _, x := range m {
		n, _ := strconv.Atoi(x[1])
		best = max(best, n)
	}
	if best != 60 {
		t.Errorf("at most %d of 60 koi connected\n%s", best, o)
	}
	for _, want := range []string{"koipond demo is up", "2 school(s) live", `formation "Viewing and reacting to a message in Announcement Channel" launched`,
		"api:conversations.history", "event:message", "all koi stopped"} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q\n%s", want, o)
		}
	}
}
