package keeper

import (
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// RunView is a run with where its koi are and how they are doing.
type RunView struct {
	*state.Run
	// Assigned is how many of the run's koi schools hold ranges of.
	Assigned int `json:"assigned"`
	// Partial explains why fewer koi than asked are assigned.
	Partial     string             `json:"partial,omitempty"`
	Assignments []state.Assignment `json:"assignments"`
	// KoiNow sums what live schools report for the run; for a stopped
	// run only reports made after the school heard of the stop.
	KoiNow wire.KoiCounts `json:"koi_now"`
	// Refused maps schools to why they refuse the run.
	Refused map[string]string `json:"refused,omitempty"`
	// StopCompleteMS is how long the stop took to be confirmed everywhere.
	StopCompleteMS int64 `json:"stop_complete_ms,omitempty"`
	// GuardView holds effective koi, live thresholds and guardrails.
	GuardView
}

// RunView returns a run with its live detail, or nil.
func (k *Keeper) RunView(r *state.Reader, id string) *RunView {
	run := r.Run(nil, id)
	if run == nil {
		return nil
	}
	v := &RunView{Run: run, Assignments: []state.Assignment{}}
	for _, a := range r.AssignmentsOfRun(nil, id) {
		v.Assignments = append(v.Assignments, *a)
		v.Assigned += a.Count()
	}
	sort.Slice(v.Assignments, func(i, j int) bool { return v.Assignments[i].From < v.Assignments[j].From })
	v.GuardView = k.guardView(run)
	// Partial only once a scheduler pass found the koi do not fit: a run
	// created a moment ago has nothing assigned yet, and that is no news.
	if run.Active() && v.Assigned < v.GuardView.EffectiveKoi && k.partialRun(id) {
		v.Partial = fmt.Sprintf("only %d of %d koi fit on the live schools' free capacity", v.Assigned, v.GuardView.EffectiveKoi)
	}
	for _, s := range k.liveSchools(r, time.Now()) {
		if s.Status == nil {
			continue
		}
		for _, rs := range s.Status.Runs {
			if rs.Run != id {
				continue
			}
			if !run.Active() && rs.Epoch < run.Switch.Epoch {
				// Counted before the school heard of the stop: those koi
				// are the running run's, gone since (a stopped run showed
				// CONNECTED 1 until the next poll, or for a lease when
				// the school had died). A school that has heard it and
				// still holds koi is still closing them: those count.
				continue
			}
			v.KoiNow.Booting += rs.Koi.Booting
			v.KoiNow.Connected += rs.Koi.Connected
			v.KoiNow.Reconnecting += rs.Koi.Reconnecting
			v.KoiNow.Failed += rs.Koi.Failed
			v.KoiNow.Paused += rs.Koi.Paused
			if rs.Refused != "" {
				if v.Refused == nil {
					v.Refused = map[string]string{}
				}
				v.Refused[s.ID] = rs.Refused
			}
		}
	}
	for s, why := range k.refusing(id, time.Now()) {
		if v.Refused == nil {
			v.Refused = map[string]string{}
		}
		v.Refused[s] = why
	}
	v.StopCompleteMS = run.Stop.DurationMS()
	return v
}

// SchoolView is a school with its health and assignments.
type SchoolView struct {
	*state.School
	// Health is "live" (polled within two poll intervals), "late" (within
	// the lease) or "lost" (lease expired: its koi were moved).
	Health      string             `json:"health"`
	Assignments []state.Assignment `json:"assignments"`
	Assigned    int                `json:"assigned"`
}

// SchoolViews returns every school with its health and assignments.
func (k *Keeper) SchoolViews(r *state.Reader) []SchoolView {
	now := time.Now()
	out := []SchoolView{}
	for _, s := range r.Schools(nil) {
		v := SchoolView{School: s, Health: "live", Assignments: []state.Assignment{}}
		switch age := now.Sub(s.LastSeen); {
		case age > k.cfg.Lease:
			v.Health = "lost"
		case age > 2*k.cfg.PollInterval:
			v.Health = "late"
		}
		for _, a := range r.AssignmentsOfSchool(nil, s.ID) {
			v.Assignments = append(v.Assignments, *a)
			v.Assigned += a.Count()
		}
		out = append(out, v)
	}
	return out
}

// SwitchView is the global switch with its stop confirmation.
type SwitchView struct {
	*state.GlobalSwitch
	StopCompleteMS int64 `json:"stop_complete_ms,omitempty"`
}

// SwitchViewOf returns the global switch with its stop confirmation.
func SwitchViewOf(g *state.GlobalSwitch) SwitchView {
	return SwitchView{GlobalSwitch: g, StopCompleteMS: g.Stop.DurationMS()}
}

// Status is the keeper at a glance.
type Status struct {
	Switch   SwitchView      `json:"switch"`
	Runs     []*RunView      `json:"runs"`
	Schools  []SchoolView    `json:"schools"`
	Launches []*state.Launch `json:"launches"` // pending and running
	Time     time.Time       `json:"time"`
}

// Status returns the keeper at a glance: switch, active runs, schools,
// pending and running launches. ws, when given, watches what it read
// (except school heartbeats, which change every poll).
func (k *Keeper) Status(ws memdb.WatchSet) *Status {
	r := k.store.Read()
	st := &Status{Switch: SwitchViewOf(r.Switch(ws)), Runs: []*RunView{}, Schools: k.SchoolViews(r),
		Launches: []*state.Launch{}, Time: time.Now()}
	r.Assignments(ws)
	for _, run := range r.Runs(ws) {
		if run.Active() {
			st.Runs = append(st.Runs, k.RunView(r, run.ID))
		}
	}
	st.Launches = append(st.Launches, r.LaunchesIn(ws, state.LaunchPending)...)
	st.Launches = append(st.Launches, r.LaunchesIn(ws, state.LaunchRunning)...)
	return st
}
