package warehouse

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// DefaultSessionGap splits a user's calls into sessions: a silence at
// least this long ends one (Options.SessionGap).
const DefaultSessionGap = 30 * time.Minute

// MinSessionGap is the shortest Options.SessionGap: sessions then begin
// in distinct minutes, so an entry's frequency is a probability per
// minute like every other.
const MinSessionGap = time.Minute

// MaxSessionGap is the longest Options.SessionGap: a session's delays
// are shorter than its gap, and the longest pause a behavior can hold
// (delay_after_ms) is a week.
const MaxSessionGap = 7 * 24 * time.Hour

// The bounds of session learning.
const (
	// MaxTransitionPairs is how many distinct (from, to) method pairs
	// are tracked with counts and a delay sketch; transitions between
	// pairs first seen after that are counted per From only (so the
	// probabilities stay right) and reported as untracked.
	MaxTransitionPairs = 4096
	// MaxFollowUps bounds a generated session's depth: the entry call
	// and at most this many learned follow-ups.
	MaxFollowUps = 6
	// MinPathProbability prunes generated follow-ups that fewer than
	// this share of the sessions beginning with the entry reach.
	MinPathProbability = 0.002
	// MaxSessionNodes bounds the follow-up branches of all generated
	// sessions together (the most travelled are kept), and
	// MaxEntryBehaviors the generated session behaviors.
	MaxSessionNodes   = 2000
	MaxEntryBehaviors = 500
	// delayAccuracy is the delay sketches' relative accuracy, and
	// delayBins their most bins (about 2.5 KiB each).
	delayAccuracy = 0.02
	delayBins     = 320
)

// Sessions is what Options.Sessions learns from a raw export: how each
// session begins, and first-order transitions between methods with their
// delays; the generated behavior set's sequences reproduce them.
type Sessions struct {
	// Gap is the silence that split sessions.
	Gap time.Duration `json:"gap_ns"`
	// Count is the number of sessions, Users the users they came from,
	// Calls the calls they hold, SingleCall the sessions of one call.
	Count      int64 `json:"count"`
	Users      int64 `json:"users"`
	Calls      int64 `json:"calls"`
	SingleCall int64 `json:"single_call_sessions"`
	// Entries are the methods sessions begin with, most frequent first.
	Entries []Entry `json:"entries"`
	// Transitions are the observed method-to-method steps within
	// sessions, by From then most frequent first.
	Transitions []Transition `json:"transitions"`
	// Ends are, per method, how often a session ends after it.
	Ends []End `json:"ends"`
	// TransitionCount counts every observed transition, Untracked those
	// between pairs past MaxTransitionPairs (not in Transitions).
	TransitionCount int64 `json:"transition_count"`
	Untracked       int64 `json:"untracked"`
	// Coverage is the share of the observed transitions (by count) that
	// the generated set reproduces: per transition the lesser of its
	// count and Reproduced, summed, over TransitionCount.
	Coverage float64 `json:"coverage"`
	// CallShare is the share of the export's calls the generated
	// sessions make over as many sessions (entry calls and follow-ups):
	// below 1 when sessions run longer than MaxFollowUps or take pruned
	// paths, so the generated load is lighter than the export's.
	CallShare float64 `json:"call_share"`
	// OutOfOrder counts calls more than 5 s earlier than the same user's
	// previous call in the export (clock skew between parts, or an
	// export out of time order): see Notes.
	OutOfOrder int64 `json:"out_of_order"`
	// Unsequenced lists the methods the generated sessions call with a
	// bare api request, having no sequence (Options.Sequences).
	Unsequenced []string `json:"unsequenced,omitempty"`
	// Notes say what could not be learned and why (no timestamps, one
	// call per user, clock skew, methods without a sequence).
	Notes []string `json:"notes,omitempty"`

	// behaviors are the generated session behaviors, for the output.
	behaviors []sessionBehavior
}

// Entry is a method sessions begin with.
type Entry struct {
	Method string `json:"method"`
	// Sessions that began with it, and Frequency its per-minute
	// frequency as an entry (the generated behavior's frequency):
	// sessions beginning with it per active user-minute.
	Sessions  int64   `json:"sessions"`
	Frequency float64 `json:"frequency"`
	// Hourly holds 24 multipliers of Frequency (with Options.Hourly), as
	// Method.Hourly: when in the day sessions begin with it.
	Hourly []float64 `json:"hourly,omitempty"`
	// Behavior names the generated session behavior ("" when left out).
	Behavior string `json:"behavior,omitempty"`
}

// Transition is one learned step: after a call of From, the user's next
// call in the session is To with Probability (Count of From's calls that
// had a next call were followed by To), after a delay.
type Transition struct {
	From        string  `json:"from"`
	To          string  `json:"to"`
	Count       int64   `json:"count"`
	Probability float64 `json:"probability"`
	// SE is Probability's standard error.
	SE float64 `json:"se"`
	// DelayP50MS and DelayP90MS are the delay quantiles, milliseconds;
	// DelayQuantilesMS the quantiles at 0, 0.1, …, 1 that the generated
	// steps draw from (the delay runs from one call's start to the next).
	DelayP50MS       int64   `json:"delay_p50_ms"`
	DelayP90MS       int64   `json:"delay_p90_ms"`
	DelayQuantilesMS []int64 `json:"delay_quantiles_ms"`
	// Reproduced is how many times the generated set is expected to make
	// this transition over as many sessions as the export holds.
	Reproduced float64 `json:"reproduced"`
	// Kept is false for a transition the generated set leaves out
	// (Options.DropTransitions, or pruned as too rare or too deep).
	Kept bool `json:"kept"`
	// Dropped is set when Options.DropTransitions named it.
	Dropped bool `json:"dropped,omitempty"`
}

// End is how often sessions end after a method.
type End struct {
	Method string `json:"method"`
	// Calls of the method within sessions, Ended the last of a session.
	Calls       int64   `json:"calls"`
	Ended       int64   `json:"ended"`
	Probability float64 `json:"probability"`
	SE          float64 `json:"se"`
}

// pairStat is one tracked (from, to) pair: lo and hi are its exact
// shortest and longest delays (the sketch's own estimates of them are
// off by up to its accuracy).
type pairStat struct {
	count  int64
	delay  *ddsketch.DDSketch
	lo, hi int64
}

// sessionLearner cuts each user's calls, in time order, into sessions
// and counts entries, transitions, delays and ends.
type sessionLearner struct {
	gapMS int64

	entries []int64 // per method: sessions beginning with it
	calls   []int64 // per method: calls within sessions
	ends    []int64 // per method: sessions ending with it
	pairs   map[uint32]*pairStat
	// hourOf, when set, gives a minute's local hour, and entryHourly
	// counts entries per method and hour.
	hourOf      func(minute int64) int
	entryHourly map[uint16]*[24]int64

	count, users, total, single, transitions, untracked int64

	// the current user
	lastMS  int64
	lastM   uint16
	sessLen int64
	started bool
}

func newSessionLearner(gap time.Duration, methods int) *sessionLearner {
	return &sessionLearner{gapMS: gap.Milliseconds(), entries: make([]int64, methods), calls: make([]int64, methods),
		ends: make([]int64, methods), pairs: map[uint32]*pairStat{}}
}

// call takes the next call of the stream, users in turn and each user's
// calls in time order.
func (l *sessionLearner) call(newUser bool, ms int64, m uint16) error {
	l.total++
	l.calls[m]++
	if newUser || !l.started || ms-l.lastMS >= l.gapMS {
		if newUser || !l.started {
			l.users++
		}
		l.endSession()
		l.count++
		l.entries[m]++
		l.sessLen = 1
		if l.hourOf != nil {
			h := l.entryHourly[m]
			if h == nil {
				h = new([24]int64)
				l.entryHourly[m] = h
			}
			h[l.hourOf(floorDiv(ms, 60_000))]++
		}
	} else {
		l.transitions++
		l.sessLen++
		key := uint32(l.lastM)<<16 | uint32(m)
		p := l.pairs[key]
		if p == nil && len(l.pairs) < MaxTransitionPairs {
			sk, err := ddsketch.LogCollapsingLowestDenseDDSketch(delayAccuracy, delayBins)
			if err != nil {
				return fmt.Errorf("learning sessions: a delay sketch: %w", err)
			}
			p = &pairStat{delay: sk, lo: ms - l.lastMS, hi: ms - l.lastMS}
			l.pairs[key] = p
		}
		if p == nil {
			l.untracked++
		} else {
			p.count++
			p.lo, p.hi = min(p.lo, ms-l.lastMS), max(p.hi, ms-l.lastMS)
			if err := p.delay.Add(float64(ms - l.lastMS)); err != nil {
				return fmt.Errorf("learning sessions: a delay of %d ms: %w", ms-l.lastMS, err)
			}
		}
	}
	l.started = true
	l.lastMS, l.lastM = ms, m
	return nil
}

func (l *sessionLearner) endSession() {
	if !l.started {
		return
	}
	l.ends[l.lastM]++
	if l.sessLen == 1 {
		l.single++
	}
}

// result turns the counts into Sessions; active is the export's active
// user-minutes, the denominator of entry frequencies.
func (l *sessionLearner) result(gap time.Duration, methods []string, active int64, occ [24]int64) *Sessions {
	l.endSession()
	l.started = false
	s := &Sessions{Gap: gap, Count: l.count, Users: l.users, Calls: l.total, SingleCall: l.single,
		TransitionCount: l.transitions, Untracked: l.untracked}
	for id, n := range l.entries {
		if n == 0 {
			continue
		}
		f := 0.0
		if active > 0 {
			f = min(1, float64(n)/float64(active))
		}
		e := Entry{Method: methods[id], Sessions: n, Frequency: f}
		if l.hourOf != nil {
			e.Hourly = hourlyProfile(*l.entryHourly[uint16(id)], occ)
		}
		s.Entries = append(s.Entries, e)
	}
	sort.Slice(s.Entries, func(i, j int) bool {
		if s.Entries[i].Sessions != s.Entries[j].Sessions {
			return s.Entries[i].Sessions > s.Entries[j].Sessions
		}
		return s.Entries[i].Method < s.Entries[j].Method
	})
	for id, n := range l.calls {
		if n == 0 {
			continue
		}
		p := float64(l.ends[id]) / float64(n)
		s.Ends = append(s.Ends, End{Method: methods[id], Calls: n, Ended: l.ends[id], Probability: p, SE: binomialSE(p, n)})
	}
	sort.Slice(s.Ends, func(i, j int) bool { return s.Ends[i].Method < s.Ends[j].Method })
	for key, p := range l.pairs {
		from, to := uint16(key>>16), uint16(key)
		n := l.calls[from] - l.ends[from] // From's calls that had a next call
		prob := float64(p.count) / float64(max(n, 1))
		t := Transition{From: methods[from], To: methods[to], Count: p.count, Probability: prob, SE: binomialSE(prob, n),
			DelayQuantilesMS: delayQuantiles(p)}
		t.DelayP50MS = min(max(quantileMS(p.delay, 0.5), p.lo), p.hi)
		t.DelayP90MS = min(max(quantileMS(p.delay, 0.9), p.lo), p.hi)
		s.Transitions = append(s.Transitions, t)
	}
	sortTransitions(s.Transitions)
	return s
}

func sortTransitions(ts []Transition) {
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].From != ts[j].From {
			return ts[i].From < ts[j].From
		}
		if ts[i].Count != ts[j].Count {
			return ts[i].Count > ts[j].Count
		}
		return ts[i].To < ts[j].To
	})
}

// binomialSE is the standard error of a proportion p out of n.
func binomialSE(p float64, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return math.Sqrt(p * (1 - p) / float64(n))
}

func quantileMS(sk *ddsketch.DDSketch, q float64) int64 {
	v, err := sk.GetValueAtQuantile(q)
	if err != nil || math.IsNaN(v) {
		return 0
	}
	return int64(math.Round(max(v, 0)))
}

// delayQuantiles are a pair's delay quantiles at 0, 0.1, …, 1 in ms: the
// ends its exact shortest and longest delays, the others the sketch's,
// never decreasing and never outside the delays observed (a sketch's
// estimate may be up to its accuracy above the longest, which could take
// a generated pause past the longest a behavior holds).
func delayQuantiles(p *pairStat) []int64 {
	out := make([]int64, 11)
	for i := range out {
		switch i {
		case 0:
			out[i] = p.lo
		case 10:
			out[i] = p.hi
		default:
			out[i] = min(max(quantileMS(p.delay, float64(i)/10), out[i-1]), p.hi)
		}
	}
	return out
}

// parseDrop reads a --drop-transition value "from>to".
func parseDrop(v string) (from, to string, ok bool) {
	from, to, ok = strings.Cut(v, ">")
	from, to = strings.TrimSpace(from), strings.TrimSpace(to)
	return from, to, ok && from != "" && to != ""
}

// learnSessions sorts the export's calls per user and time, learns the
// sessions and builds the generated session behaviors.
func (g *ingest) learnSessions(ctx context.Context, res *Result) error {
	gap := g.o.SessionGap
	if gap == 0 {
		gap = DefaultSessionGap
	}
	g.report("sessions")
	l := newSessionLearner(gap, len(g.cnt.methods))
	var occ [24]int64
	if g.o.Hourly {
		hc := &hourCache{loc: g.o.Timezone}
		l.hourOf, l.entryHourly = hc.hourOf, map[uint16]*[24]int64{}
		occ = hourOccurrences(floorDiv(g.minSec, 60), floorDiv(g.maxSec, 60), g.o.Timezone)
	}
	next := time.Now().Add(g.o.ProgressEvery)
	err := g.calls.each(ctx, func(_ []byte, newUser bool, ms int64, m uint16) error {
		if l.total&0xffff == 0 && time.Now().After(next) {
			next = time.Now().Add(g.o.ProgressEvery)
			g.report("sessions")
		}
		return l.call(newUser, ms, m)
	})
	if err != nil {
		return err
	}
	s := l.result(gap, g.cnt.methods, res.ActiveUserMinutes, occ)
	c := g.calls
	s.OutOfOrder = c.backInPart + c.backAcross
	if s.OutOfOrder > 0 {
		where := "within parts"
		switch {
		case c.backInPart == 0:
			where = "all across parts: the parts' clocks may disagree"
		case c.backAcross > 0:
			where = fmt.Sprintf("%d across parts (their clocks may disagree), %d within a part (not in time order)", c.backAcross, c.backInPart)
		default:
			where = "all within a part: the export is not in time order per user"
		}
		s.Notes = append(s.Notes, fmt.Sprintf("%s more than %v earlier than the same user's previous call in the export (%s; the largest step back is %v, user %s): "+
			"sessions are cut in timestamp order, so the order and delays around those calls may be wrong",
			plural64(s.OutOfOrder, "call was", "calls were"), skewTolerance, where, (time.Duration(c.maxBack)*time.Millisecond).Round(time.Millisecond), clip(c.backUser)))
	}
	if s.TransitionCount == 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("no transitions learned: each of the %s from %s holds a single call (no call came within %v of another by the same user), so only entries and their frequencies are written",
			plural64(s.Count, "session", "sessions"), plural64(s.Users, "user", "users"), gap))
	}
	if s.Untracked > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%s (%.1f%%) went between method pairs first seen after the %d tracked pairs: counted in the probabilities' denominators, not learned or generated",
			plural64(s.Untracked, "transition", "transitions"), 100*float64(s.Untracked)/float64(s.TransitionCount), MaxTransitionPairs))
	}
	b := &sessionBuild{seqSteps: g.seqSteps, sequencedOnly: g.o.SequencedOnly}
	if err := b.build(s, g.o.DropTransitions); err != nil {
		return err
	}
	res.Sessions = s
	return nil
}

func plural64(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return commas(n) + " " + many
}
