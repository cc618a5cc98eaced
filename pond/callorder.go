package pond

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Call order: for each user (token), the method of its previous API call,
// and over all users a count of (previous → current) method pairs with a
// histogram of the delay between the two calls. It is how a test (or a
// person) checks that generated sessions reproduce the transitions they
// were learned from, counted where the calls land.
//
// Every counter lives in fixed arrays sized at Open: one slot per user
// (pond's users, never a client's token), one row and column per method of
// the dispatch table plus one "other" bucket, and delayBuckets delay
// buckets per pair. No client value can grow it: unknown methods are
// refused before they are counted, and a name that is not in the table
// (or is longer than maxOrderName bytes) counts as "other".
//
// The hot path is one atomic swap of the user's slot and one atomic add,
// no lock and no allocation.

// OtherMethod names the bucket of method names pond does not know.
const OtherMethod = "other"

const (
	// maxOrderName bounds a method name looked up in the table; longer
	// ones are "other" without a lookup.
	maxOrderName = 64
	// delayBuckets are the delay histogram's buckets: bucket 0 holds
	// delays under 1 ms, bucket b ≥ 1 delays in [2^(b-1), 2^b) ms, and
	// the last one everything from 2^(delayBuckets-2) ms (≈ 36 h) on.
	delayBuckets = 28
	// A user's slot packs the reset epoch (16 bits), the method index
	// plus one (8 bits, 0 = no call yet) and the call's time in
	// milliseconds since the counter began (40 bits, ≈ 34 years).
	slotTimeBits   = 40
	slotMethodBits = 8
	slotTimeMask   = 1<<slotTimeBits - 1
	slotMethodMask = 1<<slotMethodBits - 1
)

// orderMethods are the names call order counts, in index order: the
// dispatch table's methods sorted, then OtherMethod.
var orderMethods []string

// orderIndex maps a method name to its index in orderMethods.
var orderIndex map[string]int

func init() {
	orderMethods = make([]string, 0, len(methods)+1)
	for name := range methods {
		orderMethods = append(orderMethods, name)
	}
	slices.Sort(orderMethods)
	orderMethods = append(orderMethods, OtherMethod)
	if len(orderMethods) > slotMethodMask {
		panic("pond: more methods than a call-order slot can hold")
	}
	orderIndex = make(map[string]int, len(orderMethods))
	for i, name := range orderMethods {
		orderIndex[name] = i
	}
}

// orderMethod returns name's index in orderMethods ("other" for a name
// not in the table).
func orderMethod(name string) int {
	if len(name) <= maxOrderName {
		if i, ok := orderIndex[name]; ok {
			return i
		}
	}
	return len(orderMethods) - 1
}

// callOrder holds the counters. The zero value is not usable: see
// newCallOrder.
type callOrder struct {
	start time.Time
	epoch atomic.Uint32 // bumped by reset; only its low 16 bits are kept in slots
	reset atomic.Int64  // when the last reset happened, ms since start
	last  []atomic.Uint64
	// first counts calls that were a user's first since the last reset,
	// per method; delays counts (from, to) pairs by delay, at
	// (from*n+to)*delayBuckets+bucket (a pair's count is its row's sum).
	first  []atomic.Uint64
	delays []atomic.Uint64
}

func newCallOrder(users int) *callOrder {
	n := len(orderMethods)
	return &callOrder{
		start:  time.Now(),
		last:   make([]atomic.Uint64, users),
		first:  make([]atomic.Uint64, n),
		delays: make([]atomic.Uint64, n*n*delayBuckets),
	}
}

// delayBucket returns the histogram bucket of a delay of ms milliseconds.
func delayBucket(ms int64) int {
	if ms <= 0 {
		return 0
	}
	return min(bits.Len64(uint64(ms)), delayBuckets-1)
}

// record counts user's call of method (an index of orderMethods) at now.
// A user out of range is ignored (the caller authenticated it, so this is
// a bug guard, not a path a client can take).
func (o *callOrder) record(user, method int, now time.Time) {
	if user < 0 || user >= len(o.last) || method < 0 || method >= len(orderMethods) {
		return
	}
	ms := now.Sub(o.start).Milliseconds()
	epoch := uint64(o.epoch.Load() & 0xffff)
	cur := epoch<<(slotTimeBits+slotMethodBits) | uint64(method+1)<<slotTimeBits | uint64(ms)&slotTimeMask
	prev := o.last[user].Swap(cur)
	from := int(prev>>slotTimeBits&slotMethodMask) - 1
	if prev == 0 || prev>>(slotTimeBits+slotMethodBits) != epoch || from < 0 || from >= len(orderMethods) {
		o.first[method].Add(1)
		return
	}
	pair := from*len(orderMethods) + method
	// Two calls of one user may race, the later one swapping first: its
	// delay then reads negative and counts as under 1 ms.
	d := (uint64(ms) - prev) & slotTimeMask
	if d > slotTimeMask/2 {
		d = 0
	}
	o.delays[pair*delayBuckets+delayBucket(int64(d))].Add(1)
}

// Transitions is the JSON document GET /stats/transitions returns: the
// call order counted since pond started or since the last reset.
type Transitions struct {
	// SinceSecs is how long the counts have been collected.
	SinceSecs float64 `json:"since_secs"`
	// MaxDelayMS, when not zero, is the filter asked for: only pairs
	// whose delay bucket lies wholly at or under it are counted.
	MaxDelayMS int64 `json:"max_delay_ms,omitempty"`
	// Methods are the names counted; OtherMethod is last.
	Methods []string `json:"methods"`
	// First counts, per method, calls that were their user's first (since
	// the reset): no previous call to pair them with.
	First map[string]uint64 `json:"first"`
	// From counts, per method, the calls that had a next call (the
	// denominators of the transition shares).
	From map[string]uint64 `json:"from"`
	// Transitions are the pairs seen, by From, then most frequent first.
	Transitions []Transition `json:"transitions"`
}

// Transition is one (From → To) pair: Count times a user's call of From
// was followed by its call of To, Share of From's next calls.
type Transition struct {
	From  string  `json:"from"`
	To    string  `json:"to"`
	Count uint64  `json:"count"`
	Share float64 `json:"share"`
	// Delays is the histogram of the delay between the two calls.
	Delays []DelayBucket `json:"delays"`
}

// DelayBucket counts the pairs whose delay was in [MinMS, MaxMS)
// milliseconds (MaxMS 0: unbounded).
type DelayBucket struct {
	MinMS int64  `json:"min_ms"`
	MaxMS int64  `json:"max_ms"`
	Count uint64 `json:"count"`
}

// bucketBounds returns bucket b's delay range in ms, [lo, hi), hi = 0
// for the unbounded last one.
func bucketBounds(b int) (lo, hi int64) {
	switch {
	case b == 0:
		return 0, 1
	case b == delayBuckets-1:
		return 1 << (b - 1), 0
	}
	return 1 << (b - 1), 1 << b
}

// snapshot returns the counts; maxDelayMS > 0 keeps only the delay
// buckets that end at or under it.
func (o *callOrder) snapshot(now time.Time, maxDelayMS int64) Transitions {
	n := len(orderMethods)
	t := Transitions{
		SinceSecs:   now.Sub(o.start).Seconds() - float64(o.reset.Load())/1e3,
		MaxDelayMS:  maxDelayMS,
		Methods:     slices.Clone(orderMethods),
		First:       map[string]uint64{},
		From:        map[string]uint64{},
		Transitions: []Transition{},
	}
	for m := range n {
		if c := o.first[m].Load(); c > 0 {
			t.First[orderMethods[m]] = c
		}
	}
	for from := range n {
		start := len(t.Transitions)
		var total uint64
		for to := range n {
			pair := from*n + to
			tr := Transition{From: orderMethods[from], To: orderMethods[to]}
			for b := range delayBuckets {
				c := o.delays[pair*delayBuckets+b].Load()
				lo, hi := bucketBounds(b)
				if c == 0 || (maxDelayMS > 0 && (hi == 0 || hi-1 > maxDelayMS)) {
					continue
				}
				tr.Delays = append(tr.Delays, DelayBucket{MinMS: lo, MaxMS: hi, Count: c})
				tr.Count += c
			}
			if tr.Count == 0 {
				continue
			}
			total += tr.Count
			t.Transitions = append(t.Transitions, tr)
		}
		if total == 0 {
			continue
		}
		t.From[orderMethods[from]] = total
		row := t.Transitions[start:]
		for i := range row {
			row[i].Share = float64(row[i].Count) / float64(total)
		}
		slices.SortStableFunc(row, func(a, b Transition) int {
			switch {
			case a.Count > b.Count:
				return -1
			case a.Count < b.Count:
				return 1
			}
			return 0
		})
	}
	return t
}

// clear forgets every count and every user's previous call: the next call
// of each user is a first call. Calls in flight while it runs may be
// counted on either side of it.
func (o *callOrder) clear(now time.Time) {
	o.epoch.Add(1)
	o.reset.Store(now.Sub(o.start).Milliseconds())
	for _, c := range [][]atomic.Uint64{o.first, o.delays} {
		for i := range c {
			c[i].Store(0)
		}
	}
}

// Transitions returns the call order counted since Open or the last
// ResetTransitions; maxDelayMS > 0 keeps only pairs whose delay bucket
// ends at or under it (the buckets are powers of two of milliseconds).
func (s *Server) Transitions(maxDelayMS int64) Transitions {
	return s.order.snapshot(time.Now(), maxDelayMS)
}

// ResetTransitions forgets the call order counted so far.
func (s *Server) ResetTransitions() { s.order.clear(time.Now()) }

// maxDelayFilter bounds GET /stats/transitions?max_delay_ms.
const maxDelayFilter = 1 << 36

// serveTransitions is GET /stats/transitions[?max_delay_ms=N] (the counts)
// and DELETE /stats/transitions (a reset, answering the counts it forgot).
func (s *Server) serveTransitions(w http.ResponseWriter, r *http.Request) {
	var maxDelay int64
	if v := r.URL.Query().Get("max_delay_ms"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > maxDelayFilter {
			if len(v) > 32 {
				v = v[:32] + "…"
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"ok":false,"error":"invalid_arguments","detail":%q}`+"\n",
				fmt.Sprintf("max_delay_ms %q is not a whole number of milliseconds in 0..%d", v, int64(maxDelayFilter)))
			return
		}
		maxDelay = n
	}
	now := time.Now()
	t := s.order.snapshot(now, maxDelay)
	if r.Method == http.MethodDelete {
		s.order.clear(now)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(t)
}
