package keeper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/koipond/koipond/behaviors"
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
func (k *Keeper) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = k.httpError
	e.Use(k.edgeGuard()) // Host, Origin, Content-Type, body limits (edge.go)
	view, oper, admin := k.need(RoleViewer), k.need(RoleOperator), k.need(RoleAdmin)
	e.GET("/healthz", k.healthz)
	if k.cfg.MetricsPublic {
		e.GET("/metrics", k.prometheus)
	} else {
		e.GET("/metrics", k.prometheus, view) // a viewer token, once tokens are configured
	}
	g := e.Group("/api/v1")
	g.GET("/status", k.getStatus, view)
	g.GET("/events", k.getEvents, view)
	g.GET("/whoami", k.whoami, view)
	g.GET("/behavior-sets", k.listBehaviorSets, view)
	g.POST("/behavior-sets", k.postBehaviorSet, admin)
	g.POST("/behavior-sets/generate", k.postGenerate, admin)
	g.GET("/behavior-sets/:hash", k.getBehaviorSet, view)
	g.GET("/formations", k.listFormations, view)
	g.POST("/formations", k.postFormation, admin)
	g.GET("/formations/:hash", k.getFormation, view)
	g.GET("/runs", k.listRuns, view)
	g.POST("/runs", k.postRun, admin)
	g.GET("/runs/:id", k.getRun, view)
	g.PATCH("/runs/:id", k.patchRun, admin)
	g.POST("/runs/:id/pause", k.runSwitch(wire.Paused), oper)
	g.POST("/runs/:id/resume", k.runSwitch(wire.Running), oper)
	g.POST("/runs/:id/stop", k.runSwitch(wire.Stopped), oper)
	g.GET("/runs/:id/metrics", k.getRunMetrics, view)
	g.GET("/runs/:id/report", k.getRunReport, view)
	g.POST("/runs/:id/shed", k.postShed, oper)
	g.GET("/guardrails", k.getGuardrails, view)
	g.PUT("/guardrails", k.putGuardrails, admin)
	g.GET("/launches", k.listLaunches, view)
	g.POST("/launches", k.postLaunch, oper)
	g.GET("/launches/:id", k.getLaunch, view)
	g.POST("/launches/:id/cancel", k.cancelLaunch, oper)
	g.GET("/schools", k.listSchools, view)
	g.GET("/control", k.getControl, view)
	g.POST("/control", k.postControl, oper)
	g.GET("/audit", k.listAudit, view)
	g.GET("/webhooks", k.listWebhooks, view)
	g.POST("/webhooks", k.postWebhook, admin)
	g.GET("/webhooks/:name", k.getWebhook, view)
	g.PUT("/webhooks/:name", k.putWebhook, admin)
	g.DELETE("/webhooks/:name", k.deleteWebhook, admin)
	g.POST("/webhooks/:name/test", k.testWebhook, admin)
	g.GET("/triggers", k.listTriggers, admin)
	g.POST("/triggers", k.postTrigger, admin)
	g.GET("/triggers/:name", k.getTrigger, admin)
	g.PUT("/triggers/:name", k.putTrigger, admin)
	g.DELETE("/triggers/:name", k.deleteTrigger, admin)
	g.POST("/triggers/:name", k.postTriggerCall) // signed by the caller, no token
	g.Any("/*", func(c echo.Context) error {
		return notFound("", "no API route %s %s", c.Request().Method, quoteInput(c.Request().URL.Path))
	})
	if k.cfg.UI != nil {
		ui := echo.WrapHandler(k.cfg.UI)
		e.GET("/*", ui)
		e.HEAD("/*", ui)
	}
	return e
}

// need authenticates the bearer token and checks its role.
func (k *Keeper) need(min Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			secret, _ := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			name, role, ok := k.auth.identify(strings.TrimSpace(secret))
			if !ok {
				return &Error{Code: CodeUnauthorized, Message: "missing or unknown token (Authorization: Bearer TOKEN)"}
			}
			if role < min {
				return &Error{Code: CodeForbidden, Message: fmt.Sprintf("%s is %s; this needs %s", name, role, min)}
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
	Error *Error `json:"error"`
}

// httpError is the one place errors become responses.
func (k *Keeper) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var e *Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &e):
	case errors.As(err, &he):
		code := CodeInvalid
		switch he.Code {
		case http.StatusNotFound:
			code = CodeNotFound
		case http.StatusMethodNotAllowed:
			code = CodeInvalid
		case http.StatusRequestEntityTooLarge:
			code = CodeTooLarge
		case http.StatusUnauthorized:
			code = CodeUnauthorized
		}
		e = &Error{Code: code, Message: fmt.Sprint(he.Message)}
	default:
		msg := clipMessage(err.Error())
		k.log.Error("api: unexpected error", "path", c.Path(), "err", msg)
		e = &Error{Code: CodeInternal, Message: msg}
	}
	// Errors may quote what the caller sent (a field name, a file's
	// line): bounded here whatever made them.
	out := &Error{Code: e.Code, Message: clipMessage(e.Message), Field: clip(e.Field, maxQuote)}
	_ = c.JSON(out.Status(), errorBody{out})
}

// decode reads a JSON body strictly: one value, no unknown fields, at most
// the route's body limit (bodyLimit, enforced while reading).
func decode(c echo.Context, v any) error {
	data, err := readBody(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("request body over the %d byte limit of %s %s", mbe.Limit, c.Request().Method, c.Path())}
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
			return invalid(clip(ute.Field, maxQuote), "must be %s, not a JSON %s", ute.Type, ute.Value)
		case errors.As(err, &se):
			return invalid("", "invalid JSON at byte %d: %v", se.Offset, err)
		case errors.Is(err, io.EOF):
			return invalid("", "empty body: send a JSON object")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return invalid(clip(f, maxQuote), "unknown field %s", quoteInput(f))
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
func (k *Keeper) whoami(c echo.Context) error {
	role, _ := c.Get(ctxRole).(Role)
	return c.JSON(http.StatusOK, map[string]any{"name": actor(c), "role": role.String(), "auth": k.auth.enabled()})
}

func (k *Keeper) healthz(c echo.Context) error {
	return k.natsHealthz(c)
}

// --- behavior sets and formations

type fileJSON struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

type behaviorSetRequest struct {
	Name  string     `json:"name"`
	Files []fileJSON `json:"files"`
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

func (k *Keeper) postBehaviorSet(c echo.Context) error {
	var req behaviorSetRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	files := make([]behaviors.File, len(req.Files))
	for i, f := range req.Files {
		files[i] = behaviors.File{Name: f.Name, Data: []byte(f.Content)}
	}
	b, err := k.PutBehaviorSet(c.Request().Context(), actor(c), req.Name, files)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, summarizeSet(b))
}

func (k *Keeper) listBehaviorSets(c echo.Context) error {
	out := []behaviorSetSummary{}
	for _, b := range k.store.Read().BehaviorSets(nil) {
		out = append(out, summarizeSet(b))
	}
	return c.JSON(http.StatusOK, out)
}

func (k *Keeper) getBehaviorSet(c echo.Context) error {
	b := k.store.Read().BehaviorSet(nil, c.Param("hash"))
	if b == nil {
		return notFound("hash", "no behavior set %s", quoteInput(c.Param("hash")))
	}
	return c.JSON(http.StatusOK, b)
}

type formationRequest struct {
	File fileJSON `json:"file"`
}

func (k *Keeper) postFormation(c echo.Context) error {
	var req formationRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	f, err := k.PutFormation(c.Request().Context(), actor(c), behaviors.File{Name: req.File.Name, Data: []byte(req.File.Content)})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, f)
}

func (k *Keeper) listFormations(c echo.Context) error {
	out := k.store.Read().Formations(nil)
	if out == nil {
		out = []*state.Formation{}
	}
	return c.JSON(http.StatusOK, out)
}

func (k *Keeper) getFormation(c echo.Context) error {
	f := k.store.Read().Formation(nil, c.Param("hash"))
	if f == nil {
		return notFound("hash", "no formation %s", quoteInput(c.Param("hash")))
	}
	return c.JSON(http.StatusOK, f)
}

// --- runs

// RunView is a run with where its koi are and how they are doing.
type RunView struct {
	*state.Run
	// Assigned is how many of the run's koi schools hold ranges of.
	Assigned int `json:"assigned"`
	// Partial explains why fewer koi than asked are assigned.
	Partial     string             `json:"partial,omitempty"`
	Assignments []state.Assignment `json:"assignments"`
	// KoiNow sums what live schools report for the run.
	KoiNow wire.KoiCounts `json:"koi_now"`
	// Refused maps schools to why they refuse the run.
	Refused map[string]string `json:"refused,omitempty"`
	// StopCompleteMS is how long the stop took to be confirmed everywhere.
	StopCompleteMS int64 `json:"stop_complete_ms,omitempty"`
	// GuardView holds effective koi, live thresholds and guardrails.
	GuardView
}

// RunView returns a run with its live detail, or nil.
func (k *Keeper) RunView(r *state.Reader, id string) *RunView {
	run := r.Run(nil, id)
	if run == nil {
		return nil
	}
	v := &RunView{Run: run, Assignments: []state.Assignment{}}
	for _, a := range r.AssignmentsOfRun(nil, id) {
		v.Assignments = append(v.Assignments, *a)
		v.Assigned += a.Count()
	}
	sort.Slice(v.Assignments, func(i, j int) bool { return v.Assignments[i].From < v.Assignments[j].From })
	v.GuardView = k.guardView(run)
	// Partial only once a scheduler pass found the koi do not fit: a run
	// created a moment ago has nothing assigned yet, and that is no news.
	if run.Active() && v.Assigned < v.GuardView.EffectiveKoi && k.partialRun(id) {
		v.Partial = fmt.Sprintf("only %d of %d koi fit on the live schools' free capacity", v.Assigned, v.GuardView.EffectiveKoi)
	}
	for _, s := range k.liveSchools(r, time.Now()) {
		if s.Status == nil {
			continue
		}
		for _, rs := range s.Status.Runs {
			if rs.Run != id {
				continue
			}
			v.KoiNow.Booting += rs.Koi.Booting
			v.KoiNow.Connected += rs.Koi.Connected
			v.KoiNow.Reconnecting += rs.Koi.Reconnecting
			v.KoiNow.Failed += rs.Koi.Failed
			v.KoiNow.Paused += rs.Koi.Paused
			if rs.Refused != "" {
				if v.Refused == nil {
					v.Refused = map[string]string{}
				}
				v.Refused[s.ID] = rs.Refused
			}
		}
	}
	for s, why := range k.refusing(id, time.Now()) {
		if v.Refused == nil {
			v.Refused = map[string]string{}
		}
		v.Refused[s] = why
	}
	v.StopCompleteMS = run.Stop.DurationMS()
	return v
}

func (k *Keeper) postRun(c echo.Context) error {
	var spec RunSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	run, err := k.CreateRun(c.Request().Context(), actor(c), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, k.RunView(k.store.Read(), run.ID))
}

func (k *Keeper) listRuns(c echo.Context) error {
	r := k.store.Read()
	out := []*RunView{}
	for _, run := range r.Runs(nil) {
		if st := c.QueryParam("state"); st != "" && string(run.State) != st {
			continue
		}
		out = append(out, k.RunView(r, run.ID))
	}
	return c.JSON(http.StatusOK, out)
}

func (k *Keeper) getRun(c echo.Context) error {
	v := k.RunView(k.store.Read(), c.Param("id"))
	if v == nil {
		return notFound("id", "no run %s", quoteInput(c.Param("id")))
	}
	return c.JSON(http.StatusOK, v)
}

func (k *Keeper) patchRun(c echo.Context) error {
	var p RunPatch
	if err := decode(c, &p); err != nil {
		return err
	}
	if _, err := k.UpdateRun(c.Request().Context(), actor(c), c.Param("id"), p); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, k.RunView(k.store.Read(), c.Param("id")))
}

func (k *Keeper) runSwitch(st wire.State) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := k.SetRunState(c.Request().Context(), actor(c), c.Param("id"), st); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, k.RunView(k.store.Read(), c.Param("id")))
	}
}

func (k *Keeper) getRunMetrics(c echo.Context) error {
	id := c.Param("id")
	if k.store.Read().Run(nil, id) == nil {
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
	return c.JSON(http.StatusOK, k.RunMetrics(id, window))
}

// --- launches

type launchRequest struct {
	Formation string            `json:"formation"`
	Run       string            `json:"run"`
	Params    map[string]string `json:"params,omitempty"`
	// At is RFC 3339, or empty for now.
	At string `json:"at,omitempty"`
}

func (k *Keeper) postLaunch(c echo.Context) error {
	var req launchRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	spec := LaunchSpec{Formation: req.Formation, Run: req.Run, Params: req.Params}
	if req.At != "" && req.At != "now" {
		t, err := time.Parse(time.RFC3339Nano, req.At)
		if err != nil {
			return invalid("at", "%s is not an RFC 3339 time", quoteInput(req.At))
		}
		spec.At = t
	}
	l, err := k.Launch(c.Request().Context(), actor(c), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, l)
}

func (k *Keeper) listLaunches(c echo.Context) error {
	r := k.store.Read()
	var out []*state.Launch
	if run := c.QueryParam("run"); run != "" {
		out = r.LaunchesOfRun(nil, run)
	} else {
		out = r.Launches(nil)
	}
	if out == nil {
		out = []*state.Launch{}
	}
	return c.JSON(http.StatusOK, out)
}

// LaunchView is a launch with the metrics of its formation's steps since
// its start (keys "formation:<name>:…").
type LaunchView struct {
	*state.Launch
	Metrics *MetricsSummary `json:"metrics,omitempty"`
}

func (k *Keeper) getLaunch(c echo.Context) error {
	l := k.store.Read().Launch(nil, c.Param("id"))
	if l == nil {
		return notFound("id", "no launch %s", quoteInput(c.Param("id")))
	}
	v := LaunchView{Launch: l}
	if l.State != state.LaunchPending {
		to := time.Now().Add(time.Second).Truncate(time.Second)
		if !l.EndedAt.IsZero() {
			to = l.EndedAt.Add(time.Minute)
		}
		v.Metrics = k.metricsBetween(l.Run, l.Start.Truncate(time.Second), to, "formation:"+l.Name)
	}
	return c.JSON(http.StatusOK, v)
}

func (k *Keeper) cancelLaunch(c echo.Context) error {
	l, err := k.CancelLaunch(c.Request().Context(), actor(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, l)
}

// --- schools, control, audit, status

// SchoolView is a school with its health and assignments.
type SchoolView struct {
	*state.School
	// Health is "live" (polled within two poll intervals), "late" (within
	// the lease) or "lost" (lease expired: its koi were moved).
	Health      string             `json:"health"`
	Assignments []state.Assignment `json:"assignments"`
	Assigned    int                `json:"assigned"`
}

func (k *Keeper) schoolViews(r *state.Reader) []SchoolView {
	now := time.Now()
	out := []SchoolView{}
	for _, s := range r.Schools(nil) {
		v := SchoolView{School: s, Health: "live", Assignments: []state.Assignment{}}
		switch age := now.Sub(s.LastSeen); {
		case age > k.cfg.Lease:
			v.Health = "lost"
		case age > 2*k.cfg.PollInterval:
			v.Health = "late"
		}
		for _, a := range r.AssignmentsOfSchool(nil, s.ID) {
			v.Assignments = append(v.Assignments, *a)
			v.Assigned += a.Count()
		}
		out = append(out, v)
	}
	return out
}

func (k *Keeper) listSchools(c echo.Context) error {
	return c.JSON(http.StatusOK, k.schoolViews(k.store.Read()))
}

// SwitchView is the global switch with its stop confirmation.
type SwitchView struct {
	*state.GlobalSwitch
	StopCompleteMS int64 `json:"stop_complete_ms,omitempty"`
}

func switchView(g *state.GlobalSwitch) SwitchView {
	return SwitchView{GlobalSwitch: g, StopCompleteMS: g.Stop.DurationMS()}
}

func (k *Keeper) getControl(c echo.Context) error {
	return c.JSON(http.StatusOK, switchView(k.store.Read().Switch(nil)))
}

type controlRequest struct {
	State wire.State `json:"state"`
}

func (k *Keeper) postControl(c echo.Context) error {
	var req controlRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	g, err := k.SetSwitch(c.Request().Context(), actor(c), req.State)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, switchView(g))
}

func (k *Keeper) listAudit(c echo.Context) error {
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
	out := k.store.Read().Audit(nil, before, limit)
	if out == nil {
		out = []*state.AuditEntry{}
	}
	return c.JSON(http.StatusOK, out)
}

// Status is the keeper at a glance.
type Status struct {
	Switch   SwitchView      `json:"switch"`
	Runs     []*RunView      `json:"runs"`
	Schools  []SchoolView    `json:"schools"`
	Launches []*state.Launch `json:"launches"` // pending and running
	Time     time.Time       `json:"time"`
}

// Status returns the keeper at a glance: switch, active runs, schools,
// pending and running launches. ws, when given, watches what it read
// (except school heartbeats, which change every poll).
func (k *Keeper) Status(ws memdb.WatchSet) *Status {
	r := k.store.Read()
	st := &Status{Switch: switchView(r.Switch(ws)), Runs: []*RunView{}, Schools: k.schoolViews(r),
		Launches: []*state.Launch{}, Time: time.Now()}
	r.Assignments(ws)
	for _, run := range r.Runs(ws) {
		if run.Active() {
			st.Runs = append(st.Runs, k.RunView(r, run.ID))
		}
	}
	st.Launches = append(st.Launches, r.LaunchesIn(ws, state.LaunchPending)...)
	st.Launches = append(st.Launches, r.LaunchesIn(ws, state.LaunchRunning)...)
	return st
}

// getStatus serves Status; with ?wait=DURATION it first blocks until
// something watched changes (or the duration passes): a live view.
func (k *Keeper) getStatus(c echo.Context) error {
	if w := c.QueryParam("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 || d > 5*time.Minute {
			return invalid("wait", "%s is not a duration up to 5m", quoteInput(w))
		}
		ws := memdb.NewWatchSet()
		k.Status(ws)
		ctx, cancel := context.WithTimeout(c.Request().Context(), d)
		stop := context.AfterFunc(k.ctx, cancel) // Close ends long polls
		_ = ws.WatchCtx(ctx)
		stop()
		cancel()
	}
	return c.JSON(http.StatusOK, k.Status(nil))
}
