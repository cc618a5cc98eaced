package ui_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// logCapture is a slog handler keeping the lines logged at INFO and above,
// "LEVEL message key=value …", so a test can read what a school said.
type logCapture struct {
	store *logLines
	attrs []slog.Attr
}

// logLines is the lines a logCapture and its derived handlers kept.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

// maxLogLines bounds what a capture keeps.
const maxLogLines = 10_000

func newLogCapture() logCapture { return logCapture{store: &logLines{}} }

func (h logCapture) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	write := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	if len(h.store.lines) < maxLogLines {
		h.store.lines = append(h.store.lines, b.String())
	}
	return nil
}

func (h logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return logCapture{store: h.store, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h logCapture) WithGroup(string) slog.Handler { return h }

// matching returns the lines containing every one of parts.
func (h logCapture) matching(parts ...string) []string {
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	var out []string
	for _, l := range h.store.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}
