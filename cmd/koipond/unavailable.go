package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/nats-io/nats.go"
)

// unavailableError says a part of koipond itself (the keeper, NATS) could
// not be reached or answered that it is unavailable. errors.Is finds both
// errUnavailable (exit 3) and the cause.
type unavailableError struct {
	what  string // "keeper at http://127.0.0.1:8080"
	state string // "unreachable" or "unavailable"
	err   error
}

func (e *unavailableError) Error() string { return e.what + " " + e.state + ": " + e.err.Error() }

func (e *unavailableError) Unwrap() []error { return []error{errUnavailable, e.err} }

// unreachable reports whether err from a connection attempt or exchange
// means the other side is not there: refused, reset, no route, a name
// that does not resolve, a timeout, or a connection closed mid-answer.
// A context the caller cancelled is not: the user gave up, koipond did
// not fail.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EHOSTUNREACH,
		syscall.ENETUNREACH, syscall.EPIPE, context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// natsConnectError is the error of a failed NATS connection: unavailable
// (exit 3) when no server answered, else (credentials refused, a bad URL)
// a plain failure.
func natsConnectError(url string, err error) error {
	if errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) || unreachable(err) {
		return &unavailableError{what: "NATS at " + url, state: "unreachable", err: err}
	}
	return fmt.Errorf("connecting to NATS at %s: %w", url, err)
}
