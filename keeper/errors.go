package keeper

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/koipond/koipond/keeper/state"
)

// Error codes, each mapped to one HTTP status at the HTTP edge
// (keeper/api).
const (
	CodeInvalid          = "invalid"                // the request is wrong; Field says where
	CodeNotFound         = "not_found"              // no such object
	CodeConflict         = "conflict"               // the object's state forbids the change
	CodeUnauthorized     = "unauthorized"           // no or unknown token
	CodeForbidden        = "forbidden"              // the token's role may not do this, or a cross-origin request
	CodeTooLarge         = "too_large"              // request body over the limit
	CodeUnsupportedMedia = "unsupported_media_type" // a write not sent as application/json
	CodeUnavailable      = "unavailable"            // storage is failing, or no upload slot is free; retry
	CodeTimeout          = "timeout"                // the request body arrived too slowly
	CodeInternal         = "internal"               // a bug
)

// Error is an error a caller can act on: a code, a message for people and
// the request field at fault. The API sends it as
// {"error": {"code", "message", "field"}}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Err     error  `json:"-"`
}

// Error implements error.
func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(field, format string, args ...any) *Error {
	return &Error{Code: CodeNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) *Error {
	return &Error{Code: CodeConflict, Message: fmt.Sprintf(format, args...)}
}

// storeErr wraps a storage failure as unavailable, keeping an *Error
// returned from inside a write as it is.
func storeErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		size := "is"
		if pe := (*state.PersistError)(nil); errors.As(err, &pe) {
			size = fmt.Sprintf("(%.40s) takes %s (%d bytes),", pe.Key, mib(int64(pe.Bytes)), pe.Bytes)
		}
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("%s: the record %s larger than the NATS server takes in one message (its max_payload), "+
			"and the keeper keeps its state in NATS: make it smaller, or raise max_payload", what, size), Err: err}
	}
	return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("%s: %v", what, err), Err: err}
}

// onField names field on an *Error that names none (a store failure of
// the record a request stored).
func onField(err error, field string) error {
	if e, ok := err.(*Error); ok && e.Field == "" {
		e.Field = field
	}
	return err
}
