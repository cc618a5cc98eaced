package behaviors

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// within4SE fails the test when the observed share of n trials is more
// than four standard errors from p.
func within4SE(t *testing.T, what string, hits, n int, p float64) {
	t.Helper()
	share := float64(hits) / float64(n)
	se := math.Sqrt(p * (1 - p) / float64(n))
	if math.Abs(share-p) > 4*se {
		t.Errorf("%s: observed %.5f over %d trials, want %.5f ± %.5f (4 SE)", what, share, n, p, 4*se)
	}
}

// The seed's f = 0.2393 holds over 2,000 koi × 30 minutes; f = 0 never
// fires, f = 1 fires every minute; a behavior fires at most once a minute.
func TestScheduleFrequencies(t *testing.T) {
	freqs := []float64{0.2393, 0, 1, 0.5, 0.5000001, 0.03, 1e-3, 0.75}
	s, err := NewSchedule(freqs)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	const koi, minutes = 2000, 30
	hits := make([]int, len(freqs))
	var buf []Firing
	for range koi * minutes {
		buf = s.Minute(r, 1, buf)
		seen := map[int]bool{}
		for i, f := range buf {
			if seen[f.Behavior] {
				t.Fatalf("behavior %d fired twice in one minute", f.Behavior)
			}
			seen[f.Behavior] = true
			if f.At < 0 || f.At >= 1 || (i > 0 && buf[i-1].At > f.At) {
				t.Fatalf("firing times not sorted in [0,1): %v", buf)
			}
			hits[f.Behavior]++
		}
	}
	n := koi * minutes
	for i, f := range freqs {
		switch f {
		case 0:
			if hits[i] != 0 {
				t.Errorf("f=0 fired %d times", hits[i])
			}
		case 1:
			if hits[i] != n {
				t.Errorf("f=1 fired in %d of %d minutes", hits[i], n)
			}
		default:
			within4SE(t, "frequency", hits[i], n, f)
		}
	}
}

// Many rare behaviors (the geometric-skipping path) each keep their own
// frequency, and fire independently of each other.
func TestScheduleManyRareBehaviors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	freqs := make([]float64, 100)
	for i := range freqs {
		freqs[i] = 0.001 + 0.2*float64(i%10)/10 + 0.0003*float64(i)
	}
	s, err := NewSchedule(freqs)
	if err != nil {
		t.Fatal(err)
	}
	const n = 60000
	hits := make([]int, len(freqs))
	both := 0
	var buf []Firing
	for range n {
		buf = s.Minute(r, 1, buf)
		a, b := false, false
		for _, f := range buf {
			hits[f.Behavior]++
			a = a || f.Behavior == 15
			b = b || f.Behavior == 27
		}
		if a && b {
			both++
		}
	}
	for i, f := range freqs {
		within4SE(t, "rare behavior", hits[i], n, f)
	}
	within4SE(t, "joint firing of two behaviors (independence)", both, n, freqs[15]*freqs[27])
}

// Firing moments are uniform within the minute (Kolmogorov–Smirnov).
func TestScheduleFiringTimesUniform(t *testing.T) {
	s, _ := NewSchedule([]float64{0.3, 0.05, 0.9})
	r := rand.New(rand.NewPCG(5, 6))
	var at []float64
	var buf []Firing
	for range 5000 {
		buf = s.Minute(r, 1, buf)
		for _, f := range buf {
			at = append(at, f.At)
		}
	}
	if d, crit := ksUniform(at); d > crit {
		t.Errorf("KS D = %.4f over %d samples, critical value %.4f at α=0.001", d, len(at), crit)
	}
}

// ksUniform returns the KS statistic against U[0,1) and the α = 0.001
// critical value.
func ksUniform(xs []float64) (d, crit float64) {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := float64(len(xs))
	for i, x := range xs {
		d = max(d, math.Abs(float64(i+1)/n-x), math.Abs(x-float64(i)/n))
	}
	return d, 1.95 / math.Sqrt(n)
}

// An activity multiplier of mean 1 keeps the swarm's mean frequency while
// spreading koi into light and heavy users.
func TestActivityKeepsMean(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Activity
	}{
		{"lognormal σ=1", Activity{Sigma: 1}},
		{"table", Activity{Classes: []ActivityClass{{Share: 70, Multiplier: 0.3}, {Share: 25, Multiplier: 1.5}, {Share: 5, Multiplier: 6}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errs := tc.a.Validate(); len(errs) > 0 {
				t.Fatal(errs)
			}
			r := rand.New(rand.NewPCG(7, 8))
			const f = 0.01 // small enough that clipping at 1 is negligible
			s, _ := NewSchedule([]float64{f})
			const koi, minutes = 20000, 20
			hits := 0
			perKoi := make([]int, koi)
			var buf []Firing
			var sumM, sumM2 float64
			for k := range koi {
				m := tc.a.Draw(r)
				sumM += m
				sumM2 += m * m
				for range minutes {
					buf = s.Minute(r, m, buf)
					hits += len(buf)
					perKoi[k] += len(buf)
				}
			}
			// Trials are overdispersed by the multiplier: the standard error
			// adds the between-koi variance minutes²·f²·Var(m) per koi.
			meanM := sumM / koi
			varM := sumM2/koi - meanM*meanM
			if math.Abs(meanM-1) > 4*math.Sqrt(varM/koi) {
				t.Errorf("multiplier mean %.4f, want 1", meanM)
			}
			share := float64(hits) / (koi * minutes)
			se := math.Sqrt(koi*minutes*f*(1-f)+koi*minutes*minutes*f*f*varM) / (koi * minutes)
			if math.Abs(share-f) > 4*se {
				t.Errorf("mean share %.5f, want %.5f ± %.5f (4 SE)", share, f, 4*se)
			}
			// Heavy users exist: the busiest 5% of koi make far more than 5%
			// of calls.
			slices.Sort(perKoi)
			top := 0
			for _, c := range perKoi[koi*95/100:] {
				top += c
			}
			if frac := float64(top) / float64(hits); frac < 0.15 {
				t.Errorf("top 5%% of koi make %.1f%% of calls; the model has no heavy users", 100*frac)
			}
		})
	}
	if errs := (Activity{Sigma: -1}).Validate(); len(errs) == 0 {
		t.Error("negative sigma accepted")
	}
}

// An hourly profile scales the frequency hour by hour: f = 0.1 with ×2 in
// the morning and ×0 in the afternoon fires 0.2 and 0 of minutes; without
// an hour the profile is ignored.
func TestScheduleHourly(t *testing.T) {
	h := make([]float64, 24)
	for i := range 12 {
		h[i] = 2
	}
	h[23] = 12 // 1.2: clipped at 1
	s, err := NewScheduleHourly([]float64{0.1, 0.3}, [][]float64{h, nil})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(21, 22))
	const n = 40000
	for _, tc := range []struct {
		hour      int
		want0     float64
		wantOther float64
	}{{3, 0.2, 0.3}, {15, 0, 0.3}, {23, 1, 0.3}, {-1, 0.1, 0.3}} {
		var hits [2]int
		var buf []Firing
		for range n {
			buf = s.MinuteIn(r, 1, tc.hour, buf)
			for _, f := range buf {
				hits[f.Behavior]++
			}
		}
		switch tc.want0 {
		case 0, 1:
			if hits[0] != int(tc.want0*n) {
				t.Errorf("hour %d: %d firings, want %v of %d", tc.hour, hits[0], tc.want0, n)
			}
		default:
			within4SE(t, "hourly behavior", hits[0], n, tc.want0)
		}
		within4SE(t, "flat behavior beside an hourly one", hits[1], n, tc.wantOther)
	}
	if _, err := NewScheduleHourly([]float64{0.1}, [][]float64{{1, 2}}); err == nil {
		t.Error("a profile of 2 hours was accepted")
	}
}

func TestScheduleRejectsBadFrequency(t *testing.T) {
	for _, f := range []float64{-0.1, 1.01, math.NaN()} {
		if _, err := NewSchedule([]float64{f}); err == nil {
			t.Errorf("frequency %v accepted", f)
		}
	}
}

// A koi-minute costs O(events): 100 rare behaviors cost little more than 10.
func BenchmarkScheduleMinute(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		freqs := make([]float64, n)
		for i := range freqs {
			freqs[i] = 0.5 / float64(n) * float64(1+i%3) // ~1 firing a minute in total
		}
		s, _ := NewSchedule(freqs)
		r := rand.New(rand.NewPCG(1, 1))
		b.Run("behaviors="+strconv.Itoa(n), func(b *testing.B) {
			var buf []Firing
			for b.Loop() {
				buf = s.Minute(r, 1, buf)
			}
		})
	}
}
