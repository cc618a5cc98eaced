package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The sample export the demo ships, as a checkout has it.
const sampleExport = "../../examples/warehouse"

// generate's output is standard JSON: encoding/json and jq read it, the
// provenance is in fields, and the CLI summary names what was dropped and
// what share of the calls went with it.
func TestWarehouseGenerateJSON(t *testing.T) {
	out := filepath.Join(t.TempDir(), "frequencies.json")
	_, errOut, code := runCmd(t, "warehouse", "generate", "--from", sampleExport, "--sequences", "../../examples/slack/sequences.json",
		"--sequenced-only", "--out", out, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Generated struct {
			By, Tool, Source string
			GeneratedAt      string `json:"generated_at"`
			Rows             struct{ Read, Used int64 }
			Window           struct{ First, Last string }
			Dropped          struct {
				Count int
				Names []string
				Share float64
			}
		}
		Behaviors map[string]struct{ Frequency float64 }
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatalf("encoding/json: %v\n%s", err, b)
	}
	g := file.Generated
	if g.Source != sampleExport || g.Rows.Read != 2901 || g.Window.First != "2026-11-02T14:00:00Z" || !strings.HasPrefix(g.Tool, "koipond ") ||
		g.Dropped.Count != 4 || g.Dropped.Share <= 0 || len(file.Behaviors) != 8 {
		t.Errorf("file %+v", file)
	}
	// The summary on standard error: count, share of calls and names.
	if !regexp.MustCompile(`dropped 4 methods \(\d+\.\d% of calls\): search\.messages, files\.upload, emoji\.list, team\.info \(no sequence\)`).MatchString(errOut) {
		t.Errorf("summary does not name the dropped methods:\n%s", errOut)
	}
	jq, err := exec.LookPath("jq")
	if err != nil {
		t.Log("jq is not installed: checked with encoding/json only")
		return
	}
	got, err := exec.Command(jq, "-r", `.generated.dropped.count, .behaviors["conversations.history"].frequency > 0`, out).Output()
	if err != nil {
		t.Fatalf("jq: %v", err)
	}
	if string(got) != "4\ntrue\n" {
		t.Errorf("jq read %q", got)
	}
}

// --sequences with methods that have none refuses to write a file that
// would not load beside it, names them and suggests --sequenced-only.
func TestWarehouseGenerateUnsequenced(t *testing.T) {
	out := filepath.Join(t.TempDir(), "frequencies.json")
	_, errOut, code := runCmd(t, "warehouse", "generate", "--from", sampleExport, "--sequences", "../../examples/slack/sequences.json",
		"--out", out, "--quiet")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, w := range []string{"nothing written", "4 of 12 methods have no sequence", "search.messages, files.upload, emoji.list, team.info",
		"--sequenced-only", "the 8 methods that have one"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("the error lacks %q:\n%s", w, errOut)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written (%v)", out, err)
	}
}

// Hostile exports stop with an error naming the part, row and column, and
// --out is never written.
func TestWarehouseGenerateHostile(t *testing.T) {
	dir := t.TempDir()
	deep := `{"user":"U1","timestamp":1793491200,"method":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "}\n"
	for _, c := range []struct {
		name, file string
		data       []byte
		want       []string
	}{
		// A 2 MiB line: over the 1 MiB line limit.
		{"huge line", "long.csv", append([]byte("user,method,timestamp\nU1,m,1793491200\n"), bytes.Repeat([]byte("x"), 2<<20)...),
			[]string{"long.csv", "row 2", "line 3", "limit"}},
		// 100,000 nested arrays where the method belongs.
		{"deep JSON", "deep.jsonl", []byte(deep), []string{"deep.jsonl", "row 1", `column "method"`}},
		// Binary noise after a good header.
		{"binary", "noise.csv", append([]byte("user,method,timestamp\n"), bytes.Repeat([]byte{0, 0xff, ',', 0x88, '\n'}, 100)...),
			[]string{"noise.csv", "row 1"}},
	} {
		p := filepath.Join(dir, c.file)
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, c.name+".json")
		_, errOut, code := runCmd(t, "warehouse", "generate", "--from", p, "--out", out, "--quiet")
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s", c.name, code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: the error lacks %q: %.400s", c.name, w, errOut)
			}
		}
		if len(errOut) > 2000 {
			t.Errorf("%s: the error is %d bytes", c.name, len(errOut))
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: %s was written", c.name, out)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// The demo serves its shipped sample export without flags: the keeper's
// warehouse folder is DATA/warehouse, and generating from it works.
func TestDemoServesSampleExport(t *testing.T) {
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := t.TempDir()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--http", "127.0.0.1:0", "--pond", "127.0.0.1:0", "--nats-listen", "127.0.0.1:-1",
			"--koi", "2", "--schools", "0", "--users", "10", "--channels", "2", "--duration", "2m", "--status", "1m",
			"--formation-after", "0", "--data", data}, &out, &errb)
	}()
	apiRE := regexp.MustCompile(`keeper API\s+(http://\S+)/api/v1/status`)
	var base string
	for deadline := time.Now().Add(60 * time.Second); base == ""; {
		if m := apiRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s\n%s", err, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not come up in 60s:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := filepath.Join(data, "warehouse"); !strings.Contains(out.String(), "exports      "+want) {
		t.Errorf("the banner does not name the exports folder %s:\n%s", want, out.String())
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/behavior-sets/generate", strings.NewReader(`{"from": "."}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Result struct {
			Source  string
			Objects int
			Methods []struct{ Name string }
			Rows    struct{ Read int64 }
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("generate from the demo's folder: HTTP %d %v", resp.StatusCode, err)
	}
	if r := rep.Result; r.Source != "warehouse" || r.Objects != 2 || r.Rows.Read != 2901 || len(r.Methods) != 12 {
		t.Errorf("result %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
}
