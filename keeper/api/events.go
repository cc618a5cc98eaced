package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/labstack/echo/v4"
)

// eventsHeartbeat is the longest gap between two status events: school
// heartbeats and metrics change the view without a state write.
const eventsHeartbeat = time.Second

// eventsMinGap is the shortest gap between two status events.
const eventsMinGap = 250 * time.Millisecond

// getEvents streams the keeper's Status as server-sent events: one
// `status` event at once, then one whenever the state changes (memdb watch
// set) and at least every second, until the client goes away or the keeper
// closes. The UI uses it for live data and falls back to polling.
func (s *server) getEvents(c echo.Context) error {
	w := c.Response()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	stop := context.AfterFunc(s.k.Context(), cancel) // Close ends the streams
	defer stop()
	for seq := 1; ; seq++ {
		ws := memdb.NewWatchSet()
		st := s.k.Status(ws)
		b, err := json.Marshal(statusOut(st))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: status\ndata: %s\n\n", seq, b); err != nil {
			return nil
		}
		w.Flush()
		// At most four events a second, whatever the write rate.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(eventsMinGap):
		}
		wctx, wcancel := context.WithTimeout(ctx, eventsHeartbeat)
		_ = ws.WatchCtx(wctx)
		wcancel()
		if ctx.Err() != nil {
			return nil
		}
	}
}
