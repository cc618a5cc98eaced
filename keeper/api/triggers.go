package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/labstack/echo/v4"
)

// --- HTTP

func (s *server) postTriggerCall(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, keeper.MaxTriggerBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &keeper.Error{Code: keeper.CodeTooLarge, Message: fmt.Sprintf("request body over %d bytes", keeper.MaxTriggerBody)}
		}
		if e := bodyError(err); e != nil {
			return e
		}
		return invalid("", "reading the body: %v", err)
	}
	h := c.Request().Header
	res, err := s.k.FireTrigger(c.Request().Context(), c.Param("name"), h.Get(notify.HeaderTimestamp), h.Get(notify.HeaderSignature), body)
	if err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		return c.JSON(http.StatusUnprocessableEntity, triggerResultOut(res))
	}
	return c.JSON(http.StatusOK, triggerResultOut(res))
}

func (s *server) listTriggers(c echo.Context) error {
	out := []contract.TriggerView{}
	for _, t := range s.k.State().Triggers(nil) {
		out = append(out, triggerViewOut(s.k.TriggerView(t)))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) getTrigger(c echo.Context) error {
	t := s.k.State().Trigger(nil, c.Param("name"))
	if t == nil {
		return notFound("name", "no trigger %s", quoteInput(c.Param("name")))
	}
	return c.JSON(http.StatusOK, triggerViewOut(s.k.TriggerView(t)))
}

func (s *server) postTrigger(c echo.Context) error {
	var spec contract.TriggerSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	t, err := s.k.PutTrigger(c.Request().Context(), actor(c), triggerSpecIn(spec), true)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, triggerViewOut(s.k.TriggerView(t)))
}

func (s *server) putTrigger(c echo.Context) error {
	var spec contract.TriggerSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	if spec.Name == "" {
		spec.Name = c.Param("name")
	}
	if spec.Name != c.Param("name") {
		return invalid("name", "%s differs from the name in the path %s", quoteInput(spec.Name), quoteInput(c.Param("name")))
	}
	t, err := s.k.PutTrigger(c.Request().Context(), actor(c), triggerSpecIn(spec), false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, triggerViewOut(s.k.TriggerView(t)))
}

func (s *server) deleteTrigger(c echo.Context) error {
	if err := s.k.DeleteTrigger(c.Request().Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
