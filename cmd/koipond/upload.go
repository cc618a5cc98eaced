package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/api"
)

type uploadFile struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

func uploadBehaviors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "behaviors upload", "behaviors upload [--name NAME] [--json] FILE…", `
Upload a behavior set to the keeper: every file given is one part of the
same set (as for validate). The keeper validates it and stores it under
NAME (default: the first file's base name); new content under a known name
becomes its next version, known content is not stored twice.`, stderr)
	cf := addClientFlags(fs)
	name := fs.String("name", "", "store the files as the behavior set `NAME` (a new version when it exists)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "koipond behaviors upload: give at least one FILE")
		return errUsage
	}
	files, err := behaviors.ReadFiles(fs.Args()...)
	if err != nil {
		return err
	}
	req := struct {
		Name  string       `json:"name"`
		Files []uploadFile `json:"files"`
	}{Name: *name}
	for _, f := range files {
		req.Files = append(req.Files, uploadFile{Name: f.Name, Content: string(f.Data)})
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/behavior-sets", req, &raw); err != nil {
		return err
	}
	var v struct {
		Hash      string   `json:"hash"`
		Name      string   `json:"name"`
		Version   int      `json:"version"`
		Behaviors int      `json:"behaviors"`
		Warnings  []string `json:"warnings"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return cf.show(stdout, raw, func() {
		for _, w := range v.Warnings {
			fmt.Fprintln(stdout, w)
		}
		fmt.Fprintf(stdout, "stored behavior set %q version %d: %s, hash %s\n", v.Name, v.Version, plural(v.Behaviors, "behavior", "behaviors"), v.Hash)
	})
}

// uploadFormation stores one formation file and returns it.
func uploadFormation(ctx context.Context, cf *clientFlags, path string) (*api.Formation, json.RawMessage, error) {
	files, err := behaviors.ReadFiles(path)
	if err != nil {
		return nil, nil, err
	}
	req := map[string]any{"file": uploadFile{Name: files[0].Name, Content: string(files[0].Data)}}
	var raw json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/formations", req, &raw); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var f api.Formation
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, nil, err
	}
	return &f, raw, nil
}

func uploadFormations(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "formations upload", "formations upload [--json] FILE…", `
Upload formation files to the keeper (each file is one formation, stored
under its "name", versioned).`, stderr)
	cf := addClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "koipond formations upload: give at least one FILE")
		return errUsage
	}
	var all []json.RawMessage
	for _, p := range fs.Args() {
		f, raw, err := uploadFormation(ctx, cf, p)
		if err != nil {
			return err
		}
		all = append(all, raw)
		if !cf.json {
			fmt.Fprintf(stdout, "stored formation %q version %d: %g%% within %gs, hash %s\n", f.Name, f.Version, f.Percent, float64(f.BeginWithinMS)/1000, f.Hash)
		}
	}
	if cf.json {
		return writeJSON(stdout, all)
	}
	return nil
}
