package verdict

import (
	"fmt"
	"strings"
	"unicode"
)

// FieldError is a bad threshold, rule or option: the request field at
// fault (e.g. thresholds["api:x"][0] or guardrails[1].for) and a message
// for people.
type FieldError struct {
	Field   string
	Message string
	Err     error // the underlying error, if any
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// checkName refuses empty, overlong and control-character names, as the
// keeper does for every name it stores.
func checkName(field, name string) *FieldError {
	switch {
	case name == "":
		return invalid(field, "must not be empty")
	case len(name) > 200:
		return invalid(field, "is %d bytes long; at most 200", len(name))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return invalid(field, "must not contain control characters")
	}
	return nil
}
