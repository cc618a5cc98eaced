package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/deploy/supervise"
)

// schoolMemoryLimit is every school's --memory-limit here: room for its
// share of the always-on run, small enough for the bomb to reach quickly.
// It is their --reply-budget too: with the default budget (a quarter of
// the limit), which holds what koi keep of their replies, the bomb never
// reaches the ceiling (peak RSS 402-448 MiB); this step is about the
// ceiling and the quarantine behind the budget.
const schoolMemoryLimit = "512MiB"

// bombTarget is a target whose API answers every call with a reply far
// larger than usual: a JSON array of n zeros (1 MiB), about 17 MiB once
// decoded. Served by the harness on loopback until ctx ends.
func bombTarget(ctx context.Context, n int) (string, error) {
	body := []byte(`{"ok":true,"items":[0` + strings.Repeat(",0", n-1) + `]}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	return "http://" + ln.Addr().String(), nil
}

// runView is what the step reads of a run.
type runView struct {
	State      string `json:"state"`
	Quarantine *struct {
		Reason   string `json:"reason"`
		Failures []struct {
			School string `json:"school"`
			Cause  string `json:"cause"`
		} `json:"failures"`
	} `json:"quarantine"`
	KoiNow struct {
		Connected int `json:"connected"`
	} `json:"koi_now"`
}

// stepMemoryBomb starts a second run against a target whose replies its
// koi hoard (each 1 MiB reply kept decoded in the koi's store): every
// school it reaches climbs to its memory ceiling, closes that run's koi
// and says so in its poll; after three such failures the keeper
// quarantines the run (paused, reason shown). The schools stay alive and
// the always-on run keeps every koi (pond's websockets never drop).
func (h *harness) stepMemoryBomb(ctx context.Context) (string, error) {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	target, err := bombTarget(bctx, 512<<10)
	if err != nil {
		return "", err
	}
	set := `{"behaviors": {"hoard": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "flood",
  "post_actions": ["{{ setKoi (printf \"r%d\" (randInt 0 1000)) .items }}"]}}]}}}`
	var bs struct{ Hash string }
	if err := h.api(ctx, "POST", "/behavior-sets", map[string]any{"name": "bomb",
		"files": []map[string]string{{"name": "bomb.json", "content": set}}}, &bs); err != nil {
		return "", err
	}
	var run struct{ ID string }
	if err := h.api(ctx, "POST", "/runs", map[string]any{"name": "memory-bomb", "behavior_set": bs.Hash, "koi": 30,
		"ramp": 100, "time_scale": 60, "target": map[string]string{"api_base": target + "/api", "token": "bomb-{{.Index}}"}}, &run); err != nil {
		return "", err
	}
	defer func() { // the next steps start from the always-on run alone
		_ = h.api(context.WithoutCancel(ctx), "POST", "/runs/"+run.ID+"/stop", nil, nil)
	}()
	start := time.Now()
	minWS := int64(h.o.koi)
	peakRSS := map[string]int64{}
	var v runView
	err = h.waitFor(ctx, "the bomb run quarantined", 120*time.Second, func() (bool, string) {
		for _, s := range h.schools {
			h.mu.Lock()
			p := h.procs[s.id]
			h.mu.Unlock()
			if p != nil {
				if u, err := supervise.ReadUsage(p.Pid()); err == nil {
					peakRSS[s.id] = max(peakRSS[s.id], u.RSSKiB)
				}
			}
		}
		if ps, err := h.pond(ctx); err == nil {
			minWS = min(minWS, ps.WebsocketsOpen)
		}
		if err := h.api(ctx, "GET", "/runs/"+run.ID, nil, &v); err != nil {
			return false, err.Error()
		}
		return v.State == "paused" && v.Quarantine != nil && v.Quarantine.Reason != "", fmt.Sprintf("run %s, quarantine %+v", v.State, v.Quarantine)
	})
	took := time.Since(start)
	var rss []string
	for _, s := range h.schools {
		rss = append(rss, fmt.Sprintf("%s %.0f MiB", s.id, float64(peakRSS[s.id])/1024))
	}
	obs := fmt.Sprintf("peak school RSS while the bomb ran (--memory-limit %s): %s", schoolMemoryLimit, strings.Join(rss, ", "))
	if err != nil {
		return obs, err
	}
	causes := map[string]int{}
	for _, f := range v.Quarantine.Failures {
		causes[f.Cause]++
	}
	obs = fmt.Sprintf("quarantined after %v (%d failures %v: %.120s); %s", took.Round(100*time.Millisecond),
		len(v.Quarantine.Failures), causes, v.Quarantine.Reason, obs)
	var errs []error
	if causes["memory ceiling"] == 0 {
		errs = append(errs, errors.New("no memory ceiling among the failures"))
	}
	for _, s := range h.schools {
		if err := h.alive(s.id); err != nil {
			errs = append(errs, fmt.Errorf("%s died: %w", s.id, err))
		}
	}
	if minWS < int64(h.o.koi) {
		errs = append(errs, fmt.Errorf("the always-on run lost koi: pond's websockets fell to %d of %d", minWS, h.o.koi))
	}
	var always runView
	if err := h.api(ctx, "GET", "/runs/"+h.runID, nil, &always); err != nil {
		errs = append(errs, err)
	} else if always.State != "running" || (always.Quarantine != nil && always.Quarantine.Reason != "") {
		errs = append(errs, fmt.Errorf("the always-on run is %s, quarantine %+v", always.State, always.Quarantine))
	}
	return obs + fmt.Sprintf("; always-on run kept %d websockets at pond throughout", minWS), errors.Join(errs...)
}
