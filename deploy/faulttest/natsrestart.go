package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"
)

// resumeBound is how soon after NATS answers again the keeper must poll
// and write again.
const resumeBound = 5 * time.Second

// stepRestartNATS: every NATS node restarts (SIGTERM, then the same ports
// and stores), so the servers close the keeper's connection. The keeper's
// /healthz says degraded meanwhile; once the cluster answers, schools'
// polls are answered and KV writes through the keeper land within
// resumeBound, and /healthz is ok again.
func (h *harness) stepRestartNATS(ctx context.Context) (string, error) {
	var notes []string
	note := func() string { return strings.Join(notes, "; ") }
	down := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(h.natsNodes))
	for i, n := range h.natsNodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.kill(n.name, syscall.SIGTERM, 10*time.Second)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	var health string
	if err := h.waitFor(ctx, "the keeper's /healthz to say degraded", resumeBound, func() (bool, string) {
		var body map[string]any
		code, err := getJSON(ctx, h.keeperURL+"/healthz", &body)
		if err != nil {
			return false, err.Error()
		}
		health = fmt.Sprintf("HTTP %d %v/%v", code, body["status"], body["nats"])
		return code != 200 && body["status"] == "degraded", health
	}); err != nil {
		return "", err
	}
	notes = append(notes, fmt.Sprintf("cluster stopped in %v; keeper /healthz %s", time.Since(down).Round(10*time.Millisecond), health))
	// Start every node before waiting for any: a node's JetStream is only
	// current once the others are back.
	for _, n := range h.natsNodes {
		if _, err := h.start(n.name, h.natsServer, "-c", n.conf); err != nil {
			return note(), err
		}
	}
	for _, n := range h.natsNodes {
		if err := h.waitNATS(ctx, n, 60*time.Second); err != nil {
			return note(), err
		}
	}
	ready := time.Now()
	notes = append(notes, fmt.Sprintf("cluster back after %v", ready.Sub(down).Round(10*time.Millisecond)))
	// Polls: every school has a poll answered after the cluster is back.
	if err := h.waitFor(ctx, "every school's poll answered", resumeBound, func() (bool, string) {
		var desc []string
		ok := true
		for _, s := range h.schools {
			st, err := h.schoolStatus(ctx, s)
			if err != nil {
				return false, err.Error()
			}
			ok = ok && st.LastPoll.After(ready)
			desc = append(desc, fmt.Sprintf("%s last poll %v ago", s.id, time.Since(st.LastPoll).Round(time.Millisecond)))
		}
		return ok, strings.Join(desc, "; ")
	}); err != nil {
		return note(), err
	}
	notes = append(notes, fmt.Sprintf("polls answered after %v", time.Since(ready).Round(10*time.Millisecond)))
	// Writes: a new formation lands in the KV bucket (a unique name, so
	// that it is a real write, not a content-hash hit).
	if err := h.waitFor(ctx, "a KV write through the keeper", resumeBound-time.Since(ready), func() (bool, string) {
		form := fmt.Sprintf(`{"name": "after-restart-%d", "begin_within_secs": 1, "percent": 1,
  "sequence": {"steps": [{"request": {"type": "api", "method": "auth.test"}}]}}`, time.Now().UnixNano())
		var fm struct{ Hash string }
		if err := h.api(ctx, "POST", "/formations", map[string]any{"file": map[string]string{"name": "restart.json", "content": form}}, &fm); err != nil {
			return false, err.Error()
		}
		return fm.Hash != "", "no hash"
	}); err != nil {
		return note(), err
	}
	notes = append(notes, fmt.Sprintf("KV write ok after %v", time.Since(ready).Round(10*time.Millisecond)))
	if err := h.waitFor(ctx, "the keeper's /healthz ok", resumeBound-time.Since(ready), func() (bool, string) {
		var body map[string]any
		code, err := getJSON(ctx, h.keeperURL+"/healthz", &body)
		return err == nil && code == 200, fmt.Sprintf("HTTP %d %v", code, body)
	}); err != nil {
		return note(), err
	}
	notes = append(notes, fmt.Sprintf("/healthz ok after %v", time.Since(ready).Round(10*time.Millisecond)))
	return note(), nil
}
