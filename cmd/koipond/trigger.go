package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/koipond/koipond/keeper/api"
)

func triggerAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "trigger add", "trigger add NAME --file SPEC.json --secret-file F [--replace]", `
Add (or with --replace, replace) an event trigger. SPEC.json holds
{"actions": [...]}: each action has "match" labels and either "run" (a run
spec whose strings are Go templates over the call's payload, e.g.
"name": "deploy-{{.labels.service}}-{{.labels.version}}") or "launch"
({"formation", "run_labels", "at_secs", "params"}). Calls to
POST /api/v1/triggers/NAME must be signed with the secret (see
'koipond trigger fire' and README, "Signatures").`, stderr)
	cf := addClientFlags(fs)
	file := fs.String("file", "", "trigger spec `file` (JSON)")
	secretFile := fs.String("secret-file", "", "`file` holding the secret callers sign with (required for a new trigger)")
	replace := fs.Bool("replace", false, "replace the trigger if it exists (keeps its secret without --secret-file)")
	pos, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	if *file == "" {
		fmt.Fprintln(stderr, "koipond trigger add: --file SPEC.json is required")
		return errUsage
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("reading the trigger spec: %w", err)
	}
	var spec api.TriggerSpec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	if spec.Name != "" && spec.Name != pos[0] {
		return fmt.Errorf("%s names the trigger %q, the command %q", *file, spec.Name, pos[0])
	}
	spec.Name = pos[0]
	if *secretFile != "" {
		s, err := readSecret(*secretFile)
		if err != nil {
			return err
		}
		spec.Secret = &s
	}
	method, path := "POST", "/api/v1/triggers"
	if *replace {
		method, path = "PUT", "/api/v1/triggers/"+url.PathEscape(spec.Name)
	}
	var raw json.RawMessage
	if err := cf.call(ctx, method, path, spec, &raw); err != nil {
		return err
	}
	return cf.show(stdout, raw, func() {
		fmt.Fprintf(stdout, "trigger %s: %s; callers POST %s/api/v1/triggers/%s signed with the secret\n",
			spec.Name, plural(len(spec.Actions), "action", "actions"), strings.TrimSuffix(cf.keeper, "/"), url.PathEscape(spec.Name))
	})
}

func triggerList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "trigger list", "trigger list [--json]", "List triggers with their accepted and refused calls since the keeper started.", stderr)
	cf := addClientFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cf.call(ctx, "GET", "/api/v1/triggers", nil, &raw); err != nil {
		return err
	}
	var ts []api.TriggerView
	if err := json.Unmarshal(raw, &ts); err != nil {
		return err
	}
	return cf.show(stdout, raw, func() {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tACTIONS\tACCEPTED\tREFUSED\tUPDATED")
		for _, t := range ts {
			var refused []string
			for _, r := range sortedReasons(t.Refused) {
				refused = append(refused, fmt.Sprintf("%s=%d", r, t.Refused[r]))
			}
			if len(refused) == 0 {
				refused = []string{"-"}
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", t.Name, len(t.Actions), t.Accepted, strings.Join(refused, ","), t.UpdatedAt.Local().Format(time.DateTime))
		}
		tw.Flush()
	})
}

func sortedReasons(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func triggerFire(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "trigger fire", "trigger fire NAME --secret-file F [--label k=v]… [--event deploy] [--field k=v]…", `
Sign and send a trigger call, as a deploy pipeline would: the body is
{"event": EVENT, "labels": {...}, FIELD: VALUE...}, signed with
HMAC-SHA256(secret, timestamp + "." + body). Prints what the call started;
exits 1 when the keeper refused it or an action could not be done. Needs
no API token.`, stderr)
	cf := addClientFlags(fs)
	secretFile := fs.String("secret-file", "", "`file` holding the trigger's secret")
	event := fs.String("event", "deploy", "event `NAME` sent in the payload")
	labels, fields := keyValues{}, keyValues{}
	fs.Var(labels, "label", "payload label `key=value` (repeatable)")
	fs.Var(fields, "field", "extra payload field `key=value` for templates (repeatable)")
	pos, err := parseMixed(fs, args)
	if err != nil {
		return err
	}
	if *secretFile == "" {
		fmt.Fprintln(stderr, "koipond trigger fire: --secret-file F is required")
		return errUsage
	}
	secret, err := readSecret(*secretFile)
	if err != nil {
		return err
	}
	payload := map[string]any{}
	for k, v := range fields {
		payload[k] = v
	}
	payload["event"], payload["labels"] = *event, map[string]string(labels)
	body, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	header := http.Header{}
	header.Set(api.HeaderTimestamp, strconv.FormatInt(ts, 10))
	header.Set(api.HeaderSignature, api.Sign(secret, ts, body))
	// 422: the call was taken but an action could not be done; the answer
	// says which.
	data, err := cf.send(ctx, "POST", "/api/v1/triggers/"+url.PathEscape(pos[0]), body, header,
		func(status int) bool { return status == http.StatusUnprocessableEntity })
	if err != nil {
		return err
	}
	var res api.TriggerResult
	if err := json.Unmarshal(data, &res); err != nil {
		return fmt.Errorf("decoding the keeper's answer: %w", err)
	}
	if err := cf.show(stdout, json.RawMessage(data), func() {
		fmt.Fprintf(stdout, "trigger %s: matched actions %v\n", res.Trigger, res.Matched)
		for _, r := range res.Runs {
			fmt.Fprintf(stdout, "  started run %s %q\n", r.ID, r.Name)
		}
		for _, l := range res.Launches {
			fmt.Fprintf(stdout, "  launch %s on run %s at %s\n", l.ID, l.Run, l.Start.Local().Format(time.RFC3339))
		}
		for _, e := range res.Errors {
			fmt.Fprintf(stdout, "  action %d not done: %s %s\n", e.Action, e.Field, e.Message)
		}
		if res.Note != "" {
			fmt.Fprintf(stdout, "  %s\n", res.Note)
		}
	}); err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		return exitError{1}
	}
	return nil
}
