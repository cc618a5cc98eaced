package supervise

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/koipond/koipond/pond"
)

// maxStats bounds what is read of pond's /stats (a few KiB in practice).
const maxStats = 4 << 20

// statsClient reads /stats on loopback: no proxy, a short timeout, few
// idle connections (the harnesses poll it while pond is busiest).
var statsClient = &http.Client{Timeout: 5 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}

// PondStats reads the /stats of the pond at base ("http://127.0.0.1:9090").
func PondStats(ctx context.Context, base string) (pond.Stats, error) {
	var st pond.Stats
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := statsClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxStats))
	if err != nil {
		return st, fmt.Errorf("%s/stats: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s/stats: HTTP %d: %.200s", base, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s/stats: %w: %.200s", base, err, b)
	}
	return st, nil
}

// Calls counts pond's answers to method: ok with status 200, other with
// any other status.
func Calls(s pond.Stats, method string) (ok, other uint64) {
	for code, n := range s.Requests[method] {
		if code == "200" {
			ok += n
		} else {
			other += n
		}
	}
	return ok, other
}
