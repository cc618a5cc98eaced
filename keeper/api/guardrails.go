package api

import (
	"net/http"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/labstack/echo/v4"
)

// shedRequest is the body of POST /api/v1/runs/:id/shed.
type shedRequest struct {
	Percent *float64 `json:"percent"`
}

func (s *server) postShed(c echo.Context) error {
	var req shedRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Percent == nil {
		return invalid("percent", "give the share of koi to hold back, 0 to restore them all")
	}
	if _, err := s.k.ShedRun(c.Request().Context(), actor(c), c.Param("id"), *req.Percent); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, runViewOut(s.k.RunView(s.k.State(), c.Param("id"))))
}

// guardrailsRequest is the body of PUT /api/v1/guardrails.
type guardrailsRequest struct {
	Rules []contract.GuardrailRule `json:"rules"`
}

func (s *server) getGuardrails(c echo.Context) error {
	g := s.k.State().Guardrails(nil)
	return c.JSON(http.StatusOK, guardrailsViewOut(&keeper.GuardrailsView{Guardrails: g, Warnings: verdict.GuardrailWarnings("rules", g.Rules)}))
}

func (s *server) putGuardrails(c echo.Context) error {
	var req guardrailsRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Rules == nil {
		return invalid("rules", "give a list of rules ([] removes them all)")
	}
	v, err := s.k.SetGuardrails(c.Request().Context(), actor(c), rulesIn(req.Rules))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, guardrailsViewOut(v))
}
