package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/api"
)

func runLaunch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "launch", "launch FORMATION.json --run ID [--at TIME] [--param k=v]… [--json]", `
Launch a formation over a run's connected koi: the file is uploaded (or
found, if already stored), then percent of the run's connected koi each
start its sequence at a random moment within the window after TIME.
TIME is "now" (the default), an RFC 3339 time, or +DURATION (e.g. +30s).`, stderr)
	cf := addClientFlags(fs)
	run := fs.String("run", "", "run `ID`")
	at := fs.String("at", "now", "launch `TIME`")
	params := keyValues{}
	fs.Var(params, "param", "launch parameter `key=value`, readable with get (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *run == "" {
		fmt.Fprintln(stderr, "koipond launch: --run ID is required")
		return errUsage
	}
	start, err := parseAt(*at, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "koipond launch: --at: %v\n", err)
		return errUsage
	}
	f, _, err := uploadFormation(ctx, cf, fs.Arg(0))
	if err != nil {
		return err
	}
	req := map[string]any{"formation": f.Hash, "run": *run, "params": params}
	if !start.IsZero() {
		req["at"] = start.Format(time.RFC3339Nano)
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/launches", req, &raw); err != nil {
		return err
	}
	var l api.Launch
	if err := json.Unmarshal(raw, &l); err != nil {
		return err
	}
	return cf.show(stdout, raw, func() {
		fmt.Fprintf(stdout, "launch %s: %q over run %s at %s (%s)\n", l.ID, l.Name, l.Run, l.Start.Local().Format(time.RFC3339), l.State)
		if l.Planned() {
			fmt.Fprintf(stdout, "  %d of %d connected koi start:", l.Count, l.Connected)
			for _, sh := range l.Shares {
				fmt.Fprintf(stdout, " %s=%d", sh.School, sh.Count)
			}
			fmt.Fprintln(stdout)
		} else {
			fmt.Fprintln(stdout, "  counts are fixed a few seconds before the start: koipond status shows them")
		}
	})
}

// parseAt parses now, +DURATION or an RFC 3339 time; zero means now.
func parseAt(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "" || s == "now":
		return time.Time{}, nil
	case strings.HasPrefix(s, "+"):
		d, err := time.ParseDuration(s[1:])
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q is not +DURATION", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not now, +DURATION or an RFC 3339 time", s)
	}
	return t, nil
}
