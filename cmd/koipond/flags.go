package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagSetLeaves maps a flag set newFlagSet handed out to its command, for
// parseFlags (which parses it once and forgets it).
var flagSetLeaves sync.Map // *pflag.FlagSet → *leafRun

// newFlagSet returns the flag set of the command ctx runs as, after
// taking its usage line (synopsis, which starts with the command's path)
// and description as the command's Use and Long. Outside the command
// tree it returns a standalone set.
func newFlagSet(ctx context.Context, name, synopsis, description string, stderr io.Writer) *pflag.FlagSet {
	l, ok := ctx.Value(leafKey{}).(*leafRun)
	if !ok {
		fs := pflag.NewFlagSet("koipond "+name, pflag.ContinueOnError)
		fs.SetOutput(stderr)
		return fs
	}
	c := l.cmd
	if rest, ok := strings.CutPrefix(synopsis, name); ok && (rest == "" || rest[0] == ' ') {
		c.Use = c.Name() + rest
	}
	c.Long = strings.TrimSpace(description)
	fs := c.Flags()
	flagSetLeaves.Store(fs, l)
	return fs
}

// parseFlags parses a body's arguments: flags may come before, between
// or after positional arguments. --help prints the command's help
// (pflag.ErrHelp, exit 0); a wrong flag or argument count prints what is
// wrong (errUsage, exit 2). Called to define flags only, it returns
// errDefined.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	v, ok := flagSetLeaves.LoadAndDelete(fs)
	if !ok {
		if err := fs.Parse(args); err != nil {
			if err == pflag.ErrHelp {
				return pflag.ErrHelp
			}
			return errUsage
		}
		return nil
	}
	l := v.(*leafRun)
	if l.defineOnly {
		return errDefined
	}
	c := l.cmd
	c.InitDefaultHelpFlag()
	fs.SetOutput(c.ErrOrStderr())
	// From here cobra parses the flags the body defined, and Args sees
	// only the positional arguments.
	c.DisableFlagParsing = false
	if err := c.ParseFlags(args); err != nil {
		if err == pflag.ErrHelp {
			return pflag.ErrHelp // cobra prints the help
		}
		fmt.Fprintf(c.ErrOrStderr(), "%s: %v%s\nRun '%s --help' for usage.\n", c.CommandPath(), err, suggestFlag(fs, err), c.CommandPath())
		return errUsage
	}
	if help, _ := fs.GetBool("help"); help {
		return pflag.ErrHelp // cobra prints the help
	}
	if err := c.ValidateArgs(fs.Args()); err != nil {
		fmt.Fprintf(c.ErrOrStderr(), "%s: %v\nRun '%s --help' for usage.\n", c.CommandPath(), err, c.CommandPath())
		return errUsage
	}
	return nil
}

// suggestFlag returns " (did you mean --NAME?)" for an unknown flag
// within two edits of one of fs's, or "".
func suggestFlag(fs *pflag.FlagSet, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return ""
	}
	best, bestD := "", 3
	fs.VisitAll(func(f *pflag.Flag) {
		if d := editDistance(name, f.Name); d < bestD && !f.Hidden {
			best, bestD = f.Name, d
		}
	})
	if best == "" {
		return ""
	}
	return " (did you mean --" + best + "?)"
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// normalizeArgs rewrites old single-dash long flags (-keeper URL, -json,
// -format=csv) as --keeper, --json, --format=csv for the command args
// reach, so scripts written for the standard flag package keep working.
// Only names the command knows are rewritten; values of flags are left
// alone, and so is everything after "--".
func normalizeArgs(root *cobra.Command, args []string) []string {
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return args
	}
	lookup := func(name string) *pflag.Flag {
		if f := c.Flags().Lookup(name); f != nil {
			return f
		}
		return c.InheritedFlags().Lookup(name)
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		if !strings.HasPrefix(a, "-") || len(a) < 2 {
			continue
		}
		dashes := 1
		if strings.HasPrefix(a, "--") {
			dashes = 2
		}
		name, _, hasValue := strings.Cut(a[dashes:], "=")
		if dashes == 1 && len(name) < 2 {
			continue // a shorthand (-h, -v) or a bare "-"
		}
		var f *pflag.Flag
		switch name {
		case "help":
			f = &pflag.Flag{NoOptDefVal: "true"}
		case "version":
			if c == root {
				f = &pflag.Flag{NoOptDefVal: "true"}
			}
		default:
			f = lookup(name)
		}
		if f == nil {
			continue
		}
		if dashes == 1 {
			out[len(out)-1] = "-" + a
		}
		if !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++ // the flag's value, taken as is
			out = append(out, args[i])
		}
	}
	return out
}

// plainFlagUsage drops the backquotes that name a flag's value in help
// (--run ID) from every flag's usage, for shell completion, which shows
// usages verbatim.
func plainFlagUsage(c *cobra.Command) {
	c.Flags().VisitAll(func(f *pflag.Flag) { f.Usage = strings.ReplaceAll(f.Usage, "`", "") })
	for _, sub := range c.Commands() {
		plainFlagUsage(sub)
	}
}

// The flag value types of the commands, as pflag wants them: Type names
// the value in help.

// Type implements pflag.Value.
func (kv keyValues) Type() string { return "key=value" }

// Type implements pflag.Value.
func (l stringList) Type() string { return "string" }

// Type implements pflag.Value.
func (t thresholdFlags) Type() string { return "KEY=CONDITION" }

// Type implements pflag.Value.
func (g guardrailFlags) Type() string { return "rule" }

// Type implements pflag.Value.
func (c capacityFlag) Type() string { return "search" }

// Type implements pflag.Value.
func (l *listFlag) Type() string { return "list" }

// Type implements pflag.Value.
func (t timeFlag) Type() string { return "time" }

// Type implements pflag.Value.
func (p *pondListFlag) Type() string { return "string" }
