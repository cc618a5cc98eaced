package ui_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/koipond/koipond/examples"
)

// The demo's warehouse page: the keeper's folder holds the sample export
// the demo ships (examples/warehouse) and is listed; an uploaded sample
// part is generated against the slack set's sequences; the table and the
// dropped-methods summary show; the default save name is a new one;
// saving over "slack" is asked and refused without a yes; saving under a
// new name stores a set whose provenance names the upload, not a path.
func TestUIWarehouseUpload(t *testing.T) {
	s := startSystem(t)
	ctx := newBrowser(t)
	// The demo writes the sample export to its warehouse folder.
	err := fs.WalkDir(examples.Warehouse, "warehouse", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := examples.Warehouse.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(s.warehouse, filepath.Base(p)), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	freqs, _ := fs.ReadFile(examples.FS, "slack/frequencies.json")
	seqs, _ := fs.ReadFile(examples.FS, "slack/sequences.json")
	var slack struct{ Hash string }
	s.call(t, "POST", "/behavior-sets", map[string]any{"name": "slack", "files": []map[string]string{
		{"name": "frequencies.json", "content": string(freqs)}, {"name": "sequences.json", "content": string(seqs)}}}, &slack)
	// The file the user picks, from their own disk.
	jsonl, err := examples.Warehouse.ReadFile("warehouse/calls-2026-11-02T15.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	upload := filepath.Join(t.TempDir(), "calls-2026-11-02T15.jsonl")
	if err := os.WriteFile(upload, jsonl, 0o644); err != nil {
		t.Fatal(err)
	}

	run(t, ctx, "open the generate page", chromedp.Navigate(s.ui+"/#/behaviors/generate"), chromedp.WaitVisible(chromedp.CSS("#generate-form")))
	waitJS(t, ctx, 10*time.Second, "the sample export listed", `!!document.querySelector('#generate-exports [data-export="calls-2026-11-02T14.csv"]')`)
	from := get(t, ctx, "read the default export", chromedp.Value(chromedp.CSS(`#generate-form [name=from]`)))
	if from != "." {
		t.Errorf("the export field defaults to %q, want the whole folder \".\"", from)
	}
	run(t, ctx, "upload the sample part",
		chromedp.SetUploadFiles(chromedp.CSS(`#generate-form [name=file]`), []string{upload}),
		chromedp.SetValue(chromedp.CSS(`#generate-form [name=sequences]`), slack.Hash),
		chromedp.Click(chromedp.CSS(`#generate-form button[type=submit]`)))
	waitJS(t, ctx, 10*time.Second, "the preview", `!!document.querySelector('#generate-result tr[data-method="conversations.history"]')`)
	progress := get(t, ctx, "read the progress line", chromedp.Text(chromedp.CSS(`#generate-progress`)))
	if !strings.Contains(progress, "1,434 rows") || !strings.Contains(progress, "calls-2026-11-02T15.jsonl") {
		t.Errorf("progress line %q, want the upload's 1,434 rows and its name", progress)
	}
	dropped := get(t, ctx, "read the dropped summary", chromedp.Text(chromedp.CSS(`#generate-dropped`)))
	for _, w := range []string{"Dropped 4 methods", "% of the export's calls", "search.messages", "files.upload", "emoji.list", "team.info"} {
		if !strings.Contains(dropped, w) {
			t.Errorf("dropped summary %q lacks %q", dropped, w)
		}
	}
	name := get(t, ctx, "read the default name", chromedp.Value(chromedp.CSS(`#generate-save [name=name]`)))
	if name == "slack" || !strings.HasPrefix(name, "slack-") {
		t.Errorf("the save name defaults to %q: want a new name, not the compared set's", name)
	}
	screenshot(t, ctx, "generate-upload")

	// Over the existing set: asked, and nothing saved without a yes.
	run(t, ctx, "save over slack", chromedp.SetValue(chromedp.CSS(`#generate-save [name=name]`), "slack"),
		chromedp.Click(chromedp.CSS(`#generate-save button[type=submit]`)))
	waitJS(t, ctx, 10*time.Second, "asked before overwriting", `!!document.querySelector('#generate-overwrite-yes')`)
	askText := get(t, ctx, "read the question", chromedp.Text(chromedp.CSS(`#generate-overwrite-ask`)))
	if !strings.Contains(askText, "exists (v1)") {
		t.Errorf("the question reads %q", askText)
	}
	run(t, ctx, "decline", chromedp.Click(chromedp.CSS(`#generate-overwrite-no`)))
	var sets []struct {
		Name, Hash string
		Version    int
		Files      []string
	}
	s.call(t, "GET", "/behavior-sets", nil, &sets)
	if len(sets) != 1 || sets[0].Version != 1 {
		t.Fatalf("sets after declining: %+v, want slack v1 alone", sets)
	}

	// Under a new name: saved, opened, its provenance names the upload.
	run(t, ctx, "save as a new set", chromedp.SetValue(chromedp.CSS(`#generate-save [name=name]`), "slack-november"),
		chromedp.Click(chromedp.CSS(`#generate-save button[type=submit]`)))
	waitJS(t, ctx, 10*time.Second, "the saved set opened", `location.hash.startsWith('#/behaviors/') && location.hash !== '#/behaviors/generate'`)
	s.call(t, "GET", "/behavior-sets", nil, &sets)
	hash := ""
	for _, x := range sets {
		if x.Name == "slack" && x.Version != 1 {
			t.Errorf("slack changed: %+v", x)
		}
		if x.Name == "slack-november" && x.Version == 1 && len(x.Files) == 2 {
			hash = x.Hash
		}
	}
	if hash == "" {
		t.Fatalf("no slack-november v1 with frequencies and sequences: %+v", sets)
	}
	var full struct {
		Files []struct{ Name, Content string }
	}
	s.call(t, "GET", "/behavior-sets/"+hash, nil, &full)
	var gen struct {
		Generated struct {
			Source  string
			Dropped struct{ Count int }
		}
	}
	if err := json.Unmarshal([]byte(full.Files[0].Content), &gen); err != nil {
		t.Fatalf("the saved frequencies are not JSON: %v", err)
	}
	if gen.Generated.Source != "calls-2026-11-02T15.jsonl" || gen.Generated.Dropped.Count != 4 {
		t.Errorf("saved provenance %+v", gen.Generated)
	}
	if strings.Contains(full.Files[0].Content, os.TempDir()) {
		t.Errorf("the saved file names a temporary path:\n%s", full.Files[0].Content)
	}
}
