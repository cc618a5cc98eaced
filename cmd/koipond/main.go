// Command koipond is the one koipond binary: every role (demo, pond target,
// validators, and later keeper and school) is a subcommand.
//
// main wires signals and the exit code only; each subcommand lives in its own
// file and turns its flags into a package Config.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// errUsage marks an error already explained to the user (a wrong flag,
// command or argument); the exit code is 2 and nothing more is printed.
var errUsage = errors.New("usage")

// exitError carries an exit code chosen by a subcommand (for example 1 when a
// validator found problems) after it has printed its own report.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	stopHeapSampling()
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

// exitCode maps run's error to the process exit code (see exitcodes.go)
// and prints what the command has not printed itself.
func exitCode(err error, stderr io.Writer) int {
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errUnavailable):
		fmt.Fprintf(stderr, "koipond: %v\n", err)
		return exitUnavailable
	default:
		fmt.Fprintf(stderr, "koipond: %v\n", err)
		return exitFailed
	}
}

// run parses args against the command tree and runs the command they
// name. Flags may come anywhere after the command's path; old single-dash
// long flags (-keeper URL) are read as --keeper. Tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var entered bool
	root, err := newTree(ctx, stdout, stderr, &entered)
	if err != nil {
		return err
	}
	args = normalizeArgs(root, append([]string{}, args...))
	if len(args) > 0 && strings.HasPrefix(args[0], "__complete") {
		plainFlagUsage(root) // shell completion shows usages as they are
	}
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	if err != nil && !entered && !errors.Is(err, errUsage) && !errors.Is(err, pflag.ErrHelp) {
		// cobra's own refusal: an unknown command or flag, a wrong count
		// of arguments for a group.
		fmt.Fprintf(stderr, "koipond: %v\n", err)
		return errUsage
	}
	return err
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
