package metrics

import (
	"errors"
	"fmt"
	"strconv"
)

// Outcome classifies one observation.
type Outcome uint8

// The outcomes a koi can report. Their numeric values are part of the binary
// encoding: append new ones before NumOutcomes and bump the format version.
const (
	OK          Outcome = iota // success
	Error                      // application-level failure (e.g. Slack-style ok:false)
	ClientError                // HTTP 4xx other than 429
	ServerError                // HTTP 5xx
	RateLimited                // HTTP 429
	Timeout                    // deadline exceeded (e.g. ws await timeout)
	Transport                  // connection/transport failure
	Halted                     // a sequence stopped itself via halt (not an error)
	Canceled                   // aborted by pause/stop
	Invalid                    // malformed input received (e.g. unparsable ws frame)
	NumOutcomes                // count of outcomes; not an outcome
)

// ErrUnknownOutcome is returned (wrapped) by ParseOutcome for a name that is
// not an outcome.
var ErrUnknownOutcome = errors.New("metrics: unknown outcome")

var outcomeNames = [NumOutcomes]string{
	OK:          "ok",
	Error:       "error",
	ClientError: "client_error",
	ServerError: "server_error",
	RateLimited: "rate_limited",
	Timeout:     "timeout",
	Transport:   "transport",
	Halted:      "halted",
	Canceled:    "canceled",
	Invalid:     "invalid",
}

// String returns the outcome's snake_case name, e.g. "rate_limited", or
// "outcome(N)" for a value that is not an outcome.
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// ParseOutcome returns the outcome whose String is s. It is the inverse of
// Outcome.String for every valid outcome.
func ParseOutcome(s string) (Outcome, error) {
	for o, name := range outcomeNames {
		if name == s {
			return Outcome(o), nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownOutcome, s)
}

// Failure reports whether the outcome counts as a failed request: Error,
// ClientError, ServerError, RateLimited, Timeout, Transport and Invalid.
// OK, Halted and Canceled are not failures.
func (o Outcome) Failure() bool {
	switch o {
	case OK, Halted, Canceled:
		return false
	}
	return o < NumOutcomes
}

// MarshalText implements encoding.TextMarshaler, so outcomes read well in
// JSON.
func (o Outcome) MarshalText() ([]byte, error) {
	if o >= NumOutcomes {
		return nil, fmt.Errorf("%w: %d", ErrUnknownOutcome, uint8(o))
	}
	return []byte(outcomeNames[o]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler using ParseOutcome.
func (o *Outcome) UnmarshalText(b []byte) error {
	v, err := ParseOutcome(string(b))
	if err != nil {
		return err
	}
	*o = v
	return nil
}

// Key returns the metric key for a kind and a name: kind+":"+name, e.g.
// Key("api", "conversations.history") == "api:conversations.history".
func Key(kind, name string) string {
	return kind + ":" + name
}
