package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/warehouse"
)

// callModel is a known first-order call order: sessions begin with an
// entry method and go on to the next method with the probabilities of
// next (what is left of a row is the session's end), after a delay drawn
// uniformly from delay.
type callModel struct {
	methods []string
	entry   []float64   // by method; sums to 1
	next    [][]float64 // next[from][to]
	delay   [][2]time.Duration
}

// sessionModel has six of pond's methods. Sessions begin with
// conversations.list or users.list, which nothing leads back to, so at
// pond every pair ending in an entry method is the seam between two
// sessions and is left out of the comparison. Every kept branch is
// likely enough that a generator pruning paths under 1 % at depth ≤ 4
// keeps the ones that carry most of the counts.
func sessionModel() callModel {
	return callModel{
		methods: []string{"conversations.list", "users.list", "conversations.history", "conversations.info", "users.info", "conversations.members"},
		entry:   []float64{0.6, 0.4, 0, 0, 0, 0},
		next: [][]float64{
			{0, 0, 0.7, 0.2, 0, 0},   // conversations.list → history 0.7, info 0.2; end 0.1
			{0, 0, 0, 0, 0.6, 0.3},   // users.list → users.info 0.6, members 0.3; end 0.1
			{0, 0, 0, 0.5, 0.3, 0},   // history → info 0.5, users.info 0.3; end 0.2
			{0, 0, 0.5, 0, 0, 0.35},  // info → history 0.5, members 0.35; end 0.15
			{0, 0, 0.4, 0, 0, 0.4},   // users.info → history 0.4, members 0.4; end 0.2
			{0, 0, 0, 0.35, 0.35, 0}, // members → info 0.35, users.info 0.35; end 0.3
		},
		delay: [][2]time.Duration{
			{2 * time.Second, 6 * time.Second}, {1 * time.Second, 4 * time.Second}, {3 * time.Second, 9 * time.Second},
			{1 * time.Second, 3 * time.Second}, {2 * time.Second, 5 * time.Second}, {1 * time.Second, 6 * time.Second},
		},
	}
}

// draw returns the index i with probability p[i], or -1 for what is left.
func draw(r *rand.Rand, p []float64) int {
	u := r.Float64()
	for i, x := range p {
		if u < x {
			return i
		}
		u -= x
	}
	return -1
}

// writeExport writes a raw call log drawn from m to path: users users
// over span, each user's sessions separated by silences of 6–14 minutes
// (the learner splits at 5), and returns the true transition counts.
func (m callModel) writeExport(t *testing.T, path string, users int, span time.Duration, seed uint64) map[[2]int]int {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 18))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "user,method,timestamp")
	counts := map[[2]int]int{}
	start := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for u := range users {
		at := start.Add(time.Duration(r.Int64N(int64(5 * time.Minute))))
		for at.Before(start.Add(span)) {
			cur := draw(r, m.entry)
			for n := 0; cur >= 0 && n < 40; n++ {
				fmt.Fprintf(w, "U%d,%s,%d\n", u, m.methods[cur], at.UnixMilli())
				nx := draw(r, m.next[cur])
				if nx < 0 {
					break
				}
				counts[[2]int{cur, nx}]++
				d := m.delay[nx]
				at = at.Add(d[0] + time.Duration(r.Int64N(int64(d[1]-d[0]))))
				cur = nx
			}
			at = at.Add(6*time.Minute + time.Duration(r.Int64N(int64(8*time.Minute))))
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// sessionSequences gives each model method one request step pond answers
// without state, so every session step succeeds.
const sessionSequences = `{ "behaviors": {
  "conversations.list":    { "steps": [ { "request": { "type": "api", "method": "conversations.list", "args": { "limit": "20" } } } ] },
  "users.list":            { "steps": [ { "request": { "type": "api", "method": "users.list", "args": { "limit": "20" } } } ] },
  "conversations.history": { "steps": [ { "request": { "type": "api", "method": "conversations.history", "args": { "channel": "C000000", "limit": "5" } } } ] },
  "conversations.info":    { "steps": [ { "request": { "type": "api", "method": "conversations.info", "args": { "channel": "C000000" } } } ] },
  "users.info":            { "steps": [ { "request": { "type": "api", "method": "users.info", "args": { "user": "U000001" } } } ] },
  "conversations.members": { "steps": [ { "request": { "type": "api", "method": "conversations.members", "args": { "channel": "C000001", "limit": "20" } } } ] }
} }`

// The end-to-end check of learned call order: a synthetic export
// drawn from a known Markov model (6 methods, 200 users × 2 hours) is
// generated with sessions, the generated set runs against pond (64 koi
// straight at pond on their own scheduler, one session at a time each,
// time 600× faster, 200× under the race detector), and the transition shares pond counts per token are
// the model's within 4 SE for every transition with enough counts, while
// no pair the model lacks is ever made.
func TestGeneratedSessionsReproduceTransitionsAtPond(t *testing.T) {
	dir := t.TempDir()
	m := sessionModel()
	export := filepath.Join(dir, "calls.csv")
	truth := m.writeExport(t, export, 200, 2*time.Hour, 1)
	seqPath := filepath.Join(dir, "sequences.json")
	if err := os.WriteFile(seqPath, []byte(sessionSequences), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := warehouse.Generate(ctx, warehouse.Options{From: export, Sessions: true, SessionGap: 5 * time.Minute,
		Sequences: seqPath, SequencedOnly: true}, nil)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if res.Sessions == nil || len(res.Sessions.Transitions) == 0 {
		t.Fatalf("no sessions learned: %+v", res.Sessions)
	}
	var file bytes.Buffer
	if err := res.Encode(&file); err != nil {
		t.Fatal(err)
	}
	set, diags := behaviors.Parse(behaviors.File{Name: "generated.json", Data: file.Bytes()},
		behaviors.File{Name: "sequences.json", Data: []byte(sessionSequences)})
	if set == nil || diags.HasErrors() {
		t.Fatalf("the generated set does not validate: %v\n%s", diags, file.Bytes())
	}
	idx := map[string]int{}
	for i, name := range m.methods {
		idx[name] = i
	}
	var inExport int
	for _, n := range truth {
		inExport += n
	}
	t.Logf("export: %d sessions of %d users, %d distinct transitions, %d in all; coverage %.3f",
		res.Sessions.Count, res.Sessions.Users, len(res.Sessions.Transitions), inExport, res.Sessions.Coverage)

	// Pond, and koi running the generated set on their own scheduler
	// (time 600× faster): entries fire at their frequencies, choose
	// branches and learned delays run in each koi's executor. Two
	// sessions of one koi would overlap (a koi begins one every ~80 s of
	// behavior time, and request latency on a busy machine stretches each
	// well past its ~20 s), interleaving their calls at pond; the
	// generated behaviors are "exclusive": "session", so a koi runs one
	// session at a time as its user does, and a session that fires while
	// another runs waits for it.
	scheduled := 0
	for _, b := range set.Behaviors {
		if b.HasFrequency {
			scheduled++
			if b.Exclusive != warehouse.SessionGroup {
				t.Errorf("%s: exclusive %q, want %q", b.Name, b.Exclusive, warehouse.SessionGroup)
			}
		}
	}
	if scheduled != 2 {
		t.Fatalf("%d scheduled behaviors, want one session behavior per entry method (2)", scheduled)
	}
	const nKoi = 64
	scale := 600.0
	if raceEnabled { // requests take longer in wall time: keep sessions short of the time between them
		scale = 200
	}
	p, err := pond.Open(ctx, pond.Config{Users: nKoi, Channels: 5, HistoryPerChannel: 10, DisableRateLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rt, err := koi.NewRuntime(koi.RuntimeConfig{Set: set, APIBase: p.URL() + "/api", TimeScale: scale, HTTPClient: koi.NewHTTPClient(nKoi, nil)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	kois := make([]*koi.Koi, nKoi)
	for i := range nKoi {
		k := rt.New(behaviors.Identity{Index: i, UserID: pond.UserID(i), Token: pond.Token(i)}, 1)
		kois[i] = k
		wg.Go(func() { k.Run(runCtx) })
	}
	// The pairs the model makes; pairs ending in an entry method are the
	// seams between sessions.
	inModel := func(from, to string) bool {
		fi, ok1 := idx[from]
		ti, ok2 := idx[to]
		return ok1 && ok2 && m.next[fi][ti] > 0
	}
	entries := map[string]bool{}
	for i, e := range m.entry {
		if e > 0 {
			entries[m.methods[i]] = true
		}
	}
	modelPairs := func(tr pond.Transitions) (n uint64) {
		for _, x := range tr.Transitions {
			if inModel(x.From, x.To) {
				n += x.Count
			}
		}
		return n
	}
	const wantPairs = 6000
	began := time.Now()
	for modelPairs(p.Transitions(0)) < wantPairs && time.Since(began) < 40*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	wg.Wait()
	got := p.Transitions(0)
	var st koi.Stats
	for _, k := range kois {
		s := k.Stats()
		st.Behaviors += s.Behaviors
		st.Minutes += s.Minutes
		st.ExclusiveDropped += s.ExclusiveDropped
	}
	snap := rt.Metrics().Snapshot()
	var sessionsOK, sessionsFailed uint64
	for key, s := range snap.Series {
		if !strings.HasPrefix(key, "behavior:session:") {
			continue
		}
		for o, n := range s.Counts {
			switch {
			case metrics.Outcome(o) == metrics.OK:
				sessionsOK += n
			case metrics.Outcome(o).Failure():
				sessionsFailed += n
			}
		}
	}
	t.Logf("pond: %d pairs of the model's transitions after %v; koi: %d minutes planned, %d sessions started (%d ok, %d failed), %d dropped (4 already waiting)",
		modelPairs(got), time.Since(began).Round(time.Millisecond), st.Minutes, st.Behaviors, sessionsOK, sessionsFailed, st.ExclusiveDropped)
	if modelPairs(got) < wantPairs/4 {
		t.Fatalf("only %d pairs in %v: the koi did not run the generated sessions", modelPairs(got), time.Since(began))
	}
	if sessionsFailed > uint64(st.Behaviors)/100 {
		t.Errorf("%d of %d sessions failed against pond", sessionsFailed, st.Behaviors)
	}

	// Shares at pond, per From over the model's targets, against the
	// model's. Any other pair (not a seam) is one the generated sessions
	// should never make.
	byFrom := map[string]uint64{}
	counts := map[[2]string]uint64{}
	for _, x := range got.Transitions {
		switch {
		case entries[x.To]:
		case inModel(x.From, x.To):
			byFrom[x.From] += x.Count
			counts[[2]string{x.From, x.To}] += x.Count
		default:
			t.Errorf("pond counted %s → %s × %d: the model never makes it", x.From, x.To, x.Count)
		}
	}

	// What the generator learned: the set carries those estimates, so
	// pond's share differs from the model by the export's sampling error
	// and by pond's own; z uses both. The learner must have counted
	// exactly the export's transitions.
	exportFrom := map[string]int{}
	for k, n := range truth {
		exportFrom[m.methods[k[0]]] += n
	}
	for _, x := range res.Sessions.Transitions {
		fi, ok1 := idx[x.From]
		ti, ok2 := idx[x.To]
		if !ok1 || !ok2 || int64(truth[[2]int{fi, ti}]) != x.Count {
			t.Errorf("learned %s → %s × %d, the export holds it × %d", x.From, x.To, x.Count, truth[[2]int{fi, ti}])
		}
		if !x.Kept {
			t.Logf("%s → %s (%d) is not kept in the generated set", x.From, x.To, x.Count)
		}
	}
	// What the generated set itself makes, walked from its sequences:
	// each pair's expected count per koi-minute, over the model's pairs.
	setMass := expectedPairs(set)
	setFrom := map[string]float64{}
	for k, v := range setMass {
		if inModel(k[0], k[1]) {
			setFrom[k[0]] += v
		} else {
			t.Errorf("the generated set makes %s → %s, which the model never does", k[0], k[1])
		}
	}
	type row struct {
		from, to                               string
		want, learned, inSet, got, se, z, zSet float64
		n                                      uint64
	}
	var rows []row
	for fi, from := range m.methods {
		cont := 0.0
		for _, p := range m.next[fi] {
			cont += p
		}
		n := byFrom[from]
		for ti, to := range m.methods {
			want := m.next[fi][ti] / cont
			c := counts[[2]string{from, to}]
			if want == 0 {
				continue
			}
			if n < 100 {
				t.Logf("%s → %s: only %d pairs from %s: not compared", from, to, c, from)
				continue
			}
			share := float64(c) / float64(n)
			pondSE := math.Sqrt(want * (1 - want) / float64(n))
			ne := exportFrom[from]
			learned := float64(truth[[2]int{fi, ti}]) / float64(max(ne, 1))
			se := math.Hypot(pondSE, math.Sqrt(want*(1-want)/float64(max(ne, 1))))
			inSet := setMass[[2]string{from, to}] / max(setFrom[from], 1e-12)
			setSE := math.Sqrt(inSet * (1 - inSet) / float64(n))
			rows = append(rows, row{from, to, want, learned, inSet, share, se, (share - want) / se, (share - inSet) / setSE, c})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return math.Abs(rows[i].z) > math.Abs(rows[j].z) })
	for _, r := range rows {
		t.Logf("%-22s → %-22s model %.3f learned %.3f set %.3f pond %.3f (%5d pairs) z %+.2f (vs the set %+.2f)",
			r.from, r.to, r.want, r.learned, r.inSet, r.got, r.n, r.z, r.zSet)
		if math.Abs(r.z) > 4 {
			t.Errorf("%s → %s: pond share %.3f, model %.3f: %.1f SE off", r.from, r.to, r.got, r.want, r.z)
		}
	}
	if len(rows) < 8 {
		t.Errorf("only %d transitions had enough counts to compare", len(rows))
	}
}

// expectedPairs walks a set's scheduled behaviors and returns, per
// (method, next method) pair, how often a koi makes it per minute: the
// behavior's frequency times the weights of the choose branches leading
// there.
func expectedPairs(set *behaviors.Set) map[[2]string]float64 {
	out := map[[2]string]float64{}
	var walk func(seq *behaviors.Sequence, prev string, mass float64)
	walk = func(seq *behaviors.Sequence, prev string, mass float64) {
		if seq == nil {
			return
		}
		for i := range seq.Steps {
			st := &seq.Steps[i]
			if st.Request != nil && st.Request.Type == behaviors.API {
				if prev != "" {
					out[[2]string{prev, st.Request.Method}] += mass
				}
				prev = st.Request.Method
			}
			for _, b := range st.Choose {
				walk(b.Sequence, prev, mass*b.Weight)
			}
		}
	}
	for _, b := range set.Behaviors {
		if b.HasFrequency {
			walk(b.Sequence, "", b.Frequency)
		}
	}
	return out
}
