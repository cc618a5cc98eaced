package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/koipond/koipond/keeper"
	"github.com/labstack/echo/v4"
)

// Open binds the keeper's HTTP address (cfg.HTTP, default
// keeper.DefaultHTTP; ":0" picks a port) before anything else starts, so
// "address already in use" is Open's error; then it opens the keeper
// core with cfg.HTTP set to the bound address and has it serve this
// package's handler there. The keeper owns the server's goroutine and
// shuts the API down first in Close, so requests in flight finish
// before NATS drains.
func Open(ctx context.Context, cfg keeper.Config) (*keeper.Keeper, error) {
	if cfg.HTTP == "" {
		cfg.HTTP = keeper.DefaultHTTP
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("keeper: invalid config: %w", errors.Join(errs...))
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("keeper: http: %w", err)
	}
	cfg.HTTP = ln.Addr().String()
	k, err := keeper.Open(ctx, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	k.Serve(ln, Handler(k))
	return k, nil
}

// server is the HTTP edge of one keeper: every handler is its method.
type server struct {
	k   *keeper.Keeper
	cfg keeper.Config // k.Config(), with its defaults
	log *slog.Logger
}

// Handler returns the keeper's HTTP API (routes under /api/v1, /metrics,
// /healthz and the UI of Config.UI) for k.
func Handler(k *keeper.Keeper) http.Handler {
	cfg := k.Config()
	s := &server{k: k, cfg: cfg, log: cfg.Logger}
	return s.newEcho()
}

// prometheus serves /metrics in the Prometheus text format.
func (s *server) prometheus(c echo.Context) error {
	var b strings.Builder
	s.k.WritePrometheus(&b)
	return c.Blob(http.StatusOK, "text/plain; version=0.0.4; charset=utf-8", []byte(b.String()))
}

func invalid(field, format string, args ...any) *keeper.Error {
	return &keeper.Error{Code: keeper.CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(field, format string, args ...any) *keeper.Error {
	return &keeper.Error{Code: keeper.CodeNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

// codeStatus is the one code → HTTP status table.
var codeStatus = map[string]int{
	keeper.CodeInvalid:          http.StatusBadRequest,
	keeper.CodeNotFound:         http.StatusNotFound,
	keeper.CodeConflict:         http.StatusConflict,
	keeper.CodeUnauthorized:     http.StatusUnauthorized,
	keeper.CodeForbidden:        http.StatusForbidden,
	keeper.CodeTooLarge:         http.StatusRequestEntityTooLarge,
	keeper.CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	keeper.CodeUnavailable:      http.StatusServiceUnavailable,
	keeper.CodeTimeout:          http.StatusRequestTimeout,
	keeper.CodeInternal:         http.StatusInternalServerError,
}

// statusOf returns the HTTP status of an error's code.
func statusOf(e *keeper.Error) int {
	if s, ok := codeStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
