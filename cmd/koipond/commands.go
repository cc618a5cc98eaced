package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// runFunc is a command's body: it defines its flags on newFlagSet's set,
// parses args with parseFlags and does the work.
type runFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// spec is one row of the command table: a command path ("run create"),
// what it does in a line, how it is used, its positional arguments and its
// body. A row without run is a group whose verbs are the rows below it.
type spec struct {
	path    string
	short   string
	example string
	aliases []string
	args    cobra.PositionalArgs
	run     runFunc
}

// commands is the command table, in the order `koipond --help` lists it.
// Use and Long come from each body's newFlagSet call, so the synopsis and
// description live beside the flags they describe.
var commands = []spec{
	{path: "demo", short: "run pond and a swarm of koi on loopback, with live status", args: noArgs, run: runDemo,
		example: "  koipond demo\n  koipond demo --koi 2000 --schools 2 --time-scale 10"},
	{path: "pond", short: "serve the Slack-like target app koi swim in", args: noArgs, run: runPond,
		example: "  koipond pond --users 20000 --channels 500"},
	{path: "school", short: "run koi for the keeper: poll over NATS, ramp, obey the switch", args: noArgs, run: runSchool,
		example: "  koipond school --nats nats://127.0.0.1:4222 --nats-nkey ./demo-data/nats/school.nk --capacity 5000"},
	{path: "keeper", short: "run the keeper: state, scheduler, switch and the HTTP API", args: noArgs, run: runKeeper,
		example: "  koipond keeper --http 127.0.0.1:8080 --data ./keeper-data"},

	{path: "behaviors", short: "validate or upload behavior-set files"},
	{path: "behaviors validate", short: "check behavior-set files and print every problem", args: wantArgs(1, -1, "one or more FILEs"),
		run: validateBehaviors, example: "  koipond behaviors validate examples/slack/frequencies.json examples/slack/sequences.json"},
	{path: "behaviors upload", short: "upload behavior-set files to the keeper as a named set", args: wantArgs(1, -1, "one or more FILEs"),
		run: uploadBehaviors, example: "  koipond behaviors upload --name slack examples/slack/frequencies.json examples/slack/sequences.json"},
	{path: "formations", short: "validate or upload formation files"},
	{path: "formations validate", short: "check formation files and print every problem", args: wantArgs(1, -1, "one or more FILEs"),
		run: validateFormations, example: "  koipond formations validate examples/seed/announcement-reaction.formation.json"},
	{path: "formations upload", short: "upload formation files to the keeper", args: wantArgs(1, -1, "one or more FILEs"),
		run: uploadFormations, example: "  koipond formations upload examples/seed/announcement-reaction.formation.json"},
	{path: "warehouse", short: "behavior frequencies from a usage export"},
	{path: "warehouse generate", short: "write a frequencies file from a usage export (file, folder or S3)", args: noArgs, run: warehouseGenerate,
		example: "  koipond warehouse generate --from export/ --out frequencies.json"},

	{path: "run", short: "create, list, show, pause, resume, stop, scale or shed runs"},
	{path: "run create", short: "create a run: koi with one behavior set against one target", args: noArgs, run: runCreate,
		example: "  koipond run create --name nightly --behaviors slack --api-base http://127.0.0.1:9090/api \\\n" +
			"      --token-template 'xoxp-pond-{{.Index}}' --koi 200 --duration 2m --wait \\\n" +
			"      --threshold 'api:auth.test=p95 < 300ms'"},
	{path: "run list", short: "list runs", args: noArgs, run: runList, example: "  koipond run list --state running"},
	{path: "run show", short: "show a run: where its koi are and how they are doing", args: wantArgs(1, 1, "one run ID"),
		run: runOne("show", "Show a run: where its koi are and how they are doing.", "GET", ""), example: "  koipond run show RUN --json"},
	{path: "run pause", short: "pause a run's koi (websockets stay open)", args: wantArgs(1, 1, "one run ID"), run: runSwitchVerb("pause"),
		example: "  koipond run pause RUN"},
	{path: "run resume", short: "resume a paused run", args: wantArgs(1, 1, "one run ID"), run: runSwitchVerb("resume"),
		example: "  koipond run resume RUN"},
	{path: "run stop", short: "stop a run: sequences abort, websockets close", args: wantArgs(1, 1, "one run ID"), run: runSwitchVerb("stop"),
		example: "  koipond run stop RUN"},
	{path: "run scale", short: "change a running run's koi count or ramp", args: wantArgs(1, 1, "one run ID"), run: runScale,
		example: "  koipond run scale RUN --koi 800"},
	{path: "run shed", short: "hold back a percentage of a run's koi (0 restores)", args: wantArgs(2, 2, "a run ID and a percentage"), run: runShed,
		example: "  koipond run shed RUN 50"},
	{path: "guardrails", short: "show or set the global guardrails (pause, stop, shed on bad metrics)", args: wantArgs(0, 2, "show, set FILE or clear"),
		run: runGuardrails, example: "  koipond guardrails\n  koipond guardrails set rules.json\n  koipond guardrails clear"},
	{path: "report", short: "a run's report: latencies, errors, launches, thresholds (json, csv, text)", args: wantArgs(1, 1, "one run ID"),
		run: runReport, example: "  koipond report RUN --format csv\n  koipond report RUN --baseline OTHER --tolerance 10%"},
	{path: "launch", short: "launch a formation over a run's connected koi", args: wantArgs(1, 1, "one FORMATION.json"), run: runLaunch,
		example: "  koipond launch examples/seed/announcement-reaction.formation.json --run RUN --param channel_id=C000001"},

	{path: "webhook", short: "add, list, test or rm notification webhooks (JSON or Slack)"},
	{path: "webhook add", short: "add a webhook notified of run and guardrail events", args: wantArgs(2, 2, "NAME and URL"), run: webhookAdd,
		example: "  koipond webhook add audit https://ops.example/koipond --secret-file hook.secret"},
	{path: "webhook list", short: "list webhooks with their delivery status", args: noArgs, run: webhookList, example: "  koipond webhook list"},
	{path: "webhook test", short: "send a test notice to a webhook now", args: wantArgs(1, 1, "NAME"), run: webhookTest,
		example: "  koipond webhook test audit"},
	{path: "webhook rm", short: "remove a webhook", aliases: []string{"remove"}, args: wantArgs(1, 1, "NAME"),
		run: removeNamed("webhook", "webhooks", "Remove a webhook; notices waiting for it are dropped."), example: "  koipond webhook rm audit"},
	{path: "trigger", short: "add, list, fire or rm event triggers (signed calls that start runs or launches)"},
	{path: "trigger add", short: "add a trigger from a spec file", args: wantArgs(1, 1, "NAME"), run: triggerAdd,
		example: "  koipond trigger add search-deploy --file search-deploy.json --secret-file trigger.secret"},
	{path: "trigger list", short: "list triggers with their accepted and refused calls", args: noArgs, run: triggerList,
		example: "  koipond trigger list"},
	{path: "trigger fire", short: "fire a trigger with a signed call, as a deploy pipeline would", args: wantArgs(1, 1, "NAME"), run: triggerFire,
		example: "  koipond trigger fire search-deploy --secret-file trigger.secret --label service=search"},
	{path: "trigger rm", short: "remove a trigger", aliases: []string{"remove"}, args: wantArgs(1, 1, "NAME"),
		run: removeNamed("trigger", "triggers", "Remove a trigger; calls to it are refused from then on."), example: "  koipond trigger rm search-deploy"},

	{path: "pause", short: "pause every koi everywhere", args: noArgs, run: runPause, example: "  koipond pause ; koipond resume"},
	{path: "resume", short: "resume every koi everywhere", args: noArgs, run: runResume, example: "  koipond resume"},
	{path: "stop", short: "stop every koi everywhere (--nats URL if the keeper is down)", args: noArgs, run: runStop,
		example: "  koipond stop\n  koipond stop --nats nats://127.0.0.1:4222 --data ./demo-data"},
	{path: "status", short: "show the switch, runs, schools and launches", args: noArgs, run: runStatus, example: "  koipond status --watch"},
	{path: "version", short: "print the version", args: noArgs, run: runVersion, example: "  koipond version\n  koipond --version"},
}

// commandNames is the set of top-level command names, for text that
// names commands (the demo's hints).
var commandNames = map[string]bool{}

func init() {
	cobra.EnableCommandSorting = false // help lists commands in the table's order
	for _, s := range commands {
		commandNames[strings.Fields(s.path)[0]] = true
	}
}

// leafRun is what a body's newFlagSet and parseFlags need to know: the
// cobra command it runs as, and whether the call only defines its flags
// (for help, completion and argument normalization) or runs.
type leafRun struct {
	cmd        *cobra.Command
	defineOnly bool
}

type leafKey struct{}

// errDefined ends a body called to define its flags only.
var errDefined = errors.New("flags defined")

// newTree builds the command tree for one run: cobra commands keep parse
// state, so concurrent in-process runs (tests) each get their own. Every
// body is called once to define its flags on its command; entered is set
// when a body is entered to run, so run can tell cobra's own usage errors
// from the body's errors.
func newTree(ctx context.Context, stdout, stderr io.Writer, entered *bool) (*cobra.Command, error) {
	root := &cobra.Command{
		Use:   "koipond",
		Short: "load-test real-time collaboration apps the way their users hit them",
		Long: `koipond load-tests real-time collaboration apps the way their users hit them:
thousands of lightweight simulated clients (koi), each with a persistent
websocket, calling the app's API at the per-minute frequencies real users show.

Commands that talk to the keeper take --keeper URL (env KOIPOND_KEEPER) and
send the API token from env KOIPOND_TOKEN. Exit codes: 0 pass, 1 failed
(thresholds, guardrail, validation or another error), 2 usage, 3 koipond
itself unavailable (keeper or NATS unreachable, 502/503/504).`,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          legacyRootArgs,

		SuggestionsMinimumDistance: 2,
		RunE: func(c *cobra.Command, args []string) error {
			c.SetOut(c.ErrOrStderr())
			c.Usage()
			return errUsage
		},
	}
	root.SetVersionTemplate("koipond {{.Version}}\n")
	// A group (koipond, koipond run) runs only to say a verb is missing
	// or unknown: its usage shows "[command]", not its own use line.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "Usage:{{if .Runnable}}", "Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetContext(ctx)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())
	})
	byPath := map[string]*cobra.Command{"": root}
	for _, s := range commands {
		words := strings.Fields(s.path)
		parent := byPath[strings.Join(words[:len(words)-1], " ")]
		c := &cobra.Command{Use: words[len(words)-1], Short: s.short, Example: s.example, Aliases: s.aliases, SuggestionsMinimumDistance: 2}
		if s.run == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRun
		} else {
			c.Args = leafArgs(s.args)
			c.DisableFlagParsing = true // the body parses: its flags live in its own variables
			c.RunE = leafRunE(s.run, entered)
			// Define the flags (and Use, Long) once so that help, completion
			// and single-dash normalization know them.
			if err := s.run(context.WithValue(ctx, leafKey{}, &leafRun{cmd: c, defineOnly: true}), nil, io.Discard, io.Discard); !errors.Is(err, errDefined) {
				return nil, fmt.Errorf("koipond %s: defining its flags returned %v: a body must not act before parseFlags", s.path, err)
			}
		}
		parent.AddCommand(c)
		byPath[s.path] = c
	}
	return root, nil
}

// leafRunE runs a body with fresh flags on its command.
func leafRunE(fn runFunc, entered *bool) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		*entered = true
		c.ResetFlags()
		if args == nil {
			args = []string{}
		}
		ctx := context.WithValue(c.Context(), leafKey{}, &leafRun{cmd: c})
		return fn(ctx, args, c.OutOrStdout(), c.ErrOrStderr())
	}
}

// leafArgs checks positional arguments once the body has parsed its
// flags (cobra runs Args before the body too, on the raw arguments, when
// flag parsing is left to the body: that call passes).
func leafArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if c.DisableFlagParsing || check == nil {
			return nil
		}
		return check(c, args)
	}
}

// groupRun answers a group without a verb (help, exit 2) or with an
// unknown one (cobra's suggestion, exit 2).
func groupRun(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		c.SetOut(c.ErrOrStderr())
		c.Usage()
		return errUsage
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	fmt.Fprintf(c.ErrOrStderr(), "koipond: %s\nRun '%s --help' for usage.\n", msg, c.CommandPath())
	return errUsage
}

// legacyRootArgs is cobra's check of the root's arguments: a word that is
// no command is an unknown command, with suggestions.
func legacyRootArgs(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return fmt.Errorf("%s\nRun 'koipond --help' for usage.", msg)
}

// noArgs refuses positional arguments.
var noArgs = wantArgs(0, 0, "no arguments, only flags")

// wantArgs accepts between lo and hi positional arguments (hi < 0: no
// upper bound); what says what they are, for the error.
func wantArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || (hi >= 0 && len(args) > hi) {
			got := "no arguments"
			if len(args) > 0 {
				got = fmt.Sprintf("%q", args)
			}
			return fmt.Errorf("want %s, got %s", what, got)
		}
		return nil
	}
}
