package behaviors

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Frequency semantics
//
// A behavior's frequency f is the probability that one koi calls it in a
// given minute. The schedule reproduces exactly that with one Bernoulli
// trial per behavior per koi-minute: the behavior fires (once) with
// probability f, at a uniformly random moment of the minute. So the share
// of koi-minutes with a call is f, a koi never calls one behavior twice in a
// minute, f = 0 never fires and f = 1 fires every minute. (A Poisson process
// with rate -ln(1-f) would give the same share of minutes with a call but
// sometimes several calls in one minute; the warehouse measures minutes
// with at least one call, and real clients rarely repeat a call within a
// minute, so Bernoulli is the faithful and the cheaper choice.)
//
// Cost is O(events), not O(behaviors): behaviors are grouped by probability
// class (f in (2^-(k+1), 2^-k]); within a group of bound q, geometric skips
// pick candidates with probability q each, and each candidate is kept with
// probability f/q ≥ 1/2. Every behavior still fires independently with
// probability exactly f, while a koi-minute costs one draw per non-empty
// group plus two per firing, whatever the number of rare behaviors.

// Firing is one behavior call planned within a koi-minute.
type Firing struct {
	// Behavior is the index into the schedule's behaviors.
	Behavior int
	// At is when, as a fraction of the minute in [0, 1).
	At float64
}

// Schedule plans which behaviors a koi calls in each minute. It is
// immutable and safe for concurrent use; randomness is supplied by the
// caller.
type Schedule struct {
	groups []schedGroup
	n      int
}

type schedGroup struct {
	q   float64     // upper bound of the class: 2^-k
	idx []int       // behavior indices
	p   []float64   // their frequencies
	h   [][]float64 // their hourly multipliers (nil: flat)
}

const maxClass = 62

// NewSchedule builds a schedule over per-minute frequencies, each in
// [0, 1]; the index of a frequency is the behavior index in Firings.
func NewSchedule(freqs []float64) (*Schedule, error) {
	return NewScheduleHourly(freqs, nil)
}

// NewScheduleHourly is NewSchedule with optional hour-of-day multipliers:
// hourly[i], when not nil, holds 24 factors of freqs[i] (see MinuteIn).
func NewScheduleHourly(freqs []float64, hourly [][]float64) (*Schedule, error) {
	s := &Schedule{n: len(freqs)}
	byClass := map[int]*schedGroup{}
	for i, f := range freqs {
		if math.IsNaN(f) || f < 0 || f > 1 {
			return nil, fmt.Errorf("frequency %d is %v, outside [0, 1]", i, f)
		}
		var h []float64
		if i < len(hourly) && hourly[i] != nil {
			h = hourly[i]
			if len(h) != 24 {
				return nil, fmt.Errorf("frequency %d: %d hourly multipliers, want 24", i, len(h))
			}
		}
		// Group by the highest probability the behavior can have in any
		// hour, so the class bound holds every hour.
		bound := f
		if h != nil {
			bound = 0
			for _, m := range h {
				if math.IsNaN(m) || m < 0 {
					return nil, fmt.Errorf("frequency %d: hourly multiplier %v", i, m)
				}
				bound = max(bound, min(1, f*m))
			}
		}
		if bound == 0 {
			continue
		}
		k := min(maxClass, int(math.Floor(-math.Log2(bound))))
		// Guard the boundaries against rounding in Log2.
		for k > 0 && bound > math.Ldexp(1, -k) {
			k--
		}
		for k < maxClass && bound <= math.Ldexp(1, -(k+1)) {
			k++
		}
		g := byClass[k]
		if g == nil {
			g = &schedGroup{q: math.Ldexp(1, -k)}
			byClass[k] = g
		}
		g.idx = append(g.idx, i)
		g.p = append(g.p, f)
		g.h = append(g.h, h)
	}
	for _, g := range byClass {
		s.groups = append(s.groups, *g)
	}
	slices.SortFunc(s.groups, func(a, b schedGroup) int {
		switch {
		case a.q > b.q:
			return -1
		case a.q < b.q:
			return 1
		}
		return 0
	})
	return s, nil
}

// ScheduleOf builds the schedule of a set's behaviors that have a
// frequency; the returned slice maps a Firing's index to its behavior.
func ScheduleOf(set *Set) (*Schedule, []*Behavior, error) {
	var freqs []float64
	var hourly [][]float64
	var bs []*Behavior
	for _, b := range set.Behaviors {
		if b.HasFrequency && b.Sequence != nil {
			freqs = append(freqs, b.Frequency)
			hourly = append(hourly, b.Hourly)
			bs = append(bs, b)
		}
	}
	s, err := NewScheduleHourly(freqs, hourly)
	return s, bs, err
}

// Len is the number of behaviors the schedule was built over.
func (s *Schedule) Len() int { return s.n }

// Minute appends to dst the firings of one koi-minute, sorted by At. The
// activity multiplier scales every frequency (clipped at 1); use 1 for an
// average user. Hourly profiles are ignored (see MinuteIn).
func (s *Schedule) Minute(r *rand.Rand, activity float64, dst []Firing) []Firing {
	return s.MinuteIn(r, activity, -1, dst)
}

// MinuteIn is Minute for a minute in the given hour of day (0–23): a
// behavior with an hourly profile fires with probability
// min(1, activity × frequency × hourly[hour]). hour < 0 ignores profiles.
func (s *Schedule) MinuteIn(r *rand.Rand, activity float64, hour int, dst []Firing) []Firing {
	dst = dst[:0]
	if hour > 23 {
		hour %= 24
	}
	if activity <= 0 {
		return dst
	}
	for gi := range s.groups {
		g := &s.groups[gi]
		q := min(1, g.q*activity)
		if q >= 1 {
			for j, p := range g.p {
				if hour >= 0 && g.h[j] != nil {
					p *= g.h[j][hour]
				}
				if pa := min(1, p*activity); pa >= 1 || r.Float64() < pa {
					dst = append(dst, Firing{Behavior: g.idx[j], At: r.Float64()})
				}
			}
			continue
		}
		lq := math.Log1p(-q)
		for j := -1; ; {
			// Geometric skip: failures before the next candidate.
			u := 1 - r.Float64() // (0, 1]
			skip := math.Floor(math.Log(u) / lq)
			if skip >= float64(len(g.idx)-j-1) {
				break
			}
			j += 1 + int(skip)
			p := g.p[j]
			if hour >= 0 && g.h[j] != nil {
				p *= g.h[j][hour]
			}
			pa := min(1, p*activity)
			if r.Float64()*q < pa {
				dst = append(dst, Firing{Behavior: g.idx[j], At: r.Float64()})
			}
		}
	}
	slices.SortFunc(dst, func(a, b Firing) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	return dst
}

// Activity gives a swarm light and heavy users: each koi draws a multiplier
// once, and every frequency of that koi is scaled by it (clipped at 1). The
// distribution has mean 1, so the set's mean frequencies hold (up to the
// clipping of heavy users on frequent behaviors, which lowers a behavior's
// mean by E[max(0, m·f − 1)]).
//
// The zero value gives every koi multiplier 1.
type Activity struct {
	// Sigma > 0 draws a lognormal multiplier exp(σZ − σ²/2), mean 1.
	Sigma float64
	// Classes, if given (and Sigma is 0), is a weighted table: a koi falls
	// in a class with probability Share/ΣShare and gets its Multiplier,
	// rescaled so that the table's mean is 1.
	Classes []ActivityClass
}

// ActivityClass is one row of an activity table.
type ActivityClass struct {
	Share      float64 `json:"share"`
	Multiplier float64 `json:"multiplier"`
}

// Validate returns every problem with the activity model.
func (a Activity) Validate() []error {
	var errs []error
	if a.Sigma < 0 || a.Sigma > 3 || math.IsNaN(a.Sigma) {
		errs = append(errs, fmt.Errorf("activity sigma %v: must be in [0, 3]", a.Sigma))
	}
	var total, mean float64
	for i, c := range a.Classes {
		if !(c.Share >= 0) || !(c.Multiplier >= 0) || math.IsInf(c.Share, 0) || math.IsInf(c.Multiplier, 0) {
			errs = append(errs, fmt.Errorf("activity class %d: share and multiplier must be finite and ≥ 0", i))
		}
		total += c.Share
		mean += c.Share * c.Multiplier
	}
	if len(a.Classes) > 0 && (total <= 0 || mean <= 0) {
		errs = append(errs, fmt.Errorf("activity classes: shares and share-weighted multipliers must sum above 0"))
	}
	return errs
}

// Draw returns one koi's multiplier.
func (a Activity) Draw(r *rand.Rand) float64 {
	if a.Sigma > 0 {
		return math.Exp(a.Sigma*r.NormFloat64() - a.Sigma*a.Sigma/2)
	}
	if len(a.Classes) == 0 {
		return 1
	}
	var total, mean float64
	for _, c := range a.Classes {
		total += c.Share
		mean += c.Share * c.Multiplier
	}
	if total <= 0 || mean <= 0 {
		return 1
	}
	mean /= total
	x := r.Float64() * total
	for _, c := range a.Classes {
		if x < c.Share {
			return c.Multiplier / mean
		}
		x -= c.Share
	}
	return a.Classes[len(a.Classes)-1].Multiplier / mean
}
