package formations

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"
)

// School is one school's share of the swarm at launch time.
type School struct {
	ID        string
	Connected int // koi connected on that school
}

// Share is how many koi one school starts.
type Share struct {
	School string
	Count  int
}

// Plan is who takes part in a launch.
type Plan struct {
	// Total connected koi over every school.
	Total int
	// Count is the exact global number of koi that start: Percent × Total
	// rounded half up.
	Count int
	// Shares splits Count over schools in proportion to their connected
	// koi by the largest-remainder method (ties: more connected koi first,
	// then school id), in the order the schools were given. No school gets
	// more than it has connected.
	Shares []Share
}

// PlanLaunch computes the plan for launching f over the given schools.
func (f *Formation) PlanLaunch(schools []School) Plan {
	total := 0
	for _, s := range schools {
		total += max(0, s.Connected)
	}
	count := f.Count(total)
	return Plan{Total: total, Count: count, Shares: split(count, total, schools)}
}

// split divides count over schools by largest remainder, exactly in
// integers: school i's quota is count × c_i / total.
func split(count, total int, schools []School) []Share {
	shares := make([]Share, len(schools))
	if total == 0 {
		for i, s := range schools {
			shares[i] = Share{School: s.ID}
		}
		return shares
	}
	type rem struct {
		i   int
		num int64 // remainder numerator over total
	}
	rems := make([]rem, len(schools))
	given := 0
	for i, s := range schools {
		c := int64(max(0, s.Connected))
		q := int64(count) * c / int64(total)
		shares[i] = Share{School: s.ID, Count: int(q)}
		rems[i] = rem{i: i, num: int64(count)*c - q*int64(total)}
		given += int(q)
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		if c := cmp.Compare(b.num, a.num); c != 0 {
			return c
		}
		if c := cmp.Compare(schools[b.i].Connected, schools[a.i].Connected); c != 0 {
			return c
		}
		return cmp.Compare(schools[a.i].ID, schools[b.i].ID)
	})
	for k := 0; given < count && k < len(rems); k++ {
		shares[rems[k].i].Count++
		given++
	}
	return shares
}

// Offsets draws n independent start offsets, each uniform in [0, within).
// A zero window starts everyone at once.
func Offsets(r *rand.Rand, n int, within time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	if within <= 0 {
		return out
	}
	for i := range out {
		out[i] = time.Duration(r.Int64N(int64(within)))
	}
	return out
}

// Choose picks k distinct koi out of n (indices 0..n-1), uniformly, in
// O(k) expected time and memory.
func Choose(r *rand.Rand, n, k int) []int {
	if k >= n {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	if k <= 0 {
		return nil
	}
	// Floyd's algorithm: each k-subset equally likely.
	seen := make(map[int]struct{}, k)
	out := make([]int, 0, k)
	for j := n - k; j < n; j++ {
		t := r.IntN(j + 1)
		if _, dup := seen[t]; dup {
			t = j
		}
		seen[t] = struct{}{}
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
