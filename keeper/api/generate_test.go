package api

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/wire/wiretest"
)

// The UI's "generate from warehouse export": a local export under the
// warehouse folder becomes a frequencies file that merges with a stored
// set's sequences; paths outside the folder are refused; progress streams.
func TestGenerateFromWarehouseExport(t *testing.T) {
	wh := t.TempDir()
	var b strings.Builder
	b.WriteString("user,method,timestamp\n")
	// 100 users × 10 minutes: conversations.history in every other minute,
	// chat.postMessage in one minute of ten.
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for u := range 100 {
		for m := range 10 {
			at := base.Add(time.Duration(m)*time.Minute + time.Duration(u)*time.Second/10).Format(time.RFC3339)
			fmt.Fprintf(&b, "U%d,users.info,%s\n", u, at)
			if m%2 == 0 {
				fmt.Fprintf(&b, "U%d,conversations.history,%s\n", u, at)
			}
			if m == 3 {
				fmt.Fprintf(&b, "U%d,chat.postMessage,%s\n", u, at)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(wh, "calls.csv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) { c.WarehouseDir = wh })
	seqs, err := os.ReadFile("../../examples/slack/sequences.json")
	if err != nil {
		t.Fatal(err)
	}
	freqs, _ := os.ReadFile("../../examples/slack/frequencies.json")
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/behavior-sets", map[string]any{"name": "slack", "files": []map[string]string{
		{"name": "frequencies.json", "content": string(freqs)}, {"name": "sequences.json", "content": string(seqs)}}}, nil); code != http.StatusCreated {
		t.Fatalf("upload: %d", code)
	}

	var rep struct {
		File   struct{ Name, Content string }
		Result struct {
			Methods []struct {
				Name      string
				Frequency float64
			}
			Coverage *struct{ Missing []string }
		}
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/behavior-sets/generate", map[string]any{"from": "calls.csv", "sequences": "slack"}, &rep); code != http.StatusOK {
		t.Fatalf("generate: %d %+v", code, rep)
	}
	want := map[string]float64{"users.info": 1, "conversations.history": 0.5, "chat.postMessage": 0.1}
	for _, m := range rep.Result.Methods {
		if f, ok := want[m.Name]; !ok || f != m.Frequency {
			t.Errorf("%s: frequency %v, want %v", m.Name, m.Frequency, want[m.Name])
		}
	}
	if rep.Result.Coverage == nil || len(rep.Result.Coverage.Missing) != 0 {
		t.Errorf("coverage = %+v", rep.Result.Coverage)
	}
	set, diags := behaviors.Parse(behaviors.File{Name: "frequencies.json", Data: []byte(rep.File.Content)},
		behaviors.File{Name: "sequences.json", Data: seqs})
	if set == nil {
		t.Fatalf("generated file does not merge with the sequences: %v", diags)
	}

	var e struct {
		Error struct{ Code, Field, Message string }
	}
	for _, from := range []string{"../../etc/passwd", "/etc/passwd"} {
		if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/behavior-sets/generate", map[string]any{"from": from}, &e); code != http.StatusBadRequest ||
			e.Error.Field != "from" || !strings.Contains(e.Error.Message, "outside the warehouse folder") {
			t.Errorf("%s: %d %+v", from, code, e)
		}
	}

	// Streaming: progress, then the result.
	req, _ := http.NewRequest("POST", "http://"+k.HTTPAddr()+"/api/v1/behavior-sets/generate", strings.NewReader(`{"from": "calls.csv"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, ev)
		}
	}
	if len(events) < 2 || events[len(events)-1] != "result" || events[0] != "progress" {
		t.Errorf("stream events = %v, want progress… then result", events)
	}
}

// Without a warehouse folder, local paths are refused outright.
func TestGenerateLocalOff(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	var e struct {
		Error struct{ Field, Message string }
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/behavior-sets/generate", map[string]any{"from": "x.csv"}, &e); code != http.StatusBadRequest ||
		!strings.Contains(e.Error.Message, "local exports are off") {
		t.Errorf("%d %+v", code, e)
	}
}

// The event stream sends the status at once and again within a second.
func TestEventsStream(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	resp, err := http.Get("http://" + k.HTTPAddr() + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	start := time.Now()
	n := 0
	for n < 2 && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if !strings.Contains(data, `"switch"`) {
				t.Fatalf("event is not a status: %s", data)
			}
			n++
		}
	}
	if n < 2 || time.Since(start) > 3*time.Second {
		t.Errorf("%d events in %v", n, time.Since(start))
	}
}

// A symlink inside the warehouse folder that leads out of it is not
// followed: the request is refused, and nothing of the file it points to
// (here a secret on its first line) appears in the answer. Folders with
// such links are read without them.
func TestGenerateWarehouseSymlinkOut(t *testing.T) {
	wh, outside := t.TempDir(), t.TempDir()
	const secret = "s3cr3t-token-0123456789,more,columns"
	if err := os.WriteFile(filepath.Join(outside, "secret.csv"), []byte(secret+"\nx,y,z\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(outside, "secret.csv"), filepath.Join(wh, "link.csv")))
	must(os.Symlink(outside, filepath.Join(wh, "linkdir")))
	must(os.Mkdir(filepath.Join(wh, "export"), 0o755))
	must(os.WriteFile(filepath.Join(wh, "export", "part-0.csv"), []byte("user,method,timestamp\nU1,users.info,2026-11-02T09:00:00Z\n"), 0o644))
	must(os.Symlink(filepath.Join(outside, "secret.csv"), filepath.Join(wh, "export", "part-1.csv")))
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) { c.WarehouseDir = wh })

	for _, from := range []string{"link.csv", "linkdir/secret.csv", "linkdir", "./link.csv", "export/../link.csv"} {
		var e struct {
			Error struct{ Code, Field, Message string }
		}
		code := wiretest.API{Base: "http://" + k.HTTPAddr()}.Do(t, "POST", "/api/v1/behavior-sets/generate", map[string]any{"from": from}, &e)
		if code != http.StatusBadRequest || e.Error.Field != "from" || !strings.Contains(e.Error.Message, "may not leave the folder") {
			t.Errorf("%s: %d %+v, want 400 saying the path may not leave the folder", from, code, e)
		}
		if strings.Contains(e.Error.Message, "s3cr3t") {
			t.Errorf("%s: the answer quotes the file outside the folder: %s", from, e.Error.Message)
		}
	}

	// The folder's own part is read; the link beside it is not a part.
	var rep struct {
		Result struct {
			Objects int
			Rows    struct{ Used int64 }
		}
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "POST", "/api/v1/behavior-sets/generate", map[string]any{"from": "export"}, &rep); code != http.StatusOK ||
		rep.Result.Objects != 1 || rep.Result.Rows.Used != 1 {
		t.Errorf("export/: %d %+v, want 1 part and 1 row", code, rep)
	}
}
