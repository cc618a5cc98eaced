package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/wire/wiretest"
)

// docCommand is one koipond command line as the README or the demo
// prints it.
type docCommand struct {
	where string   // README.md:LINE or "demo hint"
	args  []string // after "koipond"
}

func (d docCommand) String() string { return d.where + ": koipond " + strings.Join(d.args, " ") }

// shellWords splits one shell command line as sh would: quotes, escapes,
// a comment from an unquoted #, ; and & between commands, and it drops a
// redirection (> FILE) at the end. It returns the commands' words.
func shellWords(line string) ([][]string, error) {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord := false
	end := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			w.WriteString(line[i+1 : i+1+j])
			inWord, i = true, i+1+j
		case ch == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				w.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
			inWord = true
		case ch == '\\' && i+1 < len(line):
			i++
			w.WriteByte(line[i])
			inWord = true
		case ch == ' ' || ch == '\t':
			end()
		case ch == '#' && !inWord, ch == '>' || ch == '<':
			i = len(line) // a comment, or a redirection: the command ends here
		case ch == ';' || ch == '&':
			end()
			if len(words) > 0 {
				cmds = append(cmds, words)
			}
			words = nil
		default:
			w.WriteByte(ch)
			inWord = true
		}
	}
	end()
	if len(words) > 0 {
		cmds = append(cmds, words)
	}
	return cmds, nil
}

// koipondArgs returns the arguments of a command line that runs koipond
// (after any VAR=value assignments), or false.
func koipondArgs(words []string) ([]string, bool) {
	for i, w := range words {
		switch {
		case w == "koipond" || w == "./bin/koipond":
			return words[i+1:], true
		case strings.Contains(w, "=") && !strings.HasPrefix(w, "-"):
			continue // an environment assignment
		default:
			return nil, false
		}
	}
	return nil, false
}

// readmeCommands extracts every koipond command of README.md: the lines
// of its sh blocks (continuations joined) and its `koipond …` code spans,
// which are synopses.
func readmeCommands(t *testing.T, md string) []docCommand {
	t.Helper()
	var cmds []docCommand
	lines := strings.Split(md, "\n")
	inSh := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "```") {
			inSh = !inSh && strings.TrimPrefix(l, "```") == "sh"
			continue
		}
		if !inSh {
			continue
		}
		where := fmt.Sprintf("README.md:%d", i+1)
		for strings.HasSuffix(strings.TrimSpace(l), "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(strings.TrimSpace(l), "\\") + " " + lines[i]
		}
		words, err := shellWords(l)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		for _, w := range words {
			if args, ok := koipondArgs(w); ok {
				cmds = append(cmds, docCommand{where: where, args: args})
			}
		}
	}
	// Code spans may wrap lines.
	for _, m := range regexp.MustCompile("`((?:\\./bin/)?koipond [^`]+)`").FindAllStringSubmatchIndex(md, -1) {
		where := fmt.Sprintf("README.md:%d", strings.Count(md[:m[0]], "\n")+1)
		words, err := shellWords(strings.Join(strings.Fields(md[m[2]:m[3]]), " "))
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		for _, w := range words {
			if args, ok := koipondArgs(w); ok {
				cmds = append(cmds, docCommand{where: where, args: args})
			}
		}
	}
	return cmds
}

// hintCommands extracts the koipond commands of text the demo prints.
func hintCommands(t *testing.T, text string) []docCommand {
	t.Helper()
	var cmds []docCommand
	for _, l := range strings.Split(text, "\n") {
		i := strings.Index(l, "koipond ")
		if i < 0 {
			continue
		}
		if j := strings.LastIndex(l[:i], ": "); j >= 0 {
			l = l[j+2:] // "start a school with: koipond …", "or: VAR=x koipond …"
		} else {
			l = l[i:]
		}
		words, err := shellWords(l)
		if err != nil {
			t.Errorf("demo hint: %v", err)
			continue
		}
		for _, w := range words {
			if args, ok := koipondArgs(w); ok {
				cmds = append(cmds, docCommand{where: "demo hint", args: args})
			}
		}
	}
	return cmds
}

// dryParse checks a command line against the command tree without running
// it: the command exists, every flag is one of its own and takes the
// value given, and its positional arguments are the right count.
func dryParse(args []string) error {
	var entered bool
	root, err := newTree(context.Background(), io.Discard, io.Discard, &entered)
	if err != nil {
		return err
	}
	args = normalizeArgs(root, args)
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if c == root || c.HasSubCommands() {
		return fmt.Errorf("%q names no command", strings.Join(args, " "))
	}
	if err := c.Flags().Parse(rest); err != nil {
		return fmt.Errorf("%s: %w", c.CommandPath(), err)
	}
	c.DisableFlagParsing = false
	return c.ValidateArgs(c.Flags().Args())
}

// synopsisArgs turns a synopsis into the command lines it stands for:
// [optional] parts are kept without their brackets (they must work too)
// and a word of choices (json|csv|text) gives one line per choice.
func synopsisArgs(args []string) [][]string {
	lines := [][]string{nil}
	for _, a := range args {
		a = strings.NewReplacer("[", "", "]", "").Replace(a)
		choices := []string{a}
		if strings.Contains(a, "|") && !strings.ContainsAny(a, " {") {
			choices = strings.Split(a, "|")
		}
		var next [][]string
		for _, l := range lines {
			for _, c := range choices {
				next = append(next, append(slices.Clip(l), c))
			}
		}
		lines = next
	}
	return lines
}

// parseOnly says why a command is parsed instead of run, or "": servers
// run until interrupted, --wait for a run's whole duration, a line with
// … leaves out what it needs, s3:// is a service outside the test.
func parseOnly(args []string) string {
	if len(args) > 0 && (args[0] == "demo" || args[0] == "keeper" || args[0] == "school" || args[0] == "pond") {
		return "long-running"
	}
	for _, a := range args {
		switch {
		case a == "--wait":
			return "long-running"
		case a == "…":
			return "synopsis"
		case strings.HasPrefix(a, "s3://"):
			return "outside service"
		}
	}
	return ""
}

// Every koipond command the README shows and every command hint the demo
// prints runs as printed against a real system on loopback (keeper,
// school, pond, a webhook receiver), placeholders replaced from one
// explicit table, optional [parts] kept and a|b|c choices each run. Only
// servers, --wait runs, lines with … and s3:// exports are parsed instead
// of run. A command that cannot run as printed fails here: fix the README
// or the CLI, not this test.
func TestREADMEAndDemoHintsRunAsPrinted(t *testing.T) {
	md, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	k, err := api.Open(context.Background(), keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: dataDir,
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	p := testPond(t, 50, 5, nil)
	testSchool(t, k, "walk", 4)
	base := "http://" + k.HTTPAddr()
	t.Setenv("KOIPOND_KEEPER", base) // as the demo says: export KOIPOND_KEEPER=…
	apiv1 := wiretest.API{Base: base + "/api/v1"}

	// The README's run: the example behaviors named slack, against pond.
	var files []map[string]string
	for _, f := range []string{"frequencies.json", "sequences.json"} {
		b, err := os.ReadFile("../../examples/slack/" + f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, map[string]string{"name": f, "content": string(b)})
	}
	apiv1.Call(t, "POST", "/behavior-sets", map[string]any{"name": "slack", "files": files}, nil)
	newRun := func(name string) string {
		var r struct{ ID string }
		apiv1.Call(t, "POST", "/runs", map[string]any{"name": name, "behavior_set": "slack", "koi": 2, "ramp": 0,
			"target": map[string]any{"api_base": p.URL() + "/api", "token": "xoxp-pond-{{.Index}}", "user_id": `U{{printf "%06d" .Index}}`}}, &r)
		return r.ID
	}
	runID, otherID := newRun("walk"), newRun("walk-baseline")

	var delivered atomic.Int64
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delivered.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hooks.Close)
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	triggerSpec, _ := json.Marshal(map[string]any{"actions": []any{map[string]any{
		"match": map[string]string{"service": "search"},
		"run": map[string]any{"name": "deploy-{{.labels.service}}-{{.labels.version}}", "behavior_set": "slack", "koi": 1, "duration_secs": 5,
			"target": map[string]any{"api_base": p.URL() + "/api"}},
	}}})
	// The placeholders, whole words, and what stands for them here.
	placeholders := map[string]string{
		"RUN":                                runID,
		"URL":                                k.NATSURL(), // koipond stop --nats URL --data DATA
		"DATA":                               dataDir,
		"OTHER":                              otherID,
		"rules.json":                         file("rules.json", `{"rules": [{"name": "api-health", "key": "api:*", "when": "success_rate < 95%", "for": "5m", "action": "pause"}]}`),
		"hook.secret":                        file("hook.secret", "hook-secret-of-the-walk\n"),
		"trigger.secret":                     file("trigger.secret", "trigger-secret-of-the-walk\n"),
		"search-deploy.json":                 file("search-deploy.json", string(triggerSpec)),
		"https://hooks.slack.com/services/…": hooks.URL + "/slack",
		"https://ops.example/koipond":        hooks.URL + "/audit",
	}
	substitute := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			if v, ok := placeholders[a]; ok {
				a = v
			} else if strings.HasPrefix(a, "examples/") {
				a = "../../" + a // the repository's files, from this package
			}
			out[i] = a
		}
		return out
	}

	readme := readmeCommands(t, string(md))
	hints := hintCommands(t, strings.Join(k.SchoolHowTo(), "\n")+"\n"+demoTries(runID))
	if len(readme) < 20 || len(hints) < 6 {
		t.Fatalf("found %d README commands and %d demo hints: the extraction is broken", len(readme), len(hints))
	}
	all := append(readme, hints...)
	// The emergency stop ends every run: it goes last.
	sort.SliceStable(all, func(i, j int) bool {
		return !(len(all[i].args) > 0 && all[i].args[0] == "stop") && len(all[j].args) > 0 && all[j].args[0] == "stop"
	})
	var ran, parsed int
	for _, c := range all {
		for _, args := range synopsisArgs(substitute(c.args)) {
			if why := parseOnly(args); why != "" {
				if err := dryParse(slices.DeleteFunc(args, func(a string) bool { return a == "…" })); err != nil {
					t.Errorf("%s: does not parse: %v", c, err)
				}
				t.Logf("parsed (%s)  %s", why, c)
				parsed++
				continue
			}
			out, errOut, code := runCmd(t, args...)
			if code != 0 {
				t.Errorf("%s: exit %d running koipond %s\n%s%s", c, code, strings.Join(args, " "), out, errOut)
			}
			t.Logf("ran  %s", c)
			ran++
		}
	}
	t.Logf("%d README commands, %d demo hints: %d run, %d parsed", len(readme), len(hints), ran, parsed)
	if delivered.Load() == 0 {
		t.Errorf("`koipond webhook test` delivered nothing to the receiver")
	}
}

// The extraction itself: quotes, continuations, comments, ; and & and
// environment assignments, as the README and the demo write them.
func TestDocCommandExtraction(t *testing.T) {
	md := "x `koipond report RUN --format\njson|csv|text` y\n```sh\n" +
		"./bin/koipond demo --schools 0 --data ./demo-data &         # then bring your own\n" +
		"koipond run create --name n \\\n  --threshold 'api:x=p95 < 300ms' --label \"team=a b\"\n" +
		"AWS_ENDPOINT_URL=http://127.0.0.1:9000 koipond warehouse generate --from s3://bucket/calls/\n" +
		"koipond completion bash > ~/.bash_completion.d/koipond   # or zsh\n" +
		"curl -s http://127.0.0.1:8080/\n```\n"
	got := readmeCommands(t, md)
	want := []string{
		"README.md:4: koipond demo --schools 0 --data ./demo-data",
		"README.md:5: koipond run create --name n --threshold api:x=p95 < 300ms --label team=a b",
		"README.md:7: koipond warehouse generate --from s3://bucket/calls/",
		"README.md:8: koipond completion bash",
		"README.md:1: koipond report RUN --format json|csv|text",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d commands %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("command %d: %q, want %q", i, got[i].String(), want[i])
		}
	}
	if lines := synopsisArgs(got[4].args); len(lines) != 3 || lines[2][3] != "text" {
		t.Errorf("a word of choices gives a line per choice: %q", lines)
	}
	if a := got[1].args; a[len(a)-3] != "api:x=p95 < 300ms" || a[len(a)-1] != "team=a b" {
		t.Errorf("quoted words split: %q", a)
	}
	hints := hintCommands(t, "start a school with: koipond school --nats nats://x\n  or: KOIPOND_NATS_NKEY='/a b/school.nk' koipond school --nats nats://x\n  koipond pause ; koipond resume   # every koi")
	if len(hints) != 4 || hints[1].String() != "demo hint: koipond school --nats nats://x" || hints[3].args[0] != "resume" {
		t.Errorf("hints: %v", hints)
	}
}
