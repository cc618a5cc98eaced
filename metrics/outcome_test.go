package metrics

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestOutcomeNames(t *testing.T) {
	want := []string{"ok", "error", "client_error", "server_error", "rate_limited",
		"timeout", "transport", "halted", "canceled", "invalid"}
	if len(want) != int(NumOutcomes) {
		t.Fatalf("%d names for %d outcomes", len(want), NumOutcomes)
	}
	for i, name := range want {
		o := Outcome(i)
		if got := o.String(); got != name {
			t.Errorf("Outcome(%d).String() = %q, want %q", i, got, name)
		}
		p, err := ParseOutcome(name)
		if err != nil || p != o {
			t.Errorf("ParseOutcome(%q) = %v, %v; want %v", name, p, err, o)
		}
	}
	if got := NumOutcomes.String(); got != "outcome(10)" {
		t.Errorf("NumOutcomes.String() = %q", got)
	}
}

func TestParseOutcomeUnknown(t *testing.T) {
	for _, s := range []string{"", "OK", "Timeout", "outcome(3)", "rate-limited"} {
		if _, err := ParseOutcome(s); !errors.Is(err, ErrUnknownOutcome) {
			t.Errorf("ParseOutcome(%q) error = %v, want ErrUnknownOutcome", s, err)
		}
	}
}

func TestOutcomeFailure(t *testing.T) {
	notFailures := map[Outcome]bool{OK: true, Halted: true, Canceled: true}
	for o := range NumOutcomes {
		if got := o.Failure(); got == notFailures[o] {
			t.Errorf("%v.Failure() = %v", o, got)
		}
	}
	if NumOutcomes.Failure() {
		t.Error("NumOutcomes.Failure() = true")
	}
}

func TestOutcomeJSON(t *testing.T) {
	in := map[string]Outcome{"a": RateLimited, "b": OK}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"a":"rate_limited","b":"ok"}` {
		t.Errorf("json = %s", b)
	}
	var out map[string]Outcome
	if err := json.Unmarshal(b, &out); err != nil || out["a"] != RateLimited || out["b"] != OK {
		t.Errorf("round trip = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`"nope"`), new(Outcome)); !errors.Is(err, ErrUnknownOutcome) {
		t.Errorf("unmarshal unknown: %v", err)
	}
	if _, err := json.Marshal(NumOutcomes); err == nil {
		t.Error("marshal NumOutcomes: no error")
	}
}

func TestKey(t *testing.T) {
	if got := Key("formation", "announce:react"); got != "formation:announce:react" {
		t.Errorf("Key = %q", got)
	}
}
