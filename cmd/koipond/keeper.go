package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/ui"
)

func runKeeper(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "keeper", "keeper [--http ADDR] [--nats URL | --nats-listen ADDR] [--data DIR] [--tokens FILE]", `
Run the keeper: the source of truth for behavior sets, formations, runs and
launches, the scheduler that spreads koi over schools, the global switch,
and the HTTP API under /api/v1. By default it embeds a NATS server with
JetStream (its files under --data); --nats uses an external cluster.
State lives in a JetStream KV bucket: a restart loses nothing.

Listening beyond loopback needs API tokens (--tokens FILE, lines of
NAME ROLE TOKEN with ROLE viewer, operator or admin). Without tokens the
API answers only to loopback names and its own pages; with them, /metrics
needs a viewer token too unless --metrics-public.

NATS authentication is on by default, loopback included: at first start
the keeper creates nkeys in DIR/nats (0600, reused at every start) and
prints how to start a school with them (--nats-nkey DIR/nats/school.nk).
Schools may only poll, fetch blobs, report metrics and hear the switch,
which the keeper signs. --nats-insecure turns authentication off (loopback
only). With --nats URL the keeper presents --nats-user (password in
KOIPOND_NATS_PASSWORD), --nats-nkey, --nats-creds or KOIPOND_NATS_TOKEN.`, stderr)
	var cfg keeper.Config
	fs.StringVar(&cfg.HTTP, "http", keeper.DefaultHTTP, "API listen `address`")
	fs.StringVar(&cfg.NATS, "nats", "", "external NATS `URL` (default: embedded server)")
	fs.StringVar(&cfg.NATSListen, "nats-listen", keeper.DefaultNATSListen, "embedded NATS listen `address`")
	fs.StringVar(&cfg.DataDir, "data", keeper.DefaultDataDir, "`directory` of the embedded server's JetStream files, the NATS credentials and the runs' metrics history (an unlinked file: disk, not memory)")
	fs.StringVar(&cfg.Bucket, "bucket", keeper.DefaultBucket, "JetStream KV `bucket` holding the state")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "KV bucket replicas (the cluster size on an external cluster)")
	fs.StringVar(&cfg.TokensFile, "tokens", "", "API tokens `file`")
	fs.StringVar(&cfg.WarehouseDir, "warehouse-dir", "", "`folder` under which the API may read local warehouse exports (s3:// is always allowed)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "the keeper's `URL` as people reach it, for links in notifications (default http://ADDR of --http)")
	fs.BoolVar(&cfg.MetricsPublic, "metrics-public", false, "serve /metrics without a token even with --tokens (default: a viewer token is needed)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof/ (profiling) on --http; with --tokens it needs an admin token. Heap allocations are sampled for the heap profile only with it")
	fs.DurationVar(&cfg.PollInterval, "poll", keeper.DefaultPollInterval, "school poll interval")
	fs.DurationVar(&cfg.Lease, "lease", keeper.DefaultLease, "school lease")
	fs.DurationVar(&cfg.StartupTimeout, "startup-timeout", keeper.DefaultStartupTimeout, "how long to wait at start for NATS JetStream to serve the state bucket (a new cluster elects its leaders first)")
	fs.BoolVar(&cfg.NATSAuth.Insecure, "nats-insecure", false, "turn NATS authentication off on the embedded server (loopback only; any local process can then stop or spoof the switch)")
	fs.StringVar(&cfg.NATSAuth.User, "nats-user", "", "with --nats: NATS user (password in KOIPOND_NATS_PASSWORD)")
	fs.StringVar(&cfg.NATSAuth.NKeySeedFile, "nats-nkey", "", "with --nats: NATS nkey seed `file`")
	fs.StringVar(&cfg.NATSAuth.CredsFile, "nats-creds", "", "with --nats: NATS credentials `file`")
	fs.StringVar(&cfg.NATSAuth.SwitchKeySeedFile, "keeper-key-seed", "", "nkey seed `file` to sign the switch with (default DIR/nats/control.nk, created at first start)")
	gcPct := gcPercentFlag(fs, defaultKeeperGCPercent)
	verbose := fs.BoolP("verbose", "v", false, "log debug detail")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "koipond keeper: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	restore, err := applyGCPercent(fs, *gcPct)
	if err != nil {
		return configErrors(stderr, "keeper", []error{err})
	}
	defer restore()
	if cfg.NATS != "" { // the embedded server uses its own keys
		cfg.NATSToken = os.Getenv("KOIPOND_NATS_TOKEN")
		cfg.NATSAuth.Password = os.Getenv("KOIPOND_NATS_PASSWORD")
	}
	cfg.UI = ui.Handler()
	cfg.Logger = serverLogger(stderr, *verbose)
	if errs := cfg.Validate(); len(errs) > 0 {
		return configErrors(stderr, "keeper", errs)
	}
	if cfg.Pprof {
		sampleHeapForProfiles()
	}
	k, err := api.Open(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keeper: UI http://%s/, API http://%s/api/v1, NATS %s\n", k.HTTPAddr(), k.HTTPAddr(), k.NATSURL())
	for _, l := range k.SchoolHowTo() {
		fmt.Fprintln(stdout, "keeper: "+l)
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "keeper: shutting down")
	return k.Close()
}
