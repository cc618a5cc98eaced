package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
	if code != 2 || !strings.Contains(errOut, `unknown command "demi" for "koipond"`) || !strings.Contains(errOut, "Did you mean this?\n\tdemo") {
		t.Errorf("typo: code %d\n%s", code, errOut)
	}
	for _, c := range commands {
		args := append(strings.Fields(c.path), "--help")
		out, errOut, code := runCmd(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:\n  koipond "+c.path) {
			t.Errorf("%s --help: code %d\n%s%s", c.path, code, out, errOut)
		}
		if c.run != nil && !strings.Contains(out, "Examples:\n  koipond ") {
			t.Errorf("%s --help has no example\n%s", c.path, out)
		}
	}
}

// Shell completion comes from the command tree: scripts for each shell,
// verbs and flags (with their usage, without help's backquotes) as typed.
func TestShellCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if out, errOut, code := runCmd(t, "completion", sh); code != 0 || !strings.Contains(out, "koipond") {
			t.Errorf("completion %s: code %d\n%s", sh, code, errOut)
		}
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"run", "sh"}, []string{"show\t", "shed\t"}},
		{[]string{"webhook", "r"}, []string{"rm\tremove a webhook"}},
		{[]string{"report", "RUN", "--fo"}, []string{"--format\toutput format: json, csv or text"}},
		{[]string{"launch", "FILE", "--ru"}, []string{"--run\t"}},
	} {
		out, _, code := runCmd(t, append([]string{"__complete"}, c.args...)...)
		for _, w := range c.want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("completing %q: code %d, want %q in\n%s", c.args, code, w, out)
			}
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
// formation run, and everything stops when the demo's context ends.
// How long booting 60 koi takes depends on the machine, so the test
// watches the demo's output and ends it once it has seen everything (a
// busy machine takes longer, not a different path); --duration is checked
// on its own by a short demo.
func TestDemoEndToEnd(t *testing.T) {
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--http", "127.0.0.1:0", "--pond", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1",
			"--koi", "60", "--schools", "2", "--ramp", "200", "--users", "200", "--channels", "20", "--time-scale", "60",
			"--duration", "2m", "--status", "1s", "--formation-after", "1500ms"}, &out, &errb)
	}()
	wants := []string{"koipond demo is up", "2 schools live", `formation "Viewing and reacting to a message in Announcement Channel" launched`,
		"api:conversations.history", "event:message"}
	connected := regexp.MustCompile(`koi (\d+) connected`)
	best := func(o string) int {
		n := 0
		for _, x := range connected.FindAllStringSubmatch(o, -1) {
			c, _ := strconv.Atoi(x[1])
			n = max(n, c)
		}
		return n
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		o := out.String()
		seen := best(o) == 60
		for _, want := range wants {
			seen = seen && strings.Contains(o, want)
		}
		if seen {
			t.Logf("the demo showed everything after %v", time.Since(deadline.Add(-90*time.Second)).Round(time.Millisecond))
			break
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s\n%s", err, o, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			o = out.String()
			if n := best(o); n != 60 {
				t.Errorf("at most %d of 60 koi connected", n)
			}
			for _, want := range wants {
				if !strings.Contains(o, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			t.Fatalf("demo did not show everything within 90s\n%s", o)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if o := out.String(); !strings.Contains(o, "all koi stopped") {
		t.Errorf("output lacks %q\n%s", "all koi stopped", o)
	}

	// --duration ends the demo by itself.
	var short syncBuffer
	start := time.Now()
	err := run(context.Background(), []string{"demo", "--http", "127.0.0.1:0", "--pond", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1",
		"--koi", "2", "--schools", "1", "--users", "10", "--channels", "2", "--duration", "1s", "--status", "1s"}, &short, &errb)
	if err != nil {
		t.Fatalf("demo --duration 1s: %v\n%s\n%s", err, short.String(), errb.String())
	}
	took := time.Since(start)
	t.Logf("demo --duration 1s returned after %v", took.Round(time.Millisecond))
	if took < time.Second || took > 30*time.Second || !strings.Contains(short.String(), "all koi stopped") {
		t.Errorf("demo --duration 1s returned after %v\n%s", took, short.String())
	}
}

// syncBuffer is a bytes.Buffer a test may read while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every run builds the command tree and has each body define its flags
// once (for help, completion and -flag normalization): the cost of that
// on a command that does nothing else.
func BenchmarkRunVersion(b *testing.B) {
	for b.Loop() {
		if err := run(context.Background(), []string{"version"}, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
