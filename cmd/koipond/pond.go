package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/koipond/koipond/pond"
	"github.com/spf13/pflag"
)

// pondListFlag collects a repeatable string flag.
type pondListFlag []string

func (l *pondListFlag) String() string     { return strings.Join(*l, " ") }
func (l *pondListFlag) Set(v string) error { *l = append(*l, v); return nil }

// runPond serves the pond target app until ctx is done.
func runPond(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "pond", "pond [flags]", `
Serve pond, the Slack-like target app koi swim in: a generated workspace,
a Slack-style web API under /api/{method}, websockets with fan-out, rate
limits, slow-consumer drops, /stats, /metrics and /healthz.

User i's token is xoxp-pond-<i> unless --token-secret or --tokens is given;
its id is U<i in six digits>. Rate limits: --rate-limit METHOD|tierN=N/DUR
(repeatable, "off" for none), --no-rate-limits for none at all. Faults:
--inject METHOD=latency:200ms,error:0.05 (repeatable, METHOD may be *).`, stderr)
	addr := fs.String("http", "127.0.0.1:9090", "address pond serves its API and websockets on")
	allowRemote := fs.Bool("allow-remote", false, "allow listening on a non-loopback address")
	users := fs.Int("users", pond.DefaultUsers, "users in the workspace")
	channels := fs.Int("channels", pond.DefaultChannels, "channels, including #general and #announcements")
	history := fs.Int("history", pond.DefaultHistoryPerChannel, "messages each channel starts with")
	historyCap := fs.Int("history-cap", pond.DefaultHistoryCap, "messages kept per channel")
	seed := fs.Uint64("seed", pond.DefaultSeed, "workspace generation seed")
	secret := fs.String("token-secret", "", "derive tokens with HMAC-SHA256 from this secret")
	tokensFile := fs.String("tokens", "", "file of tokens, one per line, line i = user i (sets --users to the line count unless given)")
	noLimits := fs.Bool("no-rate-limits", false, "turn every rate limit off")
	var limits, injects pondListFlag
	fs.Var(&limits, "rate-limit", "per-token limit METHOD=N/DUR or tierN=N/DUR (repeatable)")
	fs.Var(&injects, "inject", "fault METHOD=latency:DUR,error:P (repeatable)")
	sendQueue := fs.Int("send-queue", pond.DefaultSendQueue, "events queued per websocket before it is dropped as a slow consumer")
	writeTimeout := fs.Duration("write-timeout", pond.DefaultWriteTimeout, "websocket write timeout (slow consumer)")
	pingInterval := fs.Duration("ping-interval", pond.DefaultPingInterval, "websocket ping interval (negative: off)")
	verbose := fs.BoolP("verbose", "v", false, "log every slow-consumer drop")
	pprof := fs.Bool("pprof", false, "serve /debug/pprof/ (profiling). Heap allocations are sampled for the heap profile only with it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "koipond pond: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if !*allowRemote {
		if err := checkPondLoopback(*addr); err != nil {
			return err
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg := pond.Config{
		Addr: *addr, Users: *users, Channels: *channels, HistoryPerChannel: *history,
		HistoryCap: *historyCap, Seed: *seed, TokenSecret: *secret,
		DisableRateLimits: *noLimits, SendQueue: *sendQueue, WriteTimeout: *writeTimeout,
		PingInterval: *pingInterval, Pprof: *pprof,
		Logger: newLogger(stderr, level),
	}
	if *history == 0 {
		cfg.HistoryPerChannel = -1
	}
	if *tokensFile != "" {
		toks, err := readPondTokens(*tokensFile)
		if err != nil {
			return err
		}
		cfg.Tokens = toks
		usersSet := false
		fs.Visit(func(f *pflag.Flag) { usersSet = usersSet || f.Name == "users" })
		if !usersSet {
			cfg.Users = len(toks) // one user per token unless told otherwise
			*users = len(toks)
		}
	}
	for _, l := range limits {
		k, r, err := pond.ParseRateLimit(l)
		if err != nil {
			return fmt.Errorf("--rate-limit: %w", err)
		}
		if cfg.RateLimits == nil {
			cfg.RateLimits = map[string]pond.Rate{}
		}
		cfg.RateLimits[k] = r
	}
	for _, in := range injects {
		m, f, err := pond.ParseInject(in)
		if err != nil {
			return fmt.Errorf("--inject: %w", err)
		}
		if cfg.Inject == nil {
			cfg.Inject = map[string]pond.Fault{}
		}
		cfg.Inject[m] = f
	}
	if *users < 1 || *channels < 2 {
		return fmt.Errorf("pond: --users must be ≥ 1 and --channels ≥ 2 (got %d and %d)", *users, *channels)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		return errors.Join(errs...)
	}
	if cfg.Pprof {
		sampleHeapForProfiles()
	}
	srv, err := pond.Open(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pond listening on %s (api %s/api/, stats %s/stats), %d users, %d channels\n",
		srv.Addr(), srv.URL(), srv.URL(), *users, *channels)
	<-ctx.Done()
	return srv.Close()
}

// checkPondLoopback refuses a listen address that is not on loopback.
func checkPondLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--http %q is not a loopback address; pass --allow-remote to serve beyond this machine", addr)
	}
	return nil
}

// readPondTokens reads one token per line: line i is user i's token.
// Trailing empty lines are ignored; an empty line inside is an error
// (reported by Config.Validate).
func readPondTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("reading tokens: %s has no tokens", path)
	}
	return lines, nil
}
