package keeper

import (
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
)

// reasonsOf returns a merged series' failure reasons as the keeper shows
// them (most frequent first, "other" last; nil when it has none). The
// schools bounded and escaped them; the snapshot decoder checked that.
func reasonsOf(ss *metrics.SeriesSnapshot) []state.Reason {
	if len(ss.Reasons) == 0 {
		return nil
	}
	out := make([]state.Reason, len(ss.Reasons))
	for i, r := range ss.Reasons {
		out[i] = state.Reason{Reason: r.Reason, Count: r.Count, Sample: r.Sample}
	}
	return out
}
