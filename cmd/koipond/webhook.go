package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/keeper/api"
	"github.com/spf13/pflag"
)

// parseMixed parses flags given before, between or after positional
// arguments (koipond webhook add NAME URL --format slack) and returns the
// positional ones, whose count the command's Args checked.
func parseMixed(fs *pflag.FlagSet, args []string) ([]string, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// readSecret reads a secret from a file, without surrounding whitespace.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("the secret file %s is empty", path)
	}
	return s, nil
}

func webhookAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "webhook add", "webhook add NAME URL [--format json|slack] [--kinds run.*,guardrail.fired] [--secret-file F] [--label k=v]…", `
Add (or with --replace, replace) a webhook: the keeper POSTs notices to URL
(run started, paused, resumed, stopped and ended with the threshold
verdict, switch changes, guardrail actions, trigger calls) as JSON or as a
Slack incoming-webhook message. With a secret each delivery carries
X-Koipond-Timestamp and X-Koipond-Signature (see README, "Signatures").
--label limits run notices to runs carrying every label.`, stderr)
	cf := addClientFlags(fs)
	format := fs.String("format", "json", "payload `format`: json or slack")
	kinds := fs.String("kinds", "", "comma-separated notice `kinds` or globs (default: all)")
	secretFile := fs.String("secret-file", "", "`file` holding the signing secret")
	replace := fs.Bool("replace", false, "replace the webhook if it exists")
	labels := keyValues{}
	fs.Var(labels, "label", "only runs with this `key=value` label (repeatable)")
	pos, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	spec := api.WebhookSpec{Name: pos[0], URL: pos[1], Format: *format}
	if *kinds != "" {
		for _, k := range strings.Split(*kinds, ",") {
			spec.Kinds = append(spec.Kinds, strings.TrimSpace(k))
		}
	}
	if len(labels) > 0 {
		spec.Labels = labels
	}
	if *secretFile != "" {
		s, err := readSecret(*secretFile)
		if err != nil {
			return err
		}
		spec.Secret = &s
	}
	method, path := "POST", "/api/v1/webhooks"
	if *replace {
		method, path = "PUT", "/api/v1/webhooks/"+url.PathEscape(spec.Name)
	}
	var raw json.RawMessage
	if err := cf.call(ctx, method, path, spec, &raw); err != nil {
		return err
	}
	var v api.WebhookView
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return cf.show(stdout, raw, func() {
		fmt.Fprintf(stdout, "webhook %s: %s %s, kinds %s, signed %v\n", v.Name, v.Format, v.URL, kindsText(v.Kinds), v.Signed)
	})
}

func kindsText(k []string) string {
	if len(k) == 0 {
		return "all"
	}
	return strings.Join(k, ",")
}

func webhookList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "webhook list", "webhook list [--json]", "List webhooks with their delivery status since the keeper started.", stderr)
	cf := addClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "GET", "/api/v1/webhooks", nil, &raw); err != nil {
		return err
	}
	var hooks []api.WebhookView
	if err := json.Unmarshal(raw, &hooks); err != nil {
		return err
	}
	return cf.show(stdout, raw, func() {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tFORMAT\tKINDS\tURL\tDELIVERED\tFAILED\tDROPPED\tQUEUED\tLAST SUCCESS\tLAST ERROR")
		for _, h := range hooks {
			s := h.Status
			ok := "-"
			if !s.LastSuccess.IsZero() {
				ok = s.LastSuccess.Local().Format(time.DateTime)
			}
			last := "-"
			if s.LastError != "" {
				last = s.LastErrorAt.Local().Format(time.DateTime) + " " + s.LastError
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", h.Name, h.Format, kindsText(h.Kinds), h.URL,
				s.Delivered, s.Failed, s.Dropped, s.Queued, ok, last)
		}
		tw.Flush()
	})
}

// removeNamed is the rm verb of a named API collection (webhooks,
// triggers): DELETE /api/v1/COLLECTION/NAME.
func removeNamed(noun, collection, help string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(ctx, noun+" rm", noun+" rm NAME", help, stderr)
		cf := addClientFlags(fs)
		pos, err := parseMixed(fs, args)
		if err != nil {
			return err
		}
		if err := cf.call(ctx, "DELETE", "/api/v1/"+collection+"/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s removed\n", noun, pos[0])
		return nil
	}
}

func webhookTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "webhook test", "webhook test NAME", `
Send a test notice to a webhook now (one attempt) and print the outcome;
exits 1 when it was not delivered.`, stderr)
	cf := addClientFlags(fs)
	pos, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "POST", "/api/v1/webhooks/"+url.PathEscape(pos[0])+"/test", nil, &raw); err != nil {
		return err
	}
	var a api.DeliveryAttempt
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	if err := cf.show(stdout, raw, func() {
		if a.Result == "delivered" {
			fmt.Fprintf(stdout, "delivered: HTTP %d in %.0f ms\n", a.Status, a.DurationMS)
		} else {
			fmt.Fprintf(stdout, "not delivered after %.0f ms: %s\n", a.DurationMS, a.Error)
		}
	}); err != nil {
		return err
	}
	if a.Result != "delivered" {
		return exitError{1}
	}
	return nil
}
