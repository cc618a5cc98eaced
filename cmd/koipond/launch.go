package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/formations"
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
	if err := checkLaunchParams(fs.Arg(0), params, stderr); err != nil {
		return err
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
		if len(l.Params) > 0 {
			fmt.Fprintf(stdout, "  parameters: %s\n", formatParams(l.Params))
		}
		if l.Planned() {
			fmt.Fprintf(stdout, "  %d of %d connected koi planned:", l.Count, l.Connected)
			for _, sh := range l.Shares {
				fmt.Fprintf(stdout, " %s=%d", sh.School, sh.Count)
			}
			fmt.Fprintln(stdout)
			fmt.Fprintf(stdout, "  %s\n", launchCounts(&l))
		} else {
			fmt.Fprintln(stdout, "  counts are fixed a few seconds before the start: koipond status shows them")
		}
	})
}

// checkLaunchParams checks the parameters against the ones the formation
// file declares before anything is uploaded: a missing required or an
// undeclared one is a usage error that lists what the file declares. A
// file that does not parse is left to the upload, which reports every
// problem.
func checkLaunchParams(path string, given map[string]string, stderr io.Writer) error {
	f, _ := formations.Load(path)
	if f == nil {
		return nil
	}
	_, err := f.ResolveParams(given)
	var pe *formations.ParamError
	if !errors.As(err, &pe) {
		return nil
	}
	for _, m := range pe.Missing {
		fmt.Fprintf(stderr, "koipond launch: %s needs --param %s=VALUE\n", path, m)
	}
	for _, u := range pe.Unknown {
		fmt.Fprintf(stderr, "koipond launch: %s declares no parameter %q\n", path, u)
	}
	fmt.Fprint(stderr, describeLaunchParams(path, pe.Declared))
	return errUsage
}

// describeLaunchParams lists a formation's declared parameters as --param
// flags, like --help.
func describeLaunchParams(path string, ps []formations.Param) string {
	if len(ps) == 0 {
		return fmt.Sprintf("%s declares no parameters.\n", path)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Parameters of %s:\n", path)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, p := range ps {
		what := "optional"
		switch {
		case p.Required:
			what = "required"
		case p.Default != "":
			what = fmt.Sprintf("default %q", p.Default)
		}
		fmt.Fprintf(tw, "  --param %s=VALUE\t(%s)\t%s\n", p.Name, what, p.Doc)
	}
	tw.Flush()
	return b.String()
}

// formatParams prints parameters as k=v, sorted by name.
func formatParams(ps map[string]string) string {
	keys := slices.Sorted(maps.Keys(ps))
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + ps[k]
	}
	return strings.Join(out, " ")
}

// launchCounts says how a launch's koi are doing.
func launchCounts(l *api.Launch) string {
	return fmt.Sprintf("%d planned, %d started, %d finished, %d failed, %d cancelled", l.Count, l.Started, l.Finished, l.Failed, l.Cancelled)
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
