// Command koipond is the one koipond binary: every role (demo, pond target,
// validators, and later keeper and school) is a subcommand.
//
// main wires signals and the exit code only; each subcommand lives in its own
// file and turns its flags into a package Config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one row of the subcommand table.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the subcommand table, in the order `koipond help` lists it.
var commands = []command{
	{"demo", "run pond and a swarm of koi on loopback, with live status", runDemo},
	{"pond", "serve the Slack-like target app koi swim in", runPond},
	{"school", "run koi for the keeper: poll over NATS, ramp, obey the switch", runSchool},
	{"behaviors", "validate behavior-set files (behaviors validate FILE…)", runBehaviors},
	{"formations", "validate formation files (formations validate FILE…)", runFormations},
	{"warehouse", "behavior frequencies from a usage export (warehouse generate --from …)", runWarehouse},
	{"keeper", "run the keeper: state, scheduler, switch and the HTTP API", runKeeper},
	{"run", "create, list, show, pause, resume, stop, scale or shed runs", runRun},
	{"guardrails", "show or set the global guardrails (pause, stop, shed on bad metrics)", runGuardrails},
	{"report", "a run's report: latencies, errors, launches, thresholds (json, csv, text)", runReport},
	{"launch", "launch a formation over a run's connected koi", runLaunch},
	{"webhook", "add, list, test or remove notification webhooks (JSON or Slack)", runWebhook},
	{"trigger", "add, list or remove event triggers; fire one with a signed call", runTrigger},
	{"pause", "pause every koi everywhere", runPause},
	{"resume", "resume every koi everywhere", runResume},
	{"stop", "stop every koi everywhere (--nats URL if the keeper is down)", runStop},
	{"status", "show the switch, runs, schools and launches", runStatus},
	{"version", "print the version", runVersion},
}

// commandNames is the set of command names (filled from the table at
// init, for code the table itself reaches).
var commandNames = map[string]bool{}

func init() {
	for _, c := range commands {
		commandNames[c.name] = true
	}
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// errUsage marks an error already explained to the user by a FlagSet; the
// exit code is 2 and nothing more is printed.
var errUsage = errors.New("usage")

// exitError carries an exit code chosen by a subcommand (for example 1 when a
// validator found problems) after it has printed its own report.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second Ctrl-C exits at once.
		<-ctx.Done()
		stop()
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		<-c
		fmt.Fprintln(os.Stderr, "koipond: second interrupt, exiting now")
		os.Exit(130)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "koipond: %v\n", err)
		return 1
	}
}

// run dispatches args[0] to its subcommand. Tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "koipond: unknown command %q%s\n\n", name, suggest(name))
	usage(stderr)
	return errUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `koipond load-tests real-time collaboration apps the way their users hit them:
thousands of lightweight simulated clients (koi), each with a persistent
websocket, calling the app's API at the per-minute frequencies real users show.

Usage:
  koipond <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'koipond <command> --help' for a command's flags.
`)
}

// suggest returns " (did you mean X?)" for a command sharing the first
// three letters (or the whole of a shorter name), or "".
func suggest(name string) string {
	var names []string
	for _, c := range commands {
		n := min(3, len(c.name), len(name))
		if n > 0 && c.name[:n] == name[:n] {
			names = append(names, c.name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", strings.Join(names, " or "))
}

// newFlagSet returns a FlagSet whose --help prints the given synopsis and
// description above the flag list.
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("koipond "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: koipond %s\n\n%s\n", synopsis, strings.TrimSpace(description))
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args and maps flag errors to errUsage/flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	return nil
}

// newLogger returns the text logger long-running commands write to stderr.
func newLogger(stderr io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// serverLogger is the logger of a long-running command: info, or debug
// with --verbose.
func serverLogger(stderr io.Writer, verbose bool) *slog.Logger {
	if verbose {
		return newLogger(stderr, slog.LevelDebug)
	}
	return newLogger(stderr, slog.LevelInfo)
}

// configErrors prints every problem of a command's configuration, one a
// line, and makes it a usage error.
func configErrors(stderr io.Writer, cmd string, errs []error) error {
	for _, e := range errs {
		fmt.Fprintf(stderr, "koipond %s: %v\n", cmd, e)
	}
	return errUsage
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", "Print the koipond version.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "koipond %s\n", version)
	return nil
}
