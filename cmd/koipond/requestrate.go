package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/metrics"
)

// requestRates sums a run's request keys (api, http and ws requests; see
// metrics.IsRequestKey): requests per second and failed requests per
// second over the summary's window.
func requestRates(m *api.MetricsSummary) (rate, errRate float64) {
	for _, k := range m.Keys {
		if metrics.IsRequestKey(k.Key) {
			rate += k.Rate
			errRate += k.Rate * float64(k.Failures) / float64(max(k.Count, 1))
		}
	}
	return rate, errRate
}

// printRequestRates prints the run's request rates over the last 5 s (or
// why they are unknown: the run itself was shown already).
func printRequestRates(ctx context.Context, cf *clientFlags, id string, w io.Writer) error {
	var m api.MetricsSummary
	if err := cf.call(ctx, "GET", "/api/v1/runs/"+url.PathEscape(id)+"/metrics?window=5s", nil, &m); err != nil {
		fmt.Fprintf(w, "  last 5s: no metrics (%v)\n", err)
		return nil
	}
	rate, errRate := requestRates(&m)
	fmt.Fprintf(w, "  last 5s: %.1f req/s, %.2f errors/s (api, http and ws requests)\n", rate, errRate)
	return nil
}

// stringList is a repeatable string flag.
type stringList struct{ list *[]string }

func (s stringList) String() string {
	if s.list == nil {
		return ""
	}
	return strings.Join(*s.list, ",")
}

func (s stringList) Set(v string) error {
	*s.list = append(*s.list, v)
	return nil
}
