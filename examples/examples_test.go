package examples_test

import (
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/examples"
	"github.com/koipond/koipond/formations"
)

// Every example file is valid: formations one by one, behavior files as
// the set of their folder, with no warnings.
func TestEveryExampleIsValid(t *testing.T) {
	sets := map[string][]behaviors.File{}
	n := 0
	err := fs.WalkDir(examples.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := examples.FS.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if strings.HasSuffix(p, ".formation.json") {
			if f, diags := formations.Parse(behaviors.File{Name: p, Data: b}); f == nil || len(diags) > 0 {
				t.Errorf("%s: %v", p, diags)
			}
			return nil
		}
		sets[path.Dir(p)] = append(sets[path.Dir(p)], behaviors.File{Name: p, Data: b})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d example files embedded", n)
	}
	for dir, files := range sets {
		if set, diags := behaviors.Parse(files...); set == nil || len(diags) > 0 {
			t.Errorf("%s: %v", dir, diags)
		}
	}
}
