package keeper

import (
	"sync"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/formations"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/wire"
)

// What the keeper reads of stored files is parsed once per content hash
// (a stored file never changes) and kept here, and it is parsed before a
// write, never in one: every write holds the store's one write lock, and
// a global stop waits for that lock. Parsing a large set or formation
// takes about a second; four run creations that each parsed theirs in
// their write kept a stop waiting 4.5 s. Callers warm the cache outside
// their write (setFactsOf, formFactsOf on what a read found); inside the
// write the same call finds it. A miss in a write (a new version stored
// between the two) parses there, as everything did before.

// setFacts is what the keeper's checks read of a behavior set.
type setFacts struct {
	parsed bool // false: the stored files no longer parse
	hasAPI bool // some sequence sends api requests (a set that does not parse counts as one that does)
	// apiMethods are the methods the boot sequence and the behaviors
	// call (thresholdWarnings).
	apiMethods map[string]bool
	// fidelity are its background behaviors as the fidelity verdict reads
	// them (fidelitySpecs); nil when it does not parse.
	fidelity []verdict.FidelitySpec
}

// formFacts is what launches read of a formation: the formation without
// its sequence and doc (its name, percent, window and parameters), whether
// its sequence sends api requests, or why it no longer parses.
type formFacts struct {
	lite   *formations.Formation // nil: does not parse (err says why)
	hasAPI bool
	err    error
}

// parsedCache keeps one value per content hash, at most max of them,
// parsing each hash once even when several callers ask for it at once.
// Facts are small (a set's are its methods and its behaviors'
// frequencies, a formation's its parameters), so max is about how many
// files are in use at once, not memory.
type parsedCache[T any] struct {
	max int
	mu  sync.Mutex
	m   map[string]*parsedEntry[T]
}

type parsedEntry[T any] struct {
	once sync.Once
	v    T
}

// get returns hash's value, calling parse (outside the cache's lock) if
// it has none. When full, the cache forgets an arbitrary entry.
func (c *parsedCache[T]) get(hash string, parse func() T) T {
	c.mu.Lock()
	e := c.m[hash]
	if e == nil {
		if c.m == nil {
			c.m = map[string]*parsedEntry[T]{}
		}
		if len(c.m) >= c.max {
			for h := range c.m {
				delete(c.m, h)
				break
			}
		}
		e = &parsedEntry[T]{}
		c.m[hash] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.v = parse() })
	return e.v
}

var (
	setCache = parsedCache[*setFacts]{max: 64}
	// Every open launch's formation is read by each scheduler pass that
	// plans it: room for as many as may be open.
	formCache = parsedCache[*formFacts]{max: wire.MaxLaunchesPerMessage + 24}
)

// setFactsOf returns what the keeper reads of a stored behavior set,
// parsing it the first time its hash is asked for.
func setFactsOf(set *state.BehaviorSet) *setFacts {
	return setCache.get(set.Hash, func() *setFacts {
		files := make([]behaviors.File, len(set.Files))
		for i, f := range set.Files {
			files[i] = behaviors.File{Name: f.Name, Data: []byte(f.Content)}
		}
		s, _ := behaviors.Parse(files...)
		if s == nil {
			return &setFacts{hasAPI: true}
		}
		f := &setFacts{parsed: true, hasAPI: s.HasAPISteps(), apiMethods: map[string]bool{}, fidelity: []verdict.FidelitySpec{}}
		add := func(seq *behaviors.Sequence) {
			if seq == nil {
				return
			}
			seq.EachStep(func(st *behaviors.Step) {
				if st.Request != nil && st.Request.Type == behaviors.API {
					f.apiMethods[st.Request.Method] = true
				}
			})
		}
		add(s.Boot)
		for _, b := range s.Behaviors {
			add(b.Sequence)
			if b.HasFrequency && b.Sequence != nil {
				f.fidelity = append(f.fidelity, verdict.FidelitySpec{Name: b.Name, Key: b.Key, Frequency: b.Frequency, Hourly: b.Hourly,
					HaltReasons: haltReasons(b.Sequence)})
			}
		}
		return f
	})
}

// formFactsOf returns what the keeper reads of a stored formation,
// parsing it the first time its hash is asked for.
func formFactsOf(fm *state.Formation) *formFacts {
	return formCache.get(fm.Hash, func() *formFacts {
		f, diags := formations.Parse(behaviors.File{Name: fm.File.Name, Data: []byte(fm.File.Content)})
		if f == nil {
			return &formFacts{err: diags}
		}
		lite := *f
		lite.Sequence, lite.Doc = nil, ""
		return &formFacts{lite: &lite, hasAPI: f.Sequence.HasAPISteps()}
	})
}

// findBehaviorSet returns the behavior set ref names: a content hash, or
// a name for its latest version; nil when none.
func findBehaviorSet(r *state.Reader, ref string) *state.BehaviorSet {
	if b := r.BehaviorSet(nil, ref); b != nil {
		return b
	}
	return r.LatestBehaviorSet(nil, ref)
}

// findFormation is findBehaviorSet for formations.
func findFormation(r *state.Reader, ref string) *state.Formation {
	if fm := r.Formation(nil, ref); fm != nil {
		return fm
	}
	return r.LatestFormation(nil, ref)
}
