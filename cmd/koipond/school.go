package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/school"
)

func runSchool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "school", "school [flags]", `
Run a school: a worker that polls the keeper over NATS for work and runs up
to --capacity koi, ramping them up gradually. It obeys the keeper's switch
(pause/resume/stop) within a second, pauses itself if it cannot reach the
keeper for the lease, and publishes metrics every second. Load only goes to
--allow-target hosts (default: this machine). SIGTERM/Ctrl-C stops every
koi, closes websockets with a close frame and exits within 5 seconds.`, stderr)
	var cfg school.Config
	fs.StringVar(&cfg.NATSURL, "nats", school.DefaultNATSURL, "NATS server URL(s), comma-separated")
	fs.StringVar(&cfg.ID, "id", "", "school id (default: host-pid-random)")
	fs.IntVar(&cfg.Capacity, "capacity", school.DefaultCapacity, "most koi this school runs")
	allow := fs.String("allow-target", strings.Join(school.DefaultAllowTargets, ","), "comma-separated hosts load may go to: CIDR, IP, name, *.domain, each optionally :port")
	sources := fs.String("source-ips", "", "comma-separated local addresses to spread koi connections over (past ~28,000 per target)")
	fs.IntVar(&cfg.MaxConnsPerHost, "max-conns-per-host", 0, "cap on API connections per target host (0: none)")
	fire := fs.Duration("fire-granularity", koi.DefaultFireGranularity, "background firings start on a grid of this step (at most 1/100 of a behavior minute), up to one step late, so the school wakes once for many koi: less CPU per request, small bursts at the target; 0: each at its own time")
	fs.StringVar(&cfg.NATSUser, "nats-user", "", "NATS user")
	fs.StringVar(&cfg.NATSPassword, "nats-password", "", "NATS password (prefer KOIPOND_NATS_PASSWORD)")
	fs.StringVar(&cfg.NATSToken, "nats-token", "", "NATS token (prefer KOIPOND_NATS_TOKEN: flags show in process lists)")
	fs.StringVar(&cfg.NATSNKeySeedFile, "nats-nkey", os.Getenv("KOIPOND_NATS_NKEY"), "NATS nkey seed `file` (default $KOIPOND_NATS_NKEY): the keeper's DATA/nats/school.nk, which also pins the keeper's switch key")
	fs.StringVar(&cfg.KeeperKey, "keeper-key", os.Getenv("KOIPOND_KEEPER_KEY"), "the keeper's public switch `key` (U…, default $KOIPOND_KEEPER_KEY); only switches it signed are applied (default: the key in --nats-nkey's file, else the keeper's poll replies)")
	fs.StringVar(&cfg.NATSCredsFile, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&cfg.TLSCAFile, "tls-ca", "", "CA certificate for NATS TLS")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "client certificate for NATS TLS")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "client key for NATS TLS")
	memLimit := fs.String("memory-limit", "", "memory ceiling, e.g. 2GiB (default: 90% of the container's cgroup limit, else half the RAM); near it the school closes the koi of the run using the most memory")
	replyBudget := fs.String("reply-budget", "", "bytes all koi may hold in replies being read and decoded (default: a quarter of --memory-limit)")
	httpAddr := fs.String("http", "", "serve /healthz and /metrics on this address (e.g. 127.0.0.1:9100)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof/ on --http (profiling). Heap allocations are sampled for the heap profile only with it")
	verbose := fs.BoolP("verbose", "v", false, "log debug detail")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *fire < 0:
		return configErrors(stderr, "school", []error{fmt.Errorf("--fire-granularity %v: negative (0 starts each firing at its own time)", *fire)})
	case *fire == 0:
		cfg.FireGranularity = -1
	default:
		cfg.FireGranularity = *fire
	}
	if cfg.NATSPassword == "" {
		cfg.NATSPassword = envOr("KOIPOND_NATS_PASSWORD", "")
	}
	if cfg.NATSToken == "" {
		cfg.NATSToken = envOr("KOIPOND_NATS_TOKEN", "")
	}
	for flag, v := range map[string]struct {
		s   string
		dst *int64
	}{"--memory-limit": {*memLimit, &cfg.MemoryLimit}, "--reply-budget": {*replyBudget, &cfg.ReplyBudget}} {
		if v.s == "" {
			continue
		}
		n, err := school.ParseBytes(v.s)
		if err != nil {
			return configErrors(stderr, "school", []error{fmt.Errorf("%s: %w", flag, err)})
		}
		*v.dst = n
	}
	cfg.AllowTargets = splitList(*allow)
	cfg.SourceIPs = splitList(*sources)
	cfg.Software = version
	cfg.Logger = serverLogger(stderr, *verbose)
	if errs := cfg.Validate(); len(errs) > 0 {
		return configErrors(stderr, "school", errs)
	}
	if cfg.Pprof {
		sampleHeapForProfiles()
	}
	s, err := school.Open(ctx, cfg)
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		addr, err := s.ServeHTTP(*httpAddr)
		if err != nil {
			s.Close()
			return err
		}
		cfg.Logger.Info("status server listening", "healthz", "http://"+addr.String()+"/healthz", "metrics", "http://"+addr.String()+"/metrics")
	}
	<-ctx.Done()
	return s.Close()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
