package warehouse

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
)

// markov is a known session model: entry probabilities, and per method
// the next method's probabilities (the rest ends the session), each
// transition with a log-normal delay of the given median (σ = delaySigma).
type markov struct {
	entry map[string]float64
	next  map[string]map[string]float64
	// median delay per transition, seconds
	median map[[2]string]float64
}

const delaySigma = 0.8

var sessionModel = markov{
	entry: map[string]float64{"conversations.history": 0.55, "users.setPresence": 0.3, "users.info": 0.15},
	next: map[string]map[string]float64{
		"conversations.history": {"conversations.mark": 0.45, "chat.postMessage": 0.15, "reactions.add": 0.10},
		"conversations.mark":    {"chat.postMessage": 0.30, "reactions.add": 0.15, "conversations.history": 0.15},
		"chat.postMessage":      {"reactions.add": 0.20, "conversations.history": 0.25, "users.info": 0.10},
		"reactions.add":         {"chat.postMessage": 0.25, "conversations.history": 0.20},
		"users.info":            {"chat.postMessage": 0.40, "conversations.history": 0.20},
		"users.setPresence":     {"conversations.history": 0.50, "users.info": 0.20},
	},
	median: map[[2]string]float64{
		{"conversations.history", "conversations.mark"}: 2,
		{"conversations.history", "chat.postMessage"}:   20,
		{"conversations.history", "reactions.add"}:      8,
		{"conversations.mark", "chat.postMessage"}:      15,
		{"conversations.mark", "reactions.add"}:         6,
		{"conversations.mark", "conversations.history"}: 30,
		{"chat.postMessage", "reactions.add"}:           10,
		{"chat.postMessage", "conversations.history"}:   25,
		{"chat.postMessage", "users.info"}:              12,
		{"reactions.add", "chat.postMessage"}:           18,
		{"reactions.add", "conversations.history"}:      22,
		{"users.info", "chat.postMessage"}:              9,
		{"users.info", "conversations.history"}:         5,
		{"users.setPresence", "conversations.history"}:  3,
		{"users.setPresence", "users.info"}:             7,
	},
}

// pick draws a key of probs (sorted for determinism); "" for the rest.
func pick(r *rand.Rand, probs map[string]float64) string {
	keys := make([]string, 0, len(probs))
	for k := range probs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	u, acc := r.Float64(), 0.0
	for _, k := range keys {
		acc += probs[k]
		if u < acc {
			return k
		}
	}
	return ""
}

// simulate makes the model's calls: users each over span from start, in
// sessions separated by at least the gap (plus an exponential wait), in
// time order per user.
func (m markov) simulate(seed uint64, users int, start time.Time, span, gap time.Duration) []call {
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	var out []call
	for u := range users {
		user := fmt.Sprintf("U%04d", u)
		t := start.Add(time.Duration(r.Float64() * float64(10*time.Minute)))
		for t.Before(start.Add(span)) {
			method := pick(r, m.entry)
			for method != "" {
				out = append(out, call{User: user, Method: method, T: t})
				nxt := pick(r, m.next[method])
				if nxt == "" {
					break
				}
				d := m.median[[2]string{method, nxt}] * math.Exp(delaySigma*r.NormFloat64())
				t = t.Add(time.Duration(d * float64(time.Second)))
				method = nxt
			}
			t = t.Add(gap + time.Second + time.Duration(r.ExpFloat64()*float64(2*time.Minute)))
		}
	}
	return out
}

// writeCalls writes calls as a CSV raw export with millisecond timestamps.
func writeCalls(t testing.TB, dir, name string, calls []call) string {
	var b bytes.Buffer
	b.WriteString("user,method,timestamp\n")
	for _, c := range calls {
		fmt.Fprintf(&b, "%s,%s,%s\n", c.User, c.Method, c.T.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	return writeFile(t, dir, name, b.Bytes())
}

// recoveryFailures compares learned sessions with the model: every
// transition's probability (given the session goes on) and every end
// probability within 4 standard errors of the truth, no transition the
// model never makes, entries within 4 SE, and the delays' p50 and p90
// within 4 standard errors of a sample quantile plus the sketch's
// accuracy.
func (m markov) recoveryFailures(s *Sessions) []string {
	var fails []string
	endP := func(from string) float64 {
		p := 1.0
		for _, q := range m.next[from] {
			p -= q
		}
		return p
	}
	for _, e := range s.Ends {
		want := endP(e.Method)
		se := binomialSE(want, e.Calls)
		if math.Abs(e.Probability-want) > 4*se {
			fails = append(fails, fmt.Sprintf("end after %s: %.4f, want %.4f ± %.4f (4 SE)", e.Method, e.Probability, want, 4*se))
		}
	}
	calls := map[string]int64{}
	ended := map[string]int64{}
	for _, e := range s.Ends {
		calls[e.Method], ended[e.Method] = e.Calls, e.Ended
	}
	seen := map[[2]string]bool{}
	for _, tr := range s.Transitions {
		key := [2]string{tr.From, tr.To}
		seen[key] = true
		q, ok := m.next[tr.From][tr.To]
		if !ok {
			fails = append(fails, fmt.Sprintf("%s>%s: seen %d times, but the model never makes it", tr.From, tr.To, tr.Count))
			continue
		}
		want := q / (1 - endP(tr.From))
		n := calls[tr.From] - ended[tr.From]
		se := binomialSE(want, n)
		if math.Abs(tr.Probability-want) > 4*se {
			fails = append(fails, fmt.Sprintf("%s>%s: probability %.4f, want %.4f ± %.4f (4 SE, n=%d)", tr.From, tr.To, tr.Probability, want, 4*se, n))
		}
		if tr.Count < 30 {
			continue
		}
		// The SE of a sample quantile p of a log-normal, relative to the
		// quantile: σ/φ(z_p) · sqrt(p(1−p)/n).
		med := m.median[key] * 1000
		for _, qq := range []struct {
			p, z, phi float64
			got       int64
		}{{0.5, 0, 0.398942, tr.DelayP50MS}, {0.9, 1.281552, 0.175498, tr.DelayP90MS}} {
			// Compared on a log scale, where a log-normal's sample
			// quantile is about symmetric (its SE is the relative one).
			truth := med * math.Exp(delaySigma*qq.z)
			rel := 4*delaySigma/qq.phi*math.Sqrt(qq.p*(1-qq.p)/float64(tr.Count)) + delayAccuracy
			if math.Abs(math.Log(float64(max(qq.got, 1))/truth)) > rel {
				fails = append(fails, fmt.Sprintf("%s>%s: delay p%.0f %d ms, want %.0f ms × e^±%.2f (n=%d)", tr.From, tr.To, 100*qq.p, qq.got, truth, rel, tr.Count))
			}
		}
	}
	for from, nexts := range m.next {
		for to := range nexts {
			if !seen[[2]string{from, to}] {
				fails = append(fails, fmt.Sprintf("%s>%s: never learned", from, to))
			}
		}
	}
	for _, e := range s.Entries {
		want := m.entry[e.Method]
		se := binomialSE(want, s.Count)
		if got := float64(e.Sessions) / float64(s.Count); math.Abs(got-want) > 4*se {
			fails = append(fails, fmt.Sprintf("entry %s: %.4f of sessions, want %.4f ± %.4f (4 SE)", e.Method, got, want, 4*se))
		}
	}
	return fails
}

// A synthetic export from a known Markov model (6 pond methods, 200 users × 2
// hours, seeded) is recovered: every transition's probability and every
// end within 4 SE, the delays' p50 and p90 within 4 SE of a sample
// quantile (plus the sketch's 2%), the entries within 4 SE. The same
// export shuffled and sorted on disk in tiny chunks gives the same
// sessions. A learner that does not split sessions at the gap fails.
func TestSessionsRecoverMarkovModel(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	calls := sessionModel.simulate(7, 200, start, 2*time.Hour, DefaultSessionGap)
	// Two parts, each in time order, users split between them.
	var a, b []call
	for _, c := range calls {
		if c.User[len(c.User)-1]%2 == 0 {
			a = append(a, c)
		} else {
			b = append(b, c)
		}
	}
	byTime := func(x, y call) int { return x.T.Compare(y.T) }
	slices.SortStableFunc(a, byTime)
	slices.SortStableFunc(b, byTime)
	writeCalls(t, filepath.Join(dir, "export"), "part-0.csv", a)
	writeCalls(t, filepath.Join(dir, "export"), "part-1.csv", b)

	res := generate(t, Options{From: filepath.Join(dir, "export"), Sessions: true})
	s := res.Sessions
	if s == nil {
		t.Fatal("no sessions learned")
	}
	t.Logf("%d calls, %d sessions of %d users, %d transitions, coverage %.3f, notes %q", s.Calls, s.Count, s.Users, s.TransitionCount, s.Coverage, s.Notes)
	if s.Users != 200 || s.Calls != int64(len(calls)) {
		t.Errorf("users %d, calls %d; want 200, %d", s.Users, s.Calls, len(calls))
	}
	if s.OutOfOrder != 0 || s.Untracked != 0 {
		t.Errorf("out of order %d, untracked %d; want none", s.OutOfOrder, s.Untracked)
	}
	for _, f := range sessionModel.recoveryFailures(s) {
		t.Error(f)
	}
	// Entry frequencies are sessions per active user-minute.
	for _, e := range s.Entries {
		if want := float64(e.Sessions) / float64(res.ActiveUserMinutes); math.Abs(e.Frequency-want) > 1e-12 || e.Behavior != "session:"+e.Method {
			t.Errorf("entry %+v: want frequency %g and behavior session:%s", e, want, e.Method)
		}
	}

	// The output validates as is, and its session behaviors reproduce
	// most of the transitions within 4 follow-ups.
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	set, diags := behaviors.Parse(behaviors.File{Name: "sessions.json", Data: out.Bytes()})
	if set == nil {
		t.Fatalf("the generated set does not load: %v", diags)
	}
	if len(set.Behaviors) != len(s.Entries) {
		t.Errorf("%d behaviors written, want one per entry (%d)", len(set.Behaviors), len(s.Entries))
	}
	// Reproduced is an expectation from the learned chain: summed over
	// the transitions it must match how many of the export's transitions
	// come within MaxFollowUps of their session's start, less the paths
	// pruned under MinPathProbability (a few percent here).
	var reachable, reproduced float64
	depth := 0
	for i, c := range calls {
		if i == 0 || c.User != calls[i-1].User || c.T.Sub(calls[i-1].T) >= DefaultSessionGap {
			depth = 0
			continue
		}
		if depth++; depth <= MaxFollowUps {
			reachable++
		}
	}
	for _, tr := range s.Transitions {
		reproduced += tr.Reproduced
	}
	t.Logf("the generated sessions make %.0f transitions where the export has %.0f within %d follow-ups; %.3f of the calls", reproduced, reachable, MaxFollowUps, s.CallShare)
	if ratio := reproduced / reachable; ratio < 0.9 || ratio > 1.05 {
		t.Errorf("the generated sessions make %.0f transitions where the export has %.0f within %d follow-ups (%.3f)", reproduced, reachable, MaxFollowUps, ratio)
	}
	if s.CallShare < 0.9 || s.CallShare > 1.05 {
		t.Errorf("the generated sessions make %.3f of the calls, want about all", s.CallShare)
	}
	if s.Coverage < 0.85 || s.Coverage > 1 {
		t.Errorf("coverage %.3f, want at least 0.85 for sessions this short", s.Coverage)
	}

	// Shuffled, in one part: the same sessions (the sort is exact; its
	// spilling and merging are tested by TestCallSorterSpillsAndKeepsEveryCall),
	// but the calls out of time order are noted.
	shuffled := slices.Clone(calls)
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	writeCalls(t, dir, "shuffled.csv", shuffled)
	res2 := generate(t, Options{From: filepath.Join(dir, "shuffled.csv"), Sessions: true})
	s2 := res2.Sessions
	if s2.OutOfOrder == 0 || len(s2.Notes) == 0 || !strings.Contains(strings.Join(s2.Notes, "\n"), "not in time order") {
		t.Errorf("a shuffled export: out of order %d, notes %q; want them counted and noted", s2.OutOfOrder, s2.Notes)
	}
	s2.OutOfOrder, s2.Notes, s.Notes = 0, nil, nil
	if !reflect.DeepEqual(s.Transitions, s2.Transitions) || !reflect.DeepEqual(s.Entries, s2.Entries) || !reflect.DeepEqual(s.Ends, s2.Ends) {
		t.Errorf("sorted on disk, the sessions differ:\n%+v\n%+v", s.Transitions[:3], s2.Transitions[:3])
	}

	// A wrong learner: one session per user (the gap never splits).
	wrong := generate(t, Options{From: filepath.Join(dir, "export"), Sessions: true, SessionGap: 24 * time.Hour})
	if fails := sessionModel.recoveryFailures(wrong.Sessions); len(fails) == 0 {
		t.Error("a learner that does not split sessions at the gap recovers the model: the test cannot tell")
	} else {
		t.Logf("not splitting at the gap fails %d checks, e.g. %s", len(fails), fails[0])
	}
}

// With a sequences file the sessions call each method through its own
// steps (the last step's pause left to the learned delay), and the output
// loads beside that file; methods without one are named.
func TestSessionsUseSequences(t *testing.T) {
	dir := t.TempDir()
	calls := sessionModel.simulate(3, 60, time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC), time.Hour, DefaultSessionGap)
	calls = append(calls, call{User: "Zed", Method: "files.upload", T: calls[0].T}, call{User: "Zed", Method: "search.messages", T: calls[0].T.Add(time.Second)})
	path := writeCalls(t, dir, "calls.csv", calls)
	seqs := "../examples/slack/sequences.json"
	res := generate(t, Options{From: path, Sessions: true, Sequences: seqs})
	s := res.Sessions
	if !slices.Equal(s.Unsequenced, []string{"files.upload", "search.messages"}) {
		t.Errorf("unsequenced %q, want the two methods the file has no sequence for", s.Unsequenced)
	}
	if notes := strings.Join(s.Notes, "\n"); !strings.Contains(notes, "2 methods have no sequence") || !strings.Contains(notes, "files.upload, search.messages") {
		t.Errorf("notes %q, want the methods without a sequence named", s.Notes)
	}
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	gen := writeFile(t, dir, "sessions.json", out.Bytes())
	alone, diags := behaviors.Load(gen)
	if alone == nil {
		t.Fatalf("the generated set does not load alone: %v", diags)
	}
	set, diags := behaviors.Load(gen, seqs)
	if set == nil {
		t.Fatalf("the generated set does not load beside %s: %v", seqs, diags)
	}
	b := set.Behavior("session:conversations.history")
	if b == nil || !b.HasFrequency || b.Sequence == nil {
		t.Fatalf("session:conversations.history = %+v", b)
	}
	for _, sb := range set.Behaviors {
		if strings.HasPrefix(sb.Name, "session:") && sb.Exclusive != SessionGroup {
			t.Errorf("%s: exclusive %q, want %q (one session at a time per koi)", sb.Name, sb.Exclusive, SessionGroup)
		}
	}
	first := b.Sequence.Steps[0]
	if first.Request == nil || first.Request.Method != "conversations.history" || len(first.Pre) != 3 {
		t.Errorf("the entry step is not conversations.history's own step: %+v", first)
	}
	if len(b.Sequence.Steps) < 2 || len(b.Sequence.Steps[len(b.Sequence.Steps)-1].Choose) == 0 {
		t.Errorf("the entry is not followed by a choose step: %d steps", len(b.Sequence.Steps))
	}
	if set.Boot == nil {
		t.Error("the sequences file's boot is lost")
	}
	posts := 0
	b.Sequence.EachStep(func(st *behaviors.Step) {
		if st.Request != nil && st.Request.Method == "chat.postMessage" {
			posts++
			if st.DelayAfter != 0 {
				t.Errorf("%s keeps its own pause %v (3000 ms in the file): the learned delay replaces it", st.Where, st.DelayAfter)
			}
		}
	})
	if posts == 0 {
		t.Error("no chat.postMessage follows conversations.history")
	}
}
