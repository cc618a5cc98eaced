package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/labstack/echo/v4"
)

// ctxKey keys request identities in echo contexts.
const (
	ctxActor = "koipond.actor"
	ctxRole  = "koipond.role"
)

// newEcho builds the HTTP API.
func (s *server) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.httpError
	e.Use(s.edgeGuard()) // Host, Origin, Content-Type, body limits (edge.go)
	view, oper, admin := s.need(keeper.RoleViewer), s.need(keeper.RoleOperator), s.need(keeper.RoleAdmin)
	e.GET("/healthz", s.healthz)
	if s.cfg.MetricsPublic {
		e.GET("/metrics", s.prometheus)
	} else {
		e.GET("/metrics", s.prometheus, view) // a viewer token, once tokens are configured
	}
	if s.cfg.Pprof {
		p := e.Group("/debug/pprof", admin)
		p.GET("/", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
		p.GET("/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
		p.GET("/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
		p.GET("/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
		p.GET("/:profile", echo.WrapHandler(http.HandlerFunc(pprof.Index))) // heap, goroutine, allocs, …
	}
	g := e.Group("/api/v1")
	g.GET("/status", s.getStatus, view)
	g.GET("/events", s.getEvents, view)
	g.GET("/whoami", s.whoami, view)
	g.GET("/behavior-sets", s.listBehaviorSets, view)
	g.POST("/behavior-sets", s.postBehaviorSet, admin)
	g.POST("/behavior-sets/generate", s.postGenerate, admin)
	g.POST("/behavior-sets/generate/upload", s.postGenerateUpload, admin)
	g.GET("/behavior-sets/generate/exports", s.getExports, admin)
	g.GET("/behavior-sets/:hash", s.getBehaviorSet, view)
	g.GET("/formations", s.listFormations, view)
	g.POST("/formations", s.postFormation, admin)
	g.GET("/formations/:hash", s.getFormation, view)
	g.GET("/runs", s.listRuns, view)
	g.POST("/runs", s.postRun, admin)
	g.GET("/runs/:id", s.getRun, view)
	g.PATCH("/runs/:id", s.patchRun, admin)
	g.POST("/runs/:id/pause", s.runSwitch(wire.Paused), oper)
	g.POST("/runs/:id/resume", s.runSwitch(wire.Running), oper)
	g.POST("/runs/:id/stop", s.runSwitch(wire.Stopped), oper)
	g.GET("/runs/:id/metrics", s.getRunMetrics, view)
	g.GET("/runs/:id/report", s.getRunReport, view)
	g.POST("/runs/:id/shed", s.postShed, oper)
	g.GET("/guardrails", s.getGuardrails, view)
	g.PUT("/guardrails", s.putGuardrails, admin)
	g.GET("/launches", s.listLaunches, view)
	g.POST("/launches", s.postLaunch, oper)
	g.GET("/launches/:id", s.getLaunch, view)
	g.POST("/launches/:id/cancel", s.cancelLaunch, oper)
	g.GET("/schools", s.listSchools, view)
	g.GET("/control", s.getControl, view)
	g.POST("/control", s.postControl, oper)
	g.GET("/audit", s.listAudit, view)
	g.GET("/webhooks", s.listWebhooks, view)
	g.POST("/webhooks", s.postWebhook, admin)
	g.GET("/webhooks/:name", s.getWebhook, view)
	g.PUT("/webhooks/:name", s.putWebhook, admin)
	g.DELETE("/webhooks/:name", s.deleteWebhook, admin)
	g.POST("/webhooks/:name/test", s.testWebhook, admin)
	g.GET("/triggers", s.listTriggers, admin)
	g.POST("/triggers", s.postTrigger, admin)
	g.GET("/triggers/:name", s.getTrigger, admin)
	g.PUT("/triggers/:name", s.putTrigger, admin)
	g.DELETE("/triggers/:name", s.deleteTrigger, admin)
	g.POST("/triggers/:name", s.postTriggerCall) // signed by the caller, no token
	g.Any("/*", func(c echo.Context) error {
		return notFound("", "no API route %s %s", c.Request().Method, quoteInput(c.Request().URL.Path))
	})
	if s.cfg.UI != nil {
		ui := echo.WrapHandler(s.cfg.UI)
		e.GET("/*", ui)
		e.HEAD("/*", ui)
	}
	return e
}

// need authenticates the bearer token and checks its role.
func (s *server) need(min keeper.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			secret, _ := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			name, role, ok := s.k.Identify(strings.TrimSpace(secret))
			if !ok {
				return &keeper.Error{Code: keeper.CodeUnauthorized, Message: "missing or unknown token (Authorization: Bearer TOKEN)"}
			}
			if role < min {
				return &keeper.Error{Code: keeper.CodeForbidden, Message: fmt.Sprintf("%s is %s; this needs %s", name, role, min)}
			}
			c.Set(ctxActor, name)
			c.Set(ctxRole, role)
			return next(c)
		}
	}
}

func actor(c echo.Context) string {
	s, _ := c.Get(ctxActor).(string)
	return s
}

// errorBody is the JSON of every API error.
type errorBody struct {
	Error *keeper.Error `json:"error"`
}

// httpError is the one place errors become responses.
func (s *server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var e *keeper.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &e):
	case errors.As(err, &he):
		code := keeper.CodeInvalid
		switch he.Code {
		case http.StatusNotFound:
			code = keeper.CodeNotFound
		case http.StatusMethodNotAllowed:
			code = keeper.CodeInvalid
		case http.StatusRequestEntityTooLarge:
			code = keeper.CodeTooLarge
		case http.StatusUnauthorized:
			code = keeper.CodeUnauthorized
		}
		e = &keeper.Error{Code: code, Message: fmt.Sprint(he.Message)}
	default:
		msg := clipMessage(err.Error())
		s.log.Error("api: unexpected error", "path", c.Path(), "err", msg)
		e = &keeper.Error{Code: keeper.CodeInternal, Message: msg}
	}
	// Errors may quote what the caller sent (a field name, a file's
	// line): bounded here whatever made them.
	out := &keeper.Error{Code: e.Code, Message: clipMessage(e.Message), Field: notify.Clip(e.Field, maxQuote)}
	_ = c.JSON(statusOf(out), errorBody{out})
}

// decode reads a JSON body strictly: one value, no unknown fields, at most
// the route's body limit (bodyLimit, enforced while reading).
func decode(c echo.Context, v any) error {
	data, err := readBody(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &keeper.Error{Code: keeper.CodeTooLarge, Message: fmt.Sprintf("request body over the %d byte limit of %s %s", mbe.Limit, c.Request().Method, c.Path())}
		}
		if e := bodyError(err); e != nil {
			return e
		}
		return invalid("", "reading the body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &ute):
			return invalid(notify.Clip(ute.Field, maxQuote), "must be %s, not a JSON %s", ute.Type, ute.Value)
		case errors.As(err, &se):
			return invalid("", "invalid JSON at byte %d: %v", se.Offset, err)
		case errors.Is(err, io.EOF):
			return invalid("", "empty body: send a JSON object")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return invalid(notify.Clip(f, maxQuote), "unknown field %s", quoteInput(f))
		}
		return invalid("", "invalid JSON: %s", clipMessage(err.Error()))
	}
	if dec.More() {
		return invalid("", "one JSON value per request")
	}
	return nil
}

// whoami tells a client who its token is and what it may do, so a UI can
// hide what the role cannot use.
func (s *server) whoami(c echo.Context) error {
	role, _ := c.Get(ctxRole).(keeper.Role)
	return c.JSON(http.StatusOK, map[string]any{"name": actor(c), "role": role.String(), "auth": s.k.AuthEnabled()})
}

// healthz answers /healthz: 200 with "status":"ok" while NATS is
// connected, else 503 with "status":"degraded", the connection's state
// and the reason (the API still serves reads meanwhile; writes fail).
func (s *server) healthz(c echo.Context) error {
	type body struct {
		Status string `json:"status"`
		keeper.NATSHealth
	}
	h, ok := s.k.NATSHealth()
	if !ok {
		return c.JSON(http.StatusServiceUnavailable, body{"degraded", h})
	}
	return c.JSON(http.StatusOK, body{"ok", h})
}

// --- behavior sets and formations

type fileJSON struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

type behaviorSetRequest struct {
	Name  string     `json:"name"`
	Files []fileJSON `json:"files"`
	// Overwrite, when given as false, refuses (409) a name that is taken
	// instead of storing the next version of it: the UI asks first.
	// Omitted, a taken name gets its next version, as always.
	Overwrite *bool `json:"overwrite,omitempty"`
}

// behaviorSetSummary is a set without its file contents.
type behaviorSetSummary struct {
	Hash      string    `json:"hash"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Files     []string  `json:"files"`
	Behaviors int       `json:"behaviors"`
	Warnings  []string  `json:"warnings,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

func summarizeSet(b *state.BehaviorSet) behaviorSetSummary {
	s := behaviorSetSummary{Hash: b.Hash, Name: b.Name, Version: b.Version, Behaviors: b.Behaviors, Warnings: b.Warnings,
		CreatedAt: b.CreatedAt, CreatedBy: b.CreatedBy, Files: []string{}}
	for _, f := range b.Files {
		s.Files = append(s.Files, f.Name)
	}
	return s
}

func (s *server) postBehaviorSet(c echo.Context) error {
	var req behaviorSetRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := s.refuseTakenName(req); err != nil {
		return err
	}
	files := make([]behaviors.File, len(req.Files))
	for i, f := range req.Files {
		files[i] = behaviors.File{Name: f.Name, Data: []byte(f.Content)}
	}
	b, err := s.k.PutBehaviorSet(c.Request().Context(), actor(c), req.Name, files)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, summarizeSet(b))
}

func (s *server) listBehaviorSets(c echo.Context) error {
	out := []behaviorSetSummary{}
	for _, b := range s.k.State().BehaviorSets(nil) {
		out = append(out, summarizeSet(b))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) getBehaviorSet(c echo.Context) error {
	b := s.k.State().BehaviorSet(nil, c.Param("hash"))
	if b == nil {
		return notFound("hash", "no behavior set %s", quoteInput(c.Param("hash")))
	}
	return c.JSON(http.StatusOK, behaviorSetOut(b))
}

type formationRequest struct {
	File fileJSON `json:"file"`
}

func (s *server) postFormation(c echo.Context) error {
	var req formationRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	f, err := s.k.PutFormation(c.Request().Context(), actor(c), behaviors.File{Name: req.File.Name, Data: []byte(req.File.Content)})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, formationOut(f))
}

func (s *server) listFormations(c echo.Context) error {
	out := s.k.State().Formations(nil)
	if out == nil {
		out = []*state.Formation{}
	}
	return c.JSON(http.StatusOK, mapSlice(out, formationOut))
}

func (s *server) getFormation(c echo.Context) error {
	f := s.k.State().Formation(nil, c.Param("hash"))
	if f == nil {
		return notFound("hash", "no formation %s", quoteInput(c.Param("hash")))
	}
	return c.JSON(http.StatusOK, formationOut(f))
}

// --- runs

func (s *server) postRun(c echo.Context) error {
	var spec contract.RunSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	run, err := s.k.CreateRun(c.Request().Context(), actor(c), RunSpecIn(spec))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, runViewOut(s.k.RunView(s.k.State(), run.ID)))
}

func (s *server) listRuns(c echo.Context) error {
	r := s.k.State()
	out := []*contract.RunView{}
	for _, run := range r.Runs(nil) {
		if st := c.QueryParam("state"); st != "" && string(run.State) != st {
			continue
		}
		out = append(out, runViewOut(s.k.RunView(r, run.ID)))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) getRun(c echo.Context) error {
	v := s.k.RunView(s.k.State(), c.Param("id"))
	if v == nil {
		return notFound("id", "no run %s", quoteInput(c.Param("id")))
	}
	out := runViewOut(v)
	out.Fidelity = fidelityOut(s.k.RunFidelity(v.ID))
	return c.JSON(http.StatusOK, out)
}

func (s *server) patchRun(c echo.Context) error {
	var p contract.RunPatch
	if err := decode(c, &p); err != nil {
		return err
	}
	if _, err := s.k.UpdateRun(c.Request().Context(), actor(c), c.Param("id"), keeper.RunPatch(p)); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, runViewOut(s.k.RunView(s.k.State(), c.Param("id"))))
}

func (s *server) runSwitch(st wire.State) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := s.k.SetRunState(c.Request().Context(), actor(c), c.Param("id"), st); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, runViewOut(s.k.RunView(s.k.State(), c.Param("id"))))
	}
}

func (s *server) getRunMetrics(c echo.Context) error {
	id := c.Param("id")
	if s.k.State().Run(nil, id) == nil {
		return notFound("id", "no run %s", quoteInput(id))
	}
	window := time.Minute
	if w := c.QueryParam("window"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < time.Second || d > 24*time.Hour {
			return invalid("window", "%s is not a duration between 1s and 24h", quoteInput(w))
		}
		window = d
	}
	return c.JSON(http.StatusOK, metricsOut(s.k.RunMetrics(id, window)))
}

// --- launches

type launchRequest struct {
	Formation string            `json:"formation"`
	Run       string            `json:"run"`
	Params    map[string]string `json:"params,omitempty"`
	// At is RFC 3339, or empty for now.
	At string `json:"at,omitempty"`
}

func (s *server) postLaunch(c echo.Context) error {
	var req launchRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	spec := keeper.LaunchSpec{Formation: req.Formation, Run: req.Run, Params: req.Params}
	if req.At != "" && req.At != "now" {
		t, err := time.Parse(time.RFC3339Nano, req.At)
		if err != nil {
			return invalid("at", "%s is not an RFC 3339 time", quoteInput(req.At))
		}
		spec.At = t
	}
	l, err := s.k.Launch(c.Request().Context(), actor(c), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, launchOut(l))
}

func (s *server) listLaunches(c echo.Context) error {
	r := s.k.State()
	var out []*state.Launch
	if run := c.QueryParam("run"); run != "" {
		out = r.LaunchesOfRun(nil, run)
	} else {
		out = r.Launches(nil)
	}
	if out == nil {
		out = []*state.Launch{}
	}
	return c.JSON(http.StatusOK, launchesOut(out))
}

// LaunchView is a launch with the metrics of its own steps since its
// start (keys "formation:<name>#<launch id>" and ":N" per step; the
// formation's shared keys for a launch without its own).
type LaunchView struct {
	*contract.Launch
	Metrics *contract.MetricsSummary `json:"metrics,omitempty"`
}

func (s *server) getLaunch(c echo.Context) error {
	l := s.k.State().Launch(nil, c.Param("id"))
	if l == nil {
		return notFound("id", "no launch %s", quoteInput(c.Param("id")))
	}
	v := LaunchView{Launch: launchOut(l)}
	if l.State != state.LaunchPending {
		to := time.Now().Add(time.Second).Truncate(time.Second)
		if !l.EndedAt.IsZero() {
			to = l.EndedAt.Add(time.Minute)
		}
		m := s.k.MetricsBetween(l.Run, l.Start.Truncate(time.Second), to, l.SequenceKey())
		m.Keys = slices.DeleteFunc(m.Keys, func(ks keeper.KeySummary) bool { return !l.OwnsKey(ks.Key) })
		v.Metrics = metricsOut(m)
	}
	return c.JSON(http.StatusOK, v)
}

func (s *server) cancelLaunch(c echo.Context) error {
	l, err := s.k.CancelLaunch(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, launchOut(l))
}

// --- schools, control, audit, status

func (s *server) listSchools(c echo.Context) error {
	return c.JSON(http.StatusOK, schoolViewsOut(s.k.SchoolViews(s.k.State())))
}

func (s *server) getControl(c echo.Context) error {
	return c.JSON(http.StatusOK, switchViewOut(keeper.SwitchViewOf(s.k.State().Switch(nil))))
}

type controlRequest struct {
	State wire.State `json:"state"`
}

func (s *server) postControl(c echo.Context) error {
	var req controlRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	g, err := s.k.SetSwitch(c.Request().Context(), actor(c), req.State)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, switchViewOut(keeper.SwitchViewOf(g)))
}

func (s *server) listAudit(c echo.Context) error {
	limit := 100
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return invalid("limit", "%s is not a number in 1..10000", quoteInput(s))
		}
		limit = n
	}
	var before uint64
	if s := c.QueryParam("before"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return invalid("before", "%s is not a sequence number", quoteInput(s))
		}
		before = n
	}
	out := s.k.State().Audit(nil, before, limit)
	if out == nil {
		out = []*state.AuditEntry{}
	}
	return c.JSON(http.StatusOK, mapSlice(out, auditOut))
}

// getStatus serves Status; with ?wait=DURATION it first blocks until
// something watched changes (or the duration passes): a live view.
func (s *server) getStatus(c echo.Context) error {
	if w := c.QueryParam("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 || d > 5*time.Minute {
			return invalid("wait", "%s is not a duration up to 5m", quoteInput(w))
		}
		ws := memdb.NewWatchSet()
		s.k.Status(ws)
		ctx, cancel := context.WithTimeout(c.Request().Context(), d)
		stop := context.AfterFunc(s.k.Context(), cancel) // Close ends long polls
		_ = ws.WatchCtx(ctx)
		stop()
		cancel()
	}
	return c.JSON(http.StatusOK, statusOut(s.k.Status(nil)))
}
