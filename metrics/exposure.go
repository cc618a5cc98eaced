package metrics

import (
	"fmt"
	"math"
	"slices"
)

// Exposure measures how long a run's koi ran their background schedule,
// the denominator of every behavior's expected number of runs. A koi adds
// the behavior-minutes (time scale applied) it spent scheduling (booted,
// not paused, not stopped) to the hour of day its schedule used for them
// (the hour MinuteIn was given), weighted by its activity multiplier.
//
// A behavior of per-minute frequency f and hourly multipliers m (nil:
// flat) fires in a koi-minute with probability p = min(1, activity × f ×
// m[hour]) (behaviors.Schedule). Over the exposure, its number of runs has
// mean Σ p and variance Σ p(1-p) (one Bernoulli trial per koi-minute).
// Expected computes both from the sums below. The sums by hour give them
// exactly while no p reaches 1; heavy koi of a frequent behavior are
// clipped (min(1, …)), so Add also keeps the sums by activity class
// (ExposureClassesPerOctave classes per doubling of activity), and
// Expected treats each class on its own: exact for classes that are
// clipped wholly or not at all, and within a class's width for the one
// that straddles 1/(f × m[hour]).
type Exposure struct {
	// Minutes[h] is the koi-minutes spent scheduling in hour h.
	Minutes [24]float64
	// Weighted[h] is Σ activity × minutes, Squared[h] Σ activity² ×
	// minutes, over the same spans.
	Weighted [24]float64
	Squared  [24]float64
	// classes split the hours' sums by activity class, sorted by hour
	// then class; per hour they add up to the hour's sums. An exposure
	// built from the hour sums alone (none here) counts every koi of the
	// hour as having its mean activity.
	classes []exposureClass
}

// exposureClass is an hour's sums for the koi of one activity class.
type exposureClass struct {
	hour, class                int8
	minutes, weighted, squared float64
}

// ExposureClassesPerOctave is how finely Exposure splits koi by activity:
// class c holds activities in [2^(c/k), 2^((c+1)/k)) for k of this value,
// from -MaxExposureClass (every lower activity, 0 included) to
// MaxExposureClass (every higher one).
const (
	ExposureClassesPerOctave = 4
	MaxExposureClass         = 48
)

// activityClass returns the class of a (finite, ≥ 0) activity.
func activityClass(a float64) int8 {
	if a <= 0 {
		return -MaxExposureClass
	}
	c := math.Floor(math.Log2(a) * ExposureClassesPerOctave)
	return int8(max(-MaxExposureClass, min(MaxExposureClass, c)))
}

// classBounds returns the activities class c spans.
func classBounds(c int8) (lo, hi float64) {
	lo, hi = math.Exp2(float64(c)/ExposureClassesPerOctave), math.Exp2(float64(c+1)/ExposureClassesPerOctave)
	if c <= -MaxExposureClass {
		lo = 0
	}
	if c >= MaxExposureClass {
		hi = math.Inf(1)
	}
	return lo, hi
}

// Add records that a koi of the given activity scheduled for minutes
// behavior-minutes in hour h (0–23); other hours and non-finite or
// negative values are ignored. Sums saturate at MaxExposureSum.
func (e *Exposure) Add(hour int, activity, minutes float64) {
	if hour < 0 || hour >= 24 || !(minutes > 0) || math.IsInf(minutes, 0) || !(activity >= 0) || math.IsInf(activity, 0) {
		return
	}
	e.Minutes[hour] = satAdd(e.Minutes[hour], minutes)
	e.Weighted[hour] = satAdd(e.Weighted[hour], activity*minutes)
	e.Squared[hour] = satAdd(e.Squared[hour], activity*activity*minutes)
	c := e.class(int8(hour), activityClass(activity))
	c.minutes = satAdd(c.minutes, minutes)
	c.weighted = satAdd(c.weighted, activity*minutes)
	c.squared = satAdd(c.squared, activity*activity*minutes)
}

// class returns the sums of (hour, class), added in order if missing.
func (e *Exposure) class(hour, class int8) *exposureClass {
	i, found := slices.BinarySearchFunc(e.classes, exposureClass{hour: hour, class: class}, cmpClass)
	if !found {
		e.classes = slices.Insert(e.classes, i, exposureClass{hour: hour, class: class})
	}
	return &e.classes[i]
}

func cmpClass(a, b exposureClass) int {
	if a.hour != b.hour {
		return int(a.hour) - int(b.hour)
	}
	return int(a.class) - int(b.class)
}

// Merge adds o's sums to e, saturating at MaxExposureSum (so that what a
// keeper merges from lying schools still encodes); a sum of o that is
// NaN or negative counts as 0.
func (e *Exposure) Merge(o *Exposure) {
	if o == nil {
		return
	}
	for h := range 24 {
		e.Minutes[h] = satAdd(e.Minutes[h], o.Minutes[h])
		e.Weighted[h] = satAdd(e.Weighted[h], o.Weighted[h])
		e.Squared[h] = satAdd(e.Squared[h], o.Squared[h])
	}
	for _, oc := range o.classes {
		c := e.class(oc.hour, oc.class)
		c.minutes = satAdd(c.minutes, oc.minutes)
		c.weighted = satAdd(c.weighted, oc.weighted)
		c.squared = satAdd(c.squared, oc.squared)
	}
}

// satAdd returns a + b capped at MaxExposureSum, b counting as 0 when it
// is NaN or negative.
func satAdd(a, b float64) float64 {
	if !(b >= 0) {
		return a
	}
	return min(MaxExposureSum, a+b)
}

// KoiMinutes returns the koi-minutes over every hour.
func (e *Exposure) KoiMinutes() float64 {
	var n float64
	for _, m := range e.Minutes {
		n += m
	}
	return n
}

// Expected returns the mean and variance of the number of runs of a
// behavior of per-minute frequency f with hourly multipliers (nil or 24
// values) over the exposure.
func (e *Exposure) Expected(f float64, hourly []float64) (mean, variance float64) {
	var classed uint32
	for _, c := range e.classes {
		classed |= 1 << c.hour
		q := f
		if len(hourly) == 24 {
			q *= hourly[c.hour]
		}
		lo, hi := classBounds(c.class)
		switch {
		case q*hi <= 1: // no koi of the class is clipped
			mean += q * c.weighted
			variance += q*c.weighted - q*q*c.squared
		case q*lo >= 1: // every koi of the class fires every minute
			mean += c.minutes
		case c.minutes > 0: // straddling: the class's mean activity
			p := min(1, q*c.weighted/c.minutes)
			mean += p * c.minutes
			variance += p * (1 - p) * c.minutes
		}
	}
	for h := range 24 {
		if classed&(1<<h) != 0 {
			continue
		}
		q := f
		if len(hourly) == 24 {
			q *= hourly[h]
		}
		mean += q * e.Weighted[h]
		variance += q*e.Weighted[h] - q*q*e.Squared[h]
	}
	return mean, max(0, variance)
}

// Clone returns a copy of e (nil for nil).
func (e *Exposure) Clone() *Exposure {
	if e == nil {
		return nil
	}
	c := *e
	c.classes = slices.Clone(e.classes)
	return &c
}

// check returns an error naming the first sum that is not finite or not
// in [0, MaxExposureSum]: what a snapshot may carry.
func (e *Exposure) check() error {
	for h := range 24 {
		for _, v := range []struct {
			name string
			x    float64
		}{{"minutes", e.Minutes[h]}, {"weighted", e.Weighted[h]}, {"squared", e.Squared[h]}} {
			if !(v.x >= 0 && v.x <= MaxExposureSum) { // false for NaN too
				return fmt.Errorf("exposure: hour %d: %s %v is not in [0, %g]", h, v.name, v.x, MaxExposureSum)
			}
		}
	}
	for i, c := range e.classes {
		switch {
		case c.hour < 0 || c.hour >= 24 || c.class < -MaxExposureClass || c.class > MaxExposureClass:
			return fmt.Errorf("exposure: activity class %d of hour %d is out of range", c.class, c.hour)
		case i > 0 && cmpClass(e.classes[i-1], c) >= 0:
			return fmt.Errorf("exposure: hour %d: activity classes out of order at %d", c.hour, c.class)
		case e.hours()&(1<<c.hour) == 0:
			return fmt.Errorf("exposure: hour %d has activity classes but no sums", c.hour)
		}
		for _, v := range []struct {
			name string
			x    float64
		}{{"minutes", c.minutes}, {"weighted", c.weighted}, {"squared", c.squared}} {
			if !(v.x >= 0 && v.x <= MaxExposureSum) {
				return fmt.Errorf("exposure: hour %d: activity class %d: %s %v is not in [0, %g]", c.hour, c.class, v.name, v.x, MaxExposureSum)
			}
		}
	}
	return nil
}

// hourClasses returns the classes of hour h (a sub-slice of e.classes).
func (e *Exposure) hourClasses(h int8) []exposureClass {
	i, _ := slices.BinarySearchFunc(e.classes, exposureClass{hour: h, class: -MaxExposureClass - 1}, cmpClass)
	j := i
	for j < len(e.classes) && e.classes[j].hour == h {
		j++
	}
	return e.classes[i:j]
}

// hours returns the bit set of hours with a non-zero sum.
func (e *Exposure) hours() uint32 {
	var set uint32
	for h := range 24 {
		if e.Minutes[h] != 0 || e.Weighted[h] != 0 || e.Squared[h] != 0 {
			set |= 1 << h
		}
	}
	return set
}

// Equal reports whether e and o hold the same sums (nil equals nil only).
func (e *Exposure) Equal(o *Exposure) bool {
	if e == nil || o == nil {
		return e == o
	}
	return e.Minutes == o.Minutes && e.Weighted == o.Weighted && e.Squared == o.Squared && slices.Equal(e.classes, o.classes)
}
