package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/labstack/echo/v4"
)

func (s *server) getRunReport(c echo.Context) error {
	rep, err := s.k.RunReport(c.Param("id"))
	if err != nil {
		return err
	}
	out := *rep
	out.Snapshot = nil // binary, for the keeper's own comparisons
	f := c.QueryParam("format")
	if f != "" && f != "json" && f != "csv" {
		return invalid("format", "%q is not json or csv", f)
	}
	cmp, err := s.reportComparison(c, &out)
	if err != nil {
		return err
	}
	switch {
	case f == "csv":
		name := "report-" + rep.Run + ".csv"
		if cmp != nil {
			name = "comparison-" + rep.Run + "-vs-" + cmp.Baseline + ".csv"
		}
		c.Response().Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		c.Response().Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		c.Response().WriteHeader(http.StatusOK)
		if cmp != nil {
			return verdict.WriteComparisonCSV(c.Response(), rep.Run, cmp)
		}
		return verdict.WriteReportCSV(c.Response(), &out)
	case cmp != nil:
		return c.JSON(http.StatusOK, &ComparedReport{Report: reportOut(&out), Comparison: comparisonOut(cmp)})
	default:
		return c.JSON(http.StatusOK, reportOut(&out))
	}
}

// ComparedReport is a report with its comparison against a baseline, as
// GET /api/v1/runs/:id/report?baseline=OTHER answers it.
type ComparedReport struct {
	*contract.Report
	Comparison *contract.Comparison `json:"comparison"`
}

// reportComparison reads ?baseline=ID, ?tolerance= (relative, default
// 10%), ?error_tolerance= (percentage points, default 0.5pp) and
// ?min_delta= (the smallest latency change flagged, default 1ms) and
// compares rep with the baseline's report; nil without a baseline.
func (s *server) reportComparison(c echo.Context, rep *state.Report) (*verdict.Comparison, error) {
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
		o.MinLatencyDeltaMS = float64(d) / float64(time.Millisecond)
	}
	base, err := s.k.RunReport(id)
	if err != nil {
		var e *keeper.Error
		if errors.As(err, &e) && e.Code == keeper.CodeNotFound {
			return nil, notFound("baseline", "no run %q to compare with", id)
		}
		return nil, err
	}
	return verdict.CompareReports(rep, base, o), nil
}
