package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/wire"
)

// switchPoll is how often a switch --wait asks the keeper; shorter than
// a school's poll interval, so a confirmation's time is that of the poll
// that brought it.
const switchPoll = 200 * time.Millisecond

// switchConfirmation is one school's confirmation of a switch.
type switchConfirmation struct {
	School string `json:"school"`
	// AfterMS is the time from the switch to the school's confirming poll
	// (keeper clock).
	AfterMS int64 `json:"after_ms"`
}

// switchWaitResult is what a switch --wait saw: who confirmed, when, and
// who did not within the timeout.
type switchWaitResult struct {
	State     wire.State           `json:"state"`
	Epoch     uint64               `json:"epoch"`
	Expected  []string             `json:"expected"`
	Confirmed []switchConfirmation `json:"confirmed"`
	Late      []string             `json:"late"`
	// Superseded is the switch that replaced this one while waiting.
	Superseded string `json:"superseded,omitempty"`
}

// waitSwitch waits until every school that had to confirm the switch sw
// did, or timeout, prints who confirmed and when and who is late, and
// returns exit 1 when someone is late (3 when the keeper is unreachable
// for the whole timeout). A stop is confirmed by the keeper's stop track
// (the school has no koi running and no websocket open); a pause or
// resume by the school's next poll carrying the switch's epoch.
func waitSwitch(ctx context.Context, cf *clientFlags, sw api.SwitchView, timeout time.Duration, stdout io.Writer) error {
	pk := &patientKeeper{cf: cf, limit: timeout, callTimeout: 10 * time.Second}
	deadline := time.Now().Add(timeout)
	res := switchWaitResult{State: sw.State, Epoch: sw.Epoch}
	var err error
	if sw.State == wire.Stopped {
		err = waitStopTrack(ctx, pk, sw, deadline, &res)
	} else {
		err = waitSchoolEpochs(ctx, pk, sw, deadline, &res)
	}
	if err != nil {
		return err
	}
	sort.Slice(res.Confirmed, func(i, j int) bool { return res.Confirmed[i].AfterMS < res.Confirmed[j].AfterMS })
	sort.Strings(res.Late)
	if err := cf.show(stdout, res, func() { printSwitchWait(stdout, res, timeout) }); err != nil {
		return err
	}
	if len(res.Late) > 0 || res.Superseded != "" {
		return exitError{code: exitFailed}
	}
	return nil
}

// waitStopTrack follows the global switch's stop track.
func waitStopTrack(ctx context.Context, pk *patientKeeper, sw api.SwitchView, deadline time.Time, res *switchWaitResult) error {
	for {
		var v api.SwitchView
		if err := pk.call(ctx, "GET", "/api/v1/control", &v); err != nil {
			return err
		}
		if v.GlobalSwitch == nil || v.Epoch != sw.Epoch {
			res.Superseded = supersededBy(v)
			return nil
		}
		t := v.Stop
		if t == nil {
			return fmt.Errorf("the keeper shows no stop confirmations for epoch %d", sw.Epoch)
		}
		res.Expected = t.Expected
		done := t.Complete() || !time.Now().Before(deadline)
		if done {
			res.Confirmed, res.Late = nil, nil
			for _, s := range t.Expected {
				if at, ok := t.Acks[s]; ok {
					res.Confirmed = append(res.Confirmed, switchConfirmation{School: s, AfterMS: at.Sub(t.RequestedAt).Milliseconds()})
				} else {
					res.Late = append(res.Late, s)
				}
			}
			return nil
		}
		if err := sleepCtx(ctx, min(switchPoll, time.Until(deadline))); err != nil {
			return err
		}
	}
}

// waitSchoolEpochs waits for each school live at the switch to poll with
// its epoch.
func waitSchoolEpochs(ctx context.Context, pk *patientKeeper, sw api.SwitchView, deadline time.Time, res *switchWaitResult) error {
	var expected map[string]bool
	seen := map[string]int64{}
	for {
		var schools []api.SchoolView
		if err := pk.call(ctx, "GET", "/api/v1/schools", &schools); err != nil {
			return err
		}
		if expected == nil {
			expected = map[string]bool{}
			for _, s := range schools {
				if s.School != nil && s.Health != "lost" {
					expected[s.ID] = true
					res.Expected = append(res.Expected, s.ID)
				}
			}
			sort.Strings(res.Expected)
		}
		for _, s := range schools {
			if s.School == nil || !expected[s.ID] || s.Status == nil || s.Status.Epoch < sw.Epoch {
				continue
			}
			if _, ok := seen[s.ID]; !ok {
				seen[s.ID] = max(0, s.LastSeen.Sub(sw.At).Milliseconds())
			}
		}
		if len(seen) == len(expected) || !time.Now().Before(deadline) {
			break
		}
		var v api.SwitchView
		if err := pk.call(ctx, "GET", "/api/v1/control", &v); err != nil {
			return err
		}
		if v.GlobalSwitch == nil || v.Epoch != sw.Epoch {
			res.Superseded = supersededBy(v)
			break
		}
		if err := sleepCtx(ctx, min(switchPoll, time.Until(deadline))); err != nil {
			return err
		}
	}
	for _, s := range res.Expected {
		if ms, ok := seen[s]; ok {
			res.Confirmed = append(res.Confirmed, switchConfirmation{School: s, AfterMS: ms})
		} else if res.Superseded == "" {
			res.Late = append(res.Late, s)
		}
	}
	return nil
}

// supersededBy names the switch that replaced the one waited on.
func supersededBy(v api.SwitchView) string {
	if v.GlobalSwitch == nil {
		return "an unknown switch"
	}
	return fmt.Sprintf("%s (epoch %d by %s)", v.State, v.Epoch, clean(v.By, 60))
}

// printSwitchWait prints who confirmed, when, and who is late.
func printSwitchWait(w io.Writer, r switchWaitResult, timeout time.Duration) {
	switch {
	case r.Superseded != "":
		fmt.Fprintf(w, "  superseded by %s before every school confirmed\n", r.Superseded)
	case len(r.Expected) == 0:
		fmt.Fprintln(w, "  no school had to confirm")
		return
	}
	fmt.Fprintf(w, "  confirmed by %d of %s:\n", len(r.Confirmed), plural(len(r.Expected), "school", "schools"))
	for _, c := range r.Confirmed {
		fmt.Fprintf(w, "    %-24s +%d ms\n", clean(c.School, 64), c.AfterMS)
	}
	if len(r.Late) > 0 {
		names := make([]string, len(r.Late))
		for i, s := range r.Late {
			names[i] = clean(s, 64)
		}
		fmt.Fprintf(w, "  late: %s (no confirmation within %s)\n", strings.Join(names, ", "), timeout)
	}
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// stopConfirmed is how long a complete stop took to be confirmed, e.g.
// "stop confirmed by all 3 schools in 212 ms".
func stopConfirmed(schools int, ms int64) string {
	switch schools {
	case 0:
		return "stop complete: no school had koi"
	case 1:
		return fmt.Sprintf("stop confirmed by the 1 school in %d ms", ms)
	}
	return fmt.Sprintf("stop confirmed by all %d schools in %d ms", schools, ms)
}

// lateList is "; late: a, b", or "" when no school is late.
func lateList(late []string) string {
	if len(late) == 0 {
		return ""
	}
	names := make([]string, len(late))
	for i, s := range late {
		names[i] = clean(s, 64)
	}
	return "; late: " + strings.Join(names, ", ")
}

// plural is "1 school" or "3 schools".
func plural[N ~int | ~int64 | ~uint64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
