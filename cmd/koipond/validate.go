package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/formations"
)

// diagJSON is one diagnostic in --json output.
type diagJSON struct {
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Path     string `json:"path,omitempty"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
}

func toJSON(ds behaviors.Diagnostics) []diagJSON {
	out := []diagJSON{}
	for _, d := range ds {
		sev := "error"
		if d.Warning {
			sev = "warning"
		}
		out = append(out, diagJSON{d.File, d.Line, d.Col, d.Path, d.Msg, sev})
	}
	return out
}

func validateBehaviors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "behaviors validate", "behaviors validate [--json] FILE…", `
Check a behavior set: every file given is one part of the same set, merged
by behavior name (for example frequencies.json from the warehouse and
sequences.json written by hand). Every problem is printed at once, as
file:line:col: path: message. Exits 1 when there is any error; warnings
alone exit 0.`, stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "koipond behaviors validate: give at least one FILE")
		return errUsage
	}
	set, diags := behaviors.Load(fs.Args()...)
	if *asJSON {
		res := map[string]any{"valid": set != nil, "diagnostics": toJSON(diags)}
		if set != nil {
			res["behaviors"], res["scheduled"], res["calls_per_koi_minute"] = summarizeSet(set)
			res["hash"] = set.Hash
		}
		if err := writeJSON(stdout, res); err != nil {
			return err
		}
	} else {
		for _, d := range diags {
			fmt.Fprintln(stdout, d.String())
		}
		if set != nil {
			n, sched, perMin := summarizeSet(set)
			boot := "no boot sequence"
			if set.Boot != nil {
				boot = "boot: " + plural(len(set.Boot.Steps), "step", "steps")
			}
			var events []string
			for e := range set.OnEvent {
				events = append(events, e)
			}
			sort.Strings(events)
			ev := "no on_event handlers"
			if len(events) > 0 {
				ev = "on_event: " + strings.Join(events, ", ")
			}
			fmt.Fprintf(stdout, "ok: %s (%d scheduled), %s, %s%s\n", plural(n, "behavior", "behaviors"), sched, boot, ev, lifecycleSummary(set))
			fmt.Fprintf(stdout, "    %.3f calls per koi-minute: 1,000 koi make about %.1f calls/s\n", perMin, perMin*1000/60)
		}
	}
	if set == nil {
		if !*asJSON {
			fmt.Fprintf(stderr, "koipond: %s in %s\n", plural(countErrors(diags), "error", "errors"), strings.Join(fs.Args(), ", "))
		}
		return exitError{1}
	}
	return nil
}

func summarizeSet(set *behaviors.Set) (n, scheduled int, perMinute float64) {
	for _, b := range set.Behaviors {
		n++
		if b.HasFrequency && b.Sequence != nil {
			scheduled++
			perMinute += b.Frequency
		}
	}
	return n, scheduled, perMinute
}

func countErrors(ds behaviors.Diagnostics) int {
	n := 0
	for _, d := range ds {
		if !d.Warning {
			n++
		}
	}
	return n
}

func validateFormations(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "formations validate", "formations validate [--json] FILE…", `
Check formation files (each file is one formation). Every problem in every
file is printed at once, as file:line:col: path: message. Exits 1 when any
file has an error.`, stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "koipond formations validate: give at least one FILE")
		return errUsage
	}
	bad := 0
	var results []map[string]any
	for _, path := range fs.Args() {
		f, diags := formations.Load(path)
		if f == nil {
			bad++
		}
		if *asJSON {
			r := map[string]any{"file": path, "valid": f != nil, "diagnostics": toJSON(diags)}
			if f != nil {
				r["name"], r["percent"], r["begin_within_secs"], r["steps"] = f.Name, f.Percent, f.BeginWithin.Seconds(), len(f.Sequence.Steps)
			}
			results = append(results, r)
			continue
		}
		for _, d := range diags {
			fmt.Fprintln(stdout, d.String())
		}
		if f != nil {
			fmt.Fprintf(stdout, "ok: %s: %q: %g%% of connected koi start %s within %v\n",
				path, f.Name, f.Percent, plural(len(f.Sequence.Steps), "step", "steps"), f.BeginWithin)
		}
	}
	if *asJSON {
		if err := writeJSON(stdout, results); err != nil {
			return err
		}
	}
	if bad > 0 {
		if !*asJSON {
			fmt.Fprintf(stderr, "koipond: %d of %d formation files have errors\n", bad, fs.NArg())
		}
		return exitError{1}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// lifecycleSummary names the set's connection hooks and frame rules, when
// it has any.
func lifecycleSummary(set *behaviors.Set) string {
	var parts []string
	if set.OnConnect != nil {
		parts = append(parts, "on_connect: "+plural(len(set.OnConnect.Steps), "step", "steps"))
	}
	if set.OnDisconnect != nil {
		parts = append(parts, "on_disconnect: "+plural(len(set.OnDisconnect.Steps), "step", "steps"))
	}
	if f := set.Frames; f != nil && f.Given() {
		parts = append(parts, fmt.Sprintf("frames: %d json, %d text, %d binary rules", len(f.JSON), len(f.Text), len(f.Binary)))
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}
