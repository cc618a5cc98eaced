package metrics

import (
	"fmt"
	"math"
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
// mean Σ p and variance Σ p(1-p) (one Bernoulli trial per koi-minute);
// Expected computes both from the sums below, exactly when no p is clipped
// at 1.
type Exposure struct {
	// Minutes[h] is the koi-minutes spent scheduling in hour h.
	Minutes [24]float64
	// Weighted[h] is Σ activity × minutes, Squared[h] Σ activity² ×
	// minutes, over the same spans.
	Weighted [24]float64
	Squared  [24]float64
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
	for h := range 24 {
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
	return nil
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
