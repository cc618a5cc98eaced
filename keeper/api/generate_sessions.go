package api

import (
	"strings"
	"time"

	"github.com/koipond/koipond/warehouse"
)

// Bounds of the sessions options of a generate request.
const (
	// minSessionGap and maxSessionGap bound session_gap: the learner
	// needs sessions to begin in distinct minutes; over a week one
	// session spans a user's whole export.
	minSessionGap = warehouse.MinSessionGap
	maxSessionGap = warehouse.MaxSessionGap
	// maxDropTransitions bounds drop_transitions, and maxDropTransition
	// the bytes of one "from>to".
	maxDropTransitions = 1000
	maxDropTransition  = 512
)

// sessionOptions checks the sessions fields of req and sets them in opts,
// each problem named by its field.
func sessionOptions(req generateRequest, opts *warehouse.Options) error {
	if !req.Sessions {
		switch {
		case req.SessionGap != "":
			return invalid("session_gap", "session_gap needs sessions: true (it splits sessions when learning call order)")
		case len(req.DropTransitions) > 0:
			return invalid("drop_transitions", "drop_transitions needs sessions: true (it leaves out learned transitions)")
		}
		return nil
	}
	opts.Sessions = true
	if req.SessionGap != "" {
		d, err := time.ParseDuration(req.SessionGap)
		if err != nil {
			return invalid("session_gap", "%s is not a duration such as 30m or 1h30m", quoteInput(req.SessionGap))
		}
		if d < minSessionGap || d > maxSessionGap {
			return invalid("session_gap", "%s is outside %s..%s", shortDuration(d), shortDuration(minSessionGap), shortDuration(maxSessionGap))
		}
		opts.SessionGap = d
	}
	if n := len(req.DropTransitions); n > maxDropTransitions {
		return invalid("drop_transitions", "%d transitions to drop: at most %d", n, maxDropTransitions)
	}
	seen := make(map[string]bool, len(req.DropTransitions))
	for i, t := range req.DropTransitions {
		if len(t) > maxDropTransition {
			return invalid("drop_transitions", "transition %d is %d bytes: at most %d", i+1, len(t), maxDropTransition)
		}
		from, to, ok := strings.Cut(t, ">")
		if !ok || strings.TrimSpace(from) == "" || strings.TrimSpace(to) == "" {
			return invalid("drop_transitions", "transition %d, %s, is not from>to (e.g. conversations.history>conversations.mark)", i+1, quoteInput(t))
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		opts.DropTransitions = append(opts.DropTransitions, t)
	}
	return nil
}

// shortDuration writes d without zero minutes and seconds: "1m", "168h"
// (time.Duration's String says "1m0s", "168h0m0s").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
