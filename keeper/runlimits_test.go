package keeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// manyLabels returns n labels of 190-byte values.
func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%05d", i)] = strings.Repeat("v", 190)
	}
	return m
}

// tokensOf returns tokens of 64 bytes, about total bytes of them.
func tokensOf(total int) []string {
	out := make([]string, total/64)
	for i := range out {
		out[i] = fmt.Sprintf("xoxp-%d-%s", i, strings.Repeat("x", 64))[:64]
	}
	return out
}

// Every field a caller fills in a run is bounded, and the error names the
// field and the limit: a run's record is one NATS message for its whole
// life, so nothing in it may grow with what a caller sends.
func TestRunSpecBoundsWhatARunCarries(t *testing.T) {
	conds := func(keys, per int) map[string][]string {
		m := map[string][]string{}
		for i := range keys {
			m["api:m"+strconv.Itoa(i)] = nOf(per, "p95 < 300ms")
		}
		return m
	}
	rule := state.GuardrailRule{Key: "api:*", When: "p95 > 5s", For: "5m", Action: "pause"}
	for _, tc := range []struct {
		name   string
		mut    func(*RunSpec)
		field  string
		within string // in the message: the limit
	}{
		// The reviewer's run: 5,165 labels of 190 bytes, 1 MiB of spec.
		{"labels by the thousand", func(s *RunSpec) { s.Labels = manyLabels(5165) }, "labels", "at most 64"},
		{"one label too many", func(s *RunSpec) { s.Labels = manyLabels(MaxRunLabels + 1) }, "labels", "at most 64"},
		// A condition padded with spaces parses, and is stored as written.
		{"a padded threshold", func(s *RunSpec) {
			s.Thresholds = map[string][]string{"api:x": {"p95" + strings.Repeat(" ", 300) + "< 300ms"}}
		}, `thresholds["api:x"][0]`, "at most 200"},
		{"thresholds over every key", func(s *RunSpec) { s.Thresholds = conds(11, 20) }, "thresholds", "220 conditions in all; at most 200"},
		{"a padded guardrail condition", func(s *RunSpec) {
			r := rule
			r.When = "p95" + strings.Repeat(" ", 300) + "> 5s"
			s.Guardrails = []state.GuardrailRule{r}
		}, "guardrails[0].when", "at most 200"},
		{"a padded guardrail duration", func(s *RunSpec) {
			r := rule
			r.For = strings.Repeat("0", 100) + "5m"
			s.Guardrails = []state.GuardrailRule{r}
		}, "guardrails[0].for", "at most 64"},
		{"a long owner", func(s *RunSpec) { s.Owner = strings.Repeat("o", 201) }, "owner", "at most 200"},
		// Schools refuse longer templates in a run spec; a comment
		// renders to nothing, so the render bound does not see it.
		{"a long token template", func(s *RunSpec) { s.Target.Token = "{{/* " + strings.Repeat("t", wire.MaxTemplate) + " */}}xoxp" }, "target.token", "at most 8192"},
		{"a long token", func(s *RunSpec) { s.Target.Tokens = []string{"a", strings.Repeat("t", wire.MaxTemplate+1)} }, "target.tokens[1]", "at most 8192"},
		// Before, a URL past the bound was stored, and every school
		// refused the run's assignment.
		{"a long api_base", func(s *RunSpec) { s.Target.APIBase = "http://127.0.0.1:9090/" + strings.Repeat("a", wire.MaxTemplate) }, "target.api_base", "at most 8192"},
		{"a long websocket_url", func(s *RunSpec) {
			s.Target.WebsocketURL = "ws://127.0.0.1:9090/" + strings.Repeat("w", wire.MaxTemplate)
		}, "target.websocket_url", "at most 8192"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := RunSpec{Name: "r", BehaviorSet: "bg", Koi: 1, Target: state.Target{APIBase: "http://127.0.0.1:9090/api"}}
			tc.mut(&s)
			err := s.check()
			if err == nil || err.Code != CodeInvalid || err.Field != tc.field || !strings.Contains(err.Message, tc.within) {
				t.Fatalf("check = %v, want invalid on %s saying %q", err, tc.field, tc.within)
			}
		})
	}
	// At the bounds, a run is fine.
	s := RunSpec{Name: "r", BehaviorSet: "bg", Koi: 1, Target: state.Target{APIBase: "http://127.0.0.1:9090/api"},
		Labels: manyLabels(MaxRunLabels), Thresholds: conds(10, 20), Guardrails: []state.GuardrailRule{rule}}
	if err := s.check(); err != nil {
		t.Errorf("a run at the bounds: %v", err)
	}
}

func nOf(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Against a NATS of 1 MiB payloads (nats-server's default), a run whose
// record would leave less than RunRecordHeadroom free under the payload
// is refused at creation, naming its largest field and the limits; one
// within it is stored. Before, a record a few hundred bytes under the
// payload was stored, and its stop could never be.
func TestCreateRunLeavesHeadroomUnderThePayload(t *testing.T) {
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{})
	ctx := context.Background()
	k, err := OpenWithAPI(ctx, Config{HTTP: "127.0.0.1:0", NATS: ns.URL, DataDir: t.TempDir(),
		PollInterval: testPoll, Lease: testLease, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if mp := k.conn().MaxPayload(); mp != 1<<20 {
		t.Fatalf("max payload %d, want nats-server's default 1 MiB", mp)
	}
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	spec := func(tokens []string) RunSpec {
		return RunSpec{Name: "big", BehaviorSet: "bg", Koi: 1, DurationSecs: 1,
			Target: state.Target{APIBase: "http://127.0.0.1:9090/api", Tokens: tokens}}
	}
	// ~1,000,000 bytes of tokens: under the payload, within the headroom.
	_, err = k.CreateRun(ctx, "test", spec(tokensOf(1_000_000)))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTooLarge || e.Field != "target.tokens" ||
		!strings.Contains(e.Message, "65536") || !strings.Contains(e.Message, "1048576") {
		t.Errorf("a run of 1 MB of tokens: %v; want too_large on target.tokens naming the headroom and max_payload", err)
	}
	// The reviewer's run: its labels are refused before the size is.
	s := spec(nil)
	s.Labels = manyLabels(5165)
	if _, err := k.CreateRun(ctx, "test", s); !errors.As(err, &e) || e.Code != CodeInvalid || e.Field != "labels" {
		t.Errorf("a run of 5,165 labels: %v; want invalid on labels", err)
	}
	for _, r := range k.State().Runs(nil) {
		t.Errorf("run %s (%s) stored", r.ID, r.Name)
	}
	// 900 KB of tokens fit with the headroom to spare.
	if _, err := k.CreateRun(ctx, "test", spec(tokensOf(900_000))); err != nil {
		t.Errorf("a run of 900 KB of tokens: %v", err)
	}
}
