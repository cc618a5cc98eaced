package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/koipond/koipond/warehouse"
	"github.com/spf13/pflag"
)

// listFlag is a repeatable, comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// timeFlag reads RFC 3339 or a date (midnight UTC).
type timeFlag struct{ t *time.Time }

func (f timeFlag) String() string {
	if f.t == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}
func (f timeFlag) Set(v string) error {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			*f.t = t
			return nil
		}
	}
	return fmt.Errorf("%q is not RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)", v)
}

func warehouseGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "warehouse generate", "warehouse generate --from FILE|DIR|s3://bucket/prefix [--out FILE] [flags]", `
Turn an API usage export from a data warehouse into behavior frequencies:
for each method, the share of active user-minutes in which the user called
it at least once, i.e. the probability that one koi calls it in a given
minute. The result is a behavior file in standard JSON ({"behaviors":
{method: {"frequency": f}}}, most frequent first, beside a "generated"
object saying where it came from: source, rows, window, dropped methods,
tool version) to merge with a sequences file.

Sources: a file, a folder of parts, or every object under s3://bucket/prefix
(AWS credentials and region from the usual chain: environment, shared files,
SSO, roles; --endpoint-url or AWS_ENDPOINT_URL for S3-compatible stores).
Parts may be gzip or zstd compressed (recognised by content). Formats: CSV
with a header, JSON lines, Parquet: by extension, else by content.

Shapes: a raw call log, one row per call (user, method, timestamp as RFC 3339
or epoch s/ms; optionally team, client), or pre-aggregated rows (method,
user_minutes, active_user_minutes). Rename columns with the --*-column flags.

Counting is exact and runs in bounded memory (--memory): an external sort of
(user, minute, method) keys that spills sorted runs to --tmp-dir.

Sessions (--sessions, raw call logs only): each user's calls, in time order,
are cut into sessions at silences of --session-gap (default 30m); the entry
methods (first calls), first-order transitions between methods with their
probabilities and delays, and the chance a session ends after each method
are learned. The behaviors written are then sessions, one per entry method
("session:<method>", frequency = sessions beginning with it per active
user-minute): the entry call, then "choose" steps that follow the learned
transitions with their probabilities, pausing for delays drawn from the
learned quantiles, up to 6 follow-ups deep (paths fewer than 0.2% of the
sessions take are pruned). Each call uses the method's steps from
--sequences, or a bare api request when it has none (the summary names
them). The per-method frequencies stay in "generated". The summary gives the
coverage: the share of the observed transitions the sessions reproduce.
--drop-transition A>B leaves one out (that share then ends the session).
With --hourly each session behavior gets the hour-of-day profile of its
sessions' beginnings.
The sort shares --memory with the counting.

Examples:
  koipond warehouse generate --from export/ --out frequencies.json
  koipond warehouse generate --from s3://usage/2026-11/ --team T042 \
      --since 2026-11-01 --until 2026-11-08 --sequences sequences.json \
      --hourly --tz Europe/Paris --out frequencies.json
  koipond warehouse generate --from export/ --sessions --sequences sequences.json \
      --drop-transition 'users.info>chat.postMessage' --out sessions.json
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 koipond warehouse generate --from s3://bucket/calls/`, stderr)
	var o warehouse.Options
	var teams, clients, drops listFlag
	var format, shape, unit, tz, out, comma string
	fs.StringVar(&o.From, "from", "", "the export: a file, a folder of parts, or s3://bucket/prefix (required)")
	fs.StringVar(&out, "out", "", "write the frequencies file here, atomically (default: standard output)")
	fs.StringVar(&format, "format", "", "read every part as csv, jsonl or parquet (default: by extension, then content)")
	fs.StringVar(&shape, "shape", "", "raw (one row per call) or aggregated (default: aggregated when the user-minutes columns exist)")
	fs.StringVar(&o.Columns.User, "user-column", "user", "column holding the user id")
	fs.StringVar(&o.Columns.Method, "method-column", "method", "column holding the API method")
	fs.StringVar(&o.Columns.Timestamp, "timestamp-column", "timestamp", "column holding the call time (RFC 3339 or epoch s/ms)")
	fs.StringVar(&o.Columns.Team, "team-column", "team", "column holding the team (for --team)")
	fs.StringVar(&o.Columns.Client, "client-column", "client", "column holding the client type (for --client)")
	fs.StringVar(&o.Columns.UserMinutes, "user-minutes-column", "user_minutes", "aggregated: column with user-minutes having a call of the method")
	fs.StringVar(&o.Columns.ActiveUserMinutes, "active-user-minutes-column", "active_user_minutes", "aggregated: column with active user-minutes")
	fs.StringVar(&comma, "csv-delimiter", "", "CSV field separator, one character or \\t (default , or tab for .tsv)")
	fs.StringVar(&unit, "timestamp-unit", "", "unit of numeric timestamps: s, ms, us or ns (default: by magnitude)")
	fs.Var(&teams, "team", "keep only rows of these teams (comma-separated, repeatable)")
	fs.Var(&clients, "client", "keep only rows of these clients, e.g. desktop,mobile (comma-separated, repeatable)")
	fs.Var(timeFlag{&o.Since}, "since", "keep rows at or after this time (RFC 3339 or a date, UTC)")
	fs.Var(timeFlag{&o.Until}, "until", "keep rows before this time (RFC 3339 or a date, UTC)")
	fs.BoolVar(&o.Hourly, "hourly", false, "also write 24 hour-of-day multipliers per method (mean 1), in --tz")
	fs.StringVar(&tz, "tz", "UTC", "IANA time zone of the --hourly profiles, e.g. America/New_York")
	fs.Float64Var(&o.MinFrequency, "min-frequency", 0, "drop methods below this frequency")
	fs.IntVar(&o.Top, "top", 0, "keep only the N most frequent methods (0: all)")
	fs.StringVar(&o.Sequences, "sequences", "", "a behavior file with sequences: report which methods have none and the share of calls covered")
	fs.BoolVar(&o.SequencedOnly, "sequenced-only", false, "with --sequences: write only methods that have a sequence, so the files merge cleanly")
	fs.BoolVar(&o.Sessions, "sessions", false, "learn sessions (entry methods, transitions, delays) from a raw call log and write them as session behaviors")
	fs.DurationVar(&o.SessionGap, "session-gap", 0, "with --sessions: a silence this long ends a session (default 30m, from 1m to 168h)")
	fs.Var(&drops, "drop-transition", "with --sessions: leave out the transition FROM>TO (comma-separated, repeatable)")
	fs.BoolVar(&o.SkipBadRows, "skip-bad-rows", false, "skip bad rows and report them by reason, instead of stopping at the first")
	fs.StringVar(&o.Region, "region", "", "AWS region of the bucket (default: AWS_REGION / the shared config, else us-east-1)")
	fs.StringVar(&o.EndpointURL, "endpoint-url", "", "S3-compatible endpoint, path-style (default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)")
	fs.BoolVar(&o.VirtualHosted, "virtual-hosted", false, "with an endpoint, address buckets as bucket.host instead of host/bucket")
	memMiB := fs.Int("memory", warehouse.DefaultMemoryBytes>>20, "MiB for the in-memory sort chunk; more spills sorted runs to disk")
	fs.IntVar(&o.MaxLineBytes, "max-line-bytes", warehouse.DefaultMaxLineBytes, "longest CSV or JSON line (and CSV row across quoted newlines) read; a longer one stops the run")
	fs.IntVar(&o.MaxFieldBytes, "max-field-bytes", warehouse.DefaultMaxFieldBytes, "longest value of a column that is read (user, method, timestamp, …); a longer one is a bad row")
	fs.IntVar(&o.MaxRatio, "max-ratio", warehouse.DefaultMaxRatio, "a compressed part may inflate to at most this × its compressed bytes read so far, plus 1 MiB")
	fs.Int64Var(&o.MaxInflatedBytes, "max-inflated-bytes", warehouse.DefaultMaxInflatedBytes, "most bytes one compressed part may inflate to")
	fs.StringVar(&o.TempDir, "tmp-dir", "", "folder for sorted runs and spooled Parquet parts (default: the system temp folder)")
	quiet := fs.Bool("quiet", false, "no progress on standard error")
	asJSON := fs.Bool("json", false, "print the run's summary as JSON on standard output (needs --out)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "koipond warehouse generate: unexpected argument %q (the export is given with --from)\n", fs.Arg(0))
		return errUsage
	}
	if o.From == "" {
		fmt.Fprintln(stderr, "koipond warehouse generate: --from is required")
		return errUsage
	}
	if *asJSON && out == "" {
		fmt.Fprintln(stderr, "koipond warehouse generate: --json needs --out (standard output would hold both)")
		return errUsage
	}
	o.Format, o.Shape, o.TimeUnit = warehouse.Format(format), warehouse.Shape(shape), warehouse.TimeUnit(unit)
	o.Teams, o.Clients, o.DropTransitions = teams, clients, drops
	o.MemoryBytes = int64(*memMiB) << 20
	switch comma {
	case "":
	case `\t`, "tab":
		o.Comma = '\t'
	default:
		r := []rune(comma)
		if len(r) != 1 {
			fmt.Fprintf(stderr, "koipond warehouse generate: --csv-delimiter %q is not one character\n", comma)
			return errUsage
		}
		o.Comma = r[0]
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		fmt.Fprintf(stderr, "koipond warehouse generate: --tz: unknown time zone %q (an IANA name such as Europe/Paris)\n", tz)
		return errUsage
	}
	o.Timezone = loc

	var progress func(warehouse.Progress)
	if !*quiet {
		progress = func(p warehouse.Progress) {
			if p.Phase == "done" || p.Elapsed < 2*time.Second {
				return
			}
			fmt.Fprintf(stderr, "koipond warehouse: %s\n", p)
		}
	}
	o.Tool = "koipond " + version
	res, err := warehouse.Generate(ctx, o, progress)
	if err != nil {
		return err
	}
	if res.Sessions == nil {
		if err := unsequenced(res, o); err != nil {
			return err
		}
	}
	if out == "" {
		if err := res.Encode(stdout); err != nil {
			return err
		}
	} else if err := res.WriteFile(out); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, res)
	}
	summary(stderr, res, out)
	return nil
}

// summary tells what was written, on standard error.
func summary(w io.Writer, r *warehouse.Result, out string) {
	dest := "standard output"
	if out != "" {
		dest = out
	}
	fmt.Fprintf(w, "koipond warehouse: %s from %s of %s (%s) in %v → %s\n",
		plural(len(r.Methods), "method", "methods"), plural(r.Rows.Used, "row", "rows"), r.Source, plural(r.Objects, "part", "parts"), r.Elapsed.Round(time.Millisecond), dest)
	if r.Rows.Skipped > 0 {
		b, _ := json.Marshal(r.Rows.SkippedBy)
		fmt.Fprintf(w, "koipond warehouse: skipped %d bad rows %s; first: %s\n", r.Rows.Skipped, b, r.Rows.Examples[0])
	}
	if r.Rows.Filtered > 0 {
		b, _ := json.Marshal(r.Rows.FilteredBy)
		fmt.Fprintf(w, "koipond warehouse: filtered out %d rows %s\n", r.Rows.Filtered, b)
	}
	if d := r.DropWords(12); d != "" {
		fmt.Fprintf(w, "koipond warehouse: dropped %s\n", d)
	}
	if s := r.Sessions; s != nil {
		kept, written := 0, 0
		for _, t := range s.Transitions {
			if t.Kept {
				kept++
			}
		}
		for _, e := range s.Entries {
			if e.Behavior != "" {
				written++
			}
		}
		fmt.Fprintf(w, "koipond warehouse: sessions (gap %v): %s of %s, %s, %s learned (%d kept), %s written; coverage %.1f%% of %s, %.1f%% of the calls\n",
			s.Gap, plural(s.Count, "session", "sessions"), plural(s.Users, "user", "users"), plural(len(s.Entries), "entry method", "entry methods"),
			plural(len(s.Transitions), "transition", "transitions"), kept, plural(written, "session behavior", "session behaviors"),
			100*s.Coverage, plural(s.TransitionCount, "observed transition", "observed transitions"), 100*s.CallShare)
		for _, n := range s.Notes {
			fmt.Fprintf(w, "koipond warehouse: note: %s\n", n)
		}
	}
	if c := r.Coverage; c != nil && r.Sessions == nil {
		fmt.Fprintf(w, "koipond warehouse: coverage vs %s: %.1f%% of calls; %d written methods without a sequence",
			c.File, 100*c.Share, len(c.Missing))
		if len(c.Missing) > 0 {
			m := c.Missing
			if len(m) > 10 {
				m = append(m[:10:10], "…")
			}
			fmt.Fprintf(w, ": %s", strings.Join(m, ", "))
		}
		fmt.Fprintln(w)
	}
}

// unsequenced refuses a result that would not load beside its --sequences
// file: written methods without a sequence are an error there. It names
// them and what --sequenced-only would keep.
func unsequenced(r *warehouse.Result, o warehouse.Options) error {
	c := r.Coverage
	if c == nil || o.SequencedOnly || len(c.Missing) == 0 {
		return nil
	}
	var missingCalls int64
	missing := map[string]bool{}
	for _, n := range c.Missing {
		missing[n] = true
	}
	for _, m := range r.Methods {
		if missing[m.Name] {
			missingCalls += m.Calls
		}
	}
	names := c.Missing
	if len(names) > 12 {
		names = append(names[:12:12], fmt.Sprintf("and %d more", len(c.Missing)-12))
	}
	share := func(n int64) float64 {
		if r.TotalCalls == 0 {
			return 0
		}
		return 100 * float64(n) / float64(r.TotalCalls)
	}
	kept := len(r.Methods) - len(c.Missing)
	return fmt.Errorf("nothing written: %d of %d methods have no sequence in %s, so the frequencies would not load beside it: %s (%.1f%% of calls); "+
		"add --sequenced-only to write only the %d methods that have one (%.1f%% of calls), or write sequences for these",
		len(c.Missing), len(r.Methods), c.File, strings.Join(names, ", "), share(missingCalls), kept, share(c.CoveredCalls))
}

var _ pflag.Value = (*listFlag)(nil)
