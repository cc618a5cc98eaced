package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/koipond/koipond/examples"
)

// writeSampleExport writes the sample usage export the binary ships
// (examples/warehouse) to DATA/warehouse and returns that folder, so the
// demo's warehouse page works without flags or a checkout. The files are
// rewritten at every start: a demo restarted on the same --data gets the
// sample of its own version.
func writeSampleExport(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "warehouse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("writing the sample export: %w", err)
	}
	err := fs.WalkDir(examples.Warehouse, "warehouse", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := examples.Warehouse.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("writing the sample export to %s: %w", dir, err)
	}
	return dir, nil
}
