package keeper

import (
	"errors"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/labstack/echo/v4"
)

// ComparedReport is a report with its comparison against a baseline, as
// GET /api/v1/runs/:id/report?baseline=OTHER answers it.
type ComparedReport struct {
	*state.Report
	Comparison *verdict.Comparison `json:"comparison"`
}

// reportComparison reads ?baseline=ID, ?tolerance= (relative, default
// 10%), ?error_tolerance= (percentage points, default 0.5pp) and
// ?min_delta= (the smallest latency change flagged, default 1ms) and
// compares rep with the baseline's report; nil without a baseline.
func (k *Keeper) reportComparison(c echo.Context, rep *state.Report) (*verdict.Comparison, error) {
	q := c.QueryParams()
	// A raw "10%" is a bad URL escape: the query parser drops the pair,
	// which would silently mean the default. Say so instead.
	for _, p := range []string{"baseline", "tolerance", "error_tolerance", "min_delta"} {
		if !q.Has(p) && strings.Contains("&"+c.Request().URL.RawQuery, "&"+p+"=") {
			return nil, invalid(p, "is not URL-encoded (write %% as %%25, e.g. tolerance=10%%25)")
		}
	}
	id := q.Get("baseline")
	if id == "" {
		for _, p := range []string{"tolerance", "error_tolerance", "min_delta"} {
			if q.Has(p) {
				return nil, invalid("baseline", "%s needs a baseline run to compare with (?baseline=RUN)", p)
			}
		}
		return nil, nil
	}
	o := verdict.DefaultCompareOptions()
	var err error
	if q.Has("tolerance") {
		if o.Tolerance, err = verdict.ParseTolerance(q.Get("tolerance")); err != nil {
			return nil, invalid("tolerance", "%v", err)
		}
	}
	if q.Has("error_tolerance") {
		if o.ErrorTolerancePP, err = verdict.ParseErrorTolerance(q.Get("error_tolerance")); err != nil {
			return nil, invalid("error_tolerance", "%v", err)
		}
	}
	if q.Has("min_delta") {
		d, err := time.ParseDuration(q.Get("min_delta"))
		if err != nil || d < 0 || d > time.Hour {
			return nil, invalid("min_delta", "%q is not a duration from 0 to 1h, e.g. 1ms", q.Get("min_delta"))
		}
		o.MinLatencyDeltaMS = ms(d)
	}
	base, err := k.RunReport(id)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == CodeNotFound {
			return nil, notFound("baseline", "no run %q to compare with", id)
		}
		return nil, err
	}
	return verdict.CompareReports(rep, base, o), nil
}
