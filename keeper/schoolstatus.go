package keeper

import (
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// A poll may be megabytes within the wire's bounds (a thousand runs and a
// thousand launches, each with text up to wire.MaxText), and any holder
// of the school credentials may poll under any id. The keeper kept each
// school's last poll whole, for ever, and served every one of them in
// every status call and every status event: schools polling under a few
// dozen ids grew the keeper by hundreds of megabytes, and each GET
// /api/v1/status with it. So it keeps of a poll only what its readers
// read: the views (run koi counts, refusals, a school's totals), the
// launch planner (connected koi of runs a school holds), run stops
// (schools still holding a run's koi) and the quarantine (a lost
// school's koi of a run); see state.SchoolStatus.

// Bounds of what is kept of a poll's text.
const (
	// maxSoftware bounds the software version a school states (kept, and
	// persisted, per school).
	maxSoftware = 128
	// maxStatusText bounds the text kept of a school's report on a run (a
	// refusal reason).
	maxStatusText = 256
)

// schoolStatus is what the keeper keeps of a poll (see state.SchoolStatus):
// its totals, and an entry for each run of the keeper's that the school
// holds koi of (held), or that is active or stopping, under the keeper's
// own run id. A refusal counts only from a school holding the run (as in
// noteRefusals); memory pressure is the quarantine's, read from the poll.
func schoolStatus(r *state.Reader, req *wire.PollRequest, held map[string]int) *state.SchoolStatus {
	st := &state.SchoolStatus{Header: req.Header, School: req.School, Software: notify.Clip(req.Software, maxSoftware),
		Capacity: req.Capacity, Clock: req.Clock, Epoch: req.Epoch, SelfPaused: req.SelfPaused, OffsetMS: req.OffsetMS,
		KoiRunning: req.KoiRunning, WebsocketsOpen: req.WebsocketsOpen}
	for _, rs := range req.Runs {
		run := r.Run(nil, rs.Run)
		if run == nil {
			continue
		}
		_, holds := held[run.ID]
		if !holds && !run.Active() && (run.Stop == nil || run.Stop.Complete()) {
			continue
		}
		e := wire.RunStatus{Run: run.ID, From: rs.From, To: rs.To, Target: rs.Target, Koi: rs.Koi, Epoch: rs.Epoch}
		if holds {
			e.Refused = notify.Clip(rs.Refused, maxStatusText)
		}
		st.Runs = append(st.Runs, e)
	}
	return st
}
