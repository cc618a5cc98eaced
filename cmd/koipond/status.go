package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/keeper/api"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "status", "status [--json] [--watch]", `
Show the keeper at a glance: the global switch (and whether its last stop
was confirmed everywhere), active runs, schools and their health, and
pending or running launches. --watch prints again whenever something
changes.`, stderr)
	cf := addClientFlags(fs)
	watch := fs.Bool("watch", false, "print again on every change, until interrupted")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path := "/api/v1/status"
	for first := true; ; first = false {
		p := path
		if !first {
			p += "?wait=1m"
		}
		var raw json.RawMessage
		if err := cf.call(ctx, "GET", p, nil, &raw); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := printStatus(cf, stdout, raw); err != nil {
			return err
		}
		if !*watch || ctx.Err() != nil {
			return nil
		}
	}
}

func printStatus(cf *clientFlags, stdout io.Writer, raw json.RawMessage) error {
	if cf.json {
		return writeJSON(stdout, raw)
	}
	var st struct {
		Switch struct {
			api.GlobalSwitch
			StopCompleteMS int64 `json:"stop_complete_ms"`
		} `json:"switch"`
		Runs    []runView `json:"runs"`
		Schools []struct {
			api.School
			Health   string `json:"health"`
			Assigned int    `json:"assigned"`
		} `json:"schools"`
		Launches []api.Launch `json:"launches"`
		Time     time.Time    `json:"time"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("decoding the status: %w", err)
	}
	sw := st.Switch
	fmt.Fprintf(stdout, "switch: %s (epoch %d, by %s)\n", sw.State, sw.Epoch, sw.By)
	if sw.Stop != nil && sw.State == "stopped" {
		if sw.Stop.Complete() {
			fmt.Fprintf(stdout, "  %s\n", stopConfirmed(len(sw.Stop.Expected), sw.StopCompleteMS))
		} else {
			fmt.Fprintf(stdout, "  stop confirmed by %d of %s%s\n", len(sw.Stop.Acks), plural(len(sw.Stop.Expected), "school", "schools"), lateList(sw.Stop.Late))
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nRUN\tNAME\tSTATE\tKOI\tASSIGNED\tCONNECTED\tNOTE\n")
	for _, r := range st.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.ID, r.Name, r.State, r.Koi, r.Assigned, connectedCell(&r), r.Partial)
	}
	fmt.Fprintf(tw, "\nSCHOOL\tHEALTH\tCAPACITY\tASSIGNED\tLAST SEEN\tCLOCK OFFSET\n")
	for _, s := range st.Schools {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s ago\t%.1f ms\n", s.ID, s.Health, s.Capacity, s.Assigned, st.Time.Sub(s.LastSeen).Round(time.Millisecond), s.ClockOffsetMS)
	}
	if len(st.Launches) > 0 {
		fmt.Fprintf(tw, "\nLAUNCH\tFORMATION\tRUN\tSTATE\tSTART\tPLANNED\tSTARTED\tFINISHED\tFAILED\tCANCELLED\n")
		for _, l := range st.Launches {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", l.ID, l.Name, l.Run, l.State, l.Start.Local().Format(time.TimeOnly),
				l.Count, l.Started, l.Finished, l.Failed, l.Cancelled)
		}
	}
	return tw.Flush()
}
