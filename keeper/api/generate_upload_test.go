package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/wire/wiretest"
)

// uploadCalls is a small raw call log: 20 users × 5 minutes, users.info
// in every minute, chat.postMessage in one.
func uploadCalls() []byte {
	var b bytes.Buffer
	b.WriteString("user,method,timestamp\n")
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for u := range 20 {
		for m := range 5 {
			at := base.Add(time.Duration(m) * time.Minute).Format(time.RFC3339)
			fmt.Fprintf(&b, "U%d,users.info,%s\n", u, at)
			if m == 2 {
				fmt.Fprintf(&b, "U%d,chat.postMessage,%s\n", u, at)
			}
		}
	}
	return b.Bytes()
}

// postUpload sends body as an export upload; chunked when size < 0.
func postUpload(t *testing.T, base, query string, body io.Reader, size int64) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/v1/behavior-sets/generate/upload?"+query, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// spoolsLeft lists the upload spools left in the temporary folder.
func spoolsLeft(t *testing.T, tmp string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(tmp, "koipond-upload-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// An uploaded export is generated with the same parsers as a local one,
// named by its own name (never the spool path), and removed afterwards.
func TestGenerateUpload(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	k := openKeeper(t, t.TempDir())
	base := "http://" + k.HTTPAddr()
	data := uploadCalls()
	code, body := postUpload(t, base, "name=../../etc/calls%202026.csv", bytes.NewReader(data), int64(len(data)))
	if code != http.StatusOK {
		t.Fatalf("upload: HTTP %d %s", code, body)
	}
	var rep struct {
		File   struct{ Name, Content string }
		Result struct {
			Source  string
			Methods []struct {
				Name      string
				Frequency float64
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Result.Source != "calls_2026.csv" || len(rep.Result.Methods) != 2 || rep.Result.Methods[0].Frequency != 1 || rep.Result.Methods[1].Frequency != 0.2 {
		t.Errorf("result %+v", rep.Result)
	}
	if strings.Contains(body, tmp) || strings.Contains(body, "koipond-upload-") {
		t.Errorf("the preview names the spool: %s", body)
	}
	var file struct {
		Generated struct{ Source, Tool string }
	}
	if err := json.Unmarshal([]byte(rep.File.Content), &file); err != nil || file.Generated.Source != "calls_2026.csv" || file.Generated.Tool == "" {
		t.Errorf("file provenance %+v (%v):\n%s", file.Generated, err, rep.File.Content)
	}
	if left := spoolsLeft(t, tmp); len(left) > 0 {
		t.Errorf("spools left behind: %v", left)
	}
	// Query options are read strictly.
	for _, q := range []string{"from=/etc/passwd", "top=many", "hourly=maybe", "name=a.csv&name=b.csv"} {
		if code, body := postUpload(t, base, q, bytes.NewReader(data), int64(len(data))); code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %s, want 400", q, code, body)
		}
	}
	// Another content type is refused before anything is read.
	req, _ := http.NewRequest("POST", base+"/api/v1/behavior-sets/generate/upload?name=a.csv", bytes.NewReader(data))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain upload: HTTP %d, want 415", resp.StatusCode)
	}
}

// An upload over MaxExportUpload is refused with 413 and a message saying
// the limit and where bigger exports go, whether it declares its length or
// streams it chunked; nothing is left on disk.
func TestGenerateUploadTooLarge(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	k := openKeeper(t, t.TempDir())
	base := "http://" + k.HTTPAddr()
	big := func() io.Reader {
		return io.MultiReader(strings.NewReader("user,method,timestamp\n"),
			io.LimitReader(repeatRows{}, MaxExportUpload+1))
	}
	for _, c := range []struct {
		name string
		size int64
	}{
		{"declared", MaxExportUpload + 1 + 22}, // refused before a byte is read
		{"chunked", -1},                        // stopped at the limit while read
	} {
		code, body := postUpload(t, base, "name=big.csv", big(), c.size)
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: HTTP %d, want 413: %.300s", c.name, code, body)
			continue
		}
		t.Logf("%s: %s", c.name, body)
		if !strings.Contains(body, "at most 32 MiB") || !strings.Contains(body, "--warehouse-dir") {
			t.Errorf("%s: the refusal does not say the limit: %s", c.name, body)
		}
	}
	if left := spoolsLeft(t, tmp); len(left) > 0 {
		t.Errorf("spools left behind: %v", left)
	}
}

// repeatRows yields valid CSV rows forever.
type repeatRows struct{}

func (repeatRows) Read(p []byte) (int, error) {
	const row = "U1,users.info,2026-11-02T09:00:00Z\n"
	n := 0
	for n < len(p) {
		n += copy(p[n:], row)
	}
	return n, nil
}

// Hostile uploads get 400 with an error naming the part and where in it,
// and leave nothing behind.
func TestGenerateUploadHostile(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	k := openKeeper(t, t.TempDir())
	base := "http://" + k.HTTPAddr()
	// Nested 100,000 deep where the method belongs. (In a column that is
	// not read, nesting is skipped in bounded memory and the row is fine.)
	deep := `{"user":"U1","timestamp":1793491200,"method":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "}\n"
	for _, c := range []struct {
		name, file string
		data       []byte
		want       []string
	}{
		// One line of 2 MiB: over the 1 MiB line limit.
		{"huge line", "calls.csv", append([]byte("user,method,timestamp\n"), bytes.Repeat([]byte("a"), 2<<20)...),
			[]string{"calls.csv", "row 1", "line 2"}},
		// A JSON line nested 100,000 deep.
		{"deep JSON", "calls.jsonl", []byte(deep), []string{"calls.jsonl", "row 1"}},
		// Binary noise named .csv.
		{"binary", "calls.csv", bytes.Repeat([]byte{0, 0xff, 0x13, 0x88, '\n'}, 1000), []string{"calls.csv"}},
	} {
		code, body := postUpload(t, base, "name="+c.file, bytes.NewReader(c.data), int64(len(c.data)))
		if code != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400: %.300s", c.name, code, body)
			continue
		}
		t.Logf("%s: %s", c.name, body)
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: the error lacks %q: %s", c.name, w, body)
			}
		}
		if len(body) > 2000 || strings.Contains(body, tmp) {
			t.Errorf("%s: the error is %d bytes or names the spool: %.300s", c.name, len(body), body)
		}
	}
	if left := spoolsLeft(t, tmp); len(left) > 0 {
		t.Errorf("spools left behind: %v", left)
	}
	var sets []any
	if code := (wiretest.API{Base: base}).Do(t, "GET", "/api/v1/behavior-sets", nil, &sets); code != http.StatusOK || len(sets) != 0 {
		t.Errorf("behavior sets after refused uploads: %d %v", code, sets)
	}
}

// Saving with overwrite: false refuses a taken name with 409 and keeps
// the stored versions; overwrite: true stores the next version.
func TestBehaviorSetOverwriteAsked(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	api := wiretest.API{Base: "http://" + k.HTTPAddr()}
	seqs, err := os.ReadFile("../../examples/slack/sequences.json")
	if err != nil {
		t.Fatal(err)
	}
	freqs, _ := os.ReadFile("../../examples/slack/frequencies.json")
	saves := 0
	set := func(overwrite *bool) (int, map[string]any) {
		saves++ // new content each time: the same content is the same set
		body := map[string]any{"name": "slack", "files": []map[string]string{
			{"name": "frequencies.json", "content": string(freqs) + strings.Repeat(" ", saves)}, {"name": "sequences.json", "content": string(seqs)}}}
		if overwrite != nil {
			body["overwrite"] = *overwrite
		}
		var out map[string]any
		return api.Do(t, "POST", "/api/v1/behavior-sets", body, &out), out
	}
	no, yes := false, true
	if code, out := set(&no); code != http.StatusCreated {
		t.Fatalf("a new name with overwrite false: %d %v", code, out)
	}
	code, out := set(&no)
	if code != http.StatusConflict || !strings.Contains(fmt.Sprint(out), "v1") || !strings.Contains(fmt.Sprint(out), "overwrite: true") {
		t.Errorf("a taken name with overwrite false: %d %v, want 409 naming v1", code, out)
	}
	if b := k.State().LatestBehaviorSet(nil, "slack"); b == nil || b.Version != 1 {
		t.Errorf("the refused save changed the set: %+v", b)
	}
	if code, out := set(&yes); code != http.StatusCreated || out["version"] != float64(2) {
		t.Errorf("overwrite true: %d %v, want v2", code, out)
	}
	if code, out := set(nil); code != http.StatusCreated || out["version"] != float64(3) {
		t.Errorf("no overwrite field: %d %v, want v3 as before", code, out)
	}
}

// The exports listing shows the warehouse folder's parts, not hidden
// files, READMEs or symlinks; without a folder it says local is off.
func TestExportsListing(t *testing.T) {
	wh := t.TempDir()
	for _, n := range []string{"a.csv", "b.jsonl", ".hidden", "_SUCCESS", "README.md"} {
		if err := os.WriteFile(filepath.Join(wh, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(wh, "leak.csv")); err != nil {
		t.Fatal(err)
	}
	k := openKeeper(t, t.TempDir(), func(c *keeper.Config) { c.WarehouseDir = wh })
	var rep exportsReply
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/api/v1/behavior-sets/generate/exports", nil, &rep); code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	var got []string
	for _, e := range rep.Exports {
		got = append(got, e.Path)
	}
	if !rep.Local || fmt.Sprint(got) != "[. a.csv b.jsonl]" || rep.UploadLimit != MaxExportUpload {
		t.Errorf("listing %+v", rep)
	}
	off := openKeeper(t, t.TempDir())
	rep = exportsReply{}
	if code := (wiretest.API{Base: "http://" + off.HTTPAddr()}).Do(t, "GET", "/api/v1/behavior-sets/generate/exports", nil, &rep); code != http.StatusOK || rep.Local || len(rep.Exports) != 0 {
		t.Errorf("without a folder: %d %+v", code, rep)
	}
}
