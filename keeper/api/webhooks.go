package api

import (
	"net/http"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/labstack/echo/v4"
)

// --- HTTP

// webhookViewFor is a webhook's view for the caller's role: admins see
// the URL's path (without its secret parts), others its host only.
func (s *server) webhookViewFor(c echo.Context, w *state.Webhook, detail bool) contract.WebhookView {
	v := s.k.WebhookView(w, detail)
	if role, _ := c.Get(ctxRole).(keeper.Role); role >= keeper.RoleAdmin {
		v.URL = notify.RedactURL(w.URL, w.Format)
	}
	return webhookViewOut(v)
}

func (s *server) listWebhooks(c echo.Context) error {
	out := []contract.WebhookView{}
	for _, w := range s.k.State().Webhooks(nil) {
		out = append(out, s.webhookViewFor(c, w, false))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) getWebhook(c echo.Context) error {
	w := s.k.State().Webhook(nil, c.Param("name"))
	if w == nil {
		return notFound("name", "no webhook %s", quoteInput(c.Param("name")))
	}
	return c.JSON(http.StatusOK, s.webhookViewFor(c, w, true))
}

func (s *server) postWebhook(c echo.Context) error {
	var spec contract.WebhookSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	w, err := s.k.PutWebhook(c.Request().Context(), actor(c), keeper.WebhookSpec(spec), true)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, s.webhookViewFor(c, w, false))
}

func (s *server) putWebhook(c echo.Context) error {
	var spec contract.WebhookSpec
	if err := decode(c, &spec); err != nil {
		return err
	}
	if spec.Name == "" {
		spec.Name = c.Param("name")
	}
	if spec.Name != c.Param("name") {
		return invalid("name", "%s differs from the name in the path %s", quoteInput(spec.Name), quoteInput(c.Param("name")))
	}
	w, err := s.k.PutWebhook(c.Request().Context(), actor(c), keeper.WebhookSpec(spec), false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.webhookViewFor(c, w, false))
}

func (s *server) deleteWebhook(c echo.Context) error {
	if err := s.k.DeleteWebhook(c.Request().Context(), actor(c), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) testWebhook(c echo.Context) error {
	a, err := s.k.TestWebhook(c.Request().Context(), actor(c), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deliveryOut(*a))
}
