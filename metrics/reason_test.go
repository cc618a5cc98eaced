package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestCleanReason(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// Already clean: returned as is.
		{"clean", "not_authed", "not_authed"},
		// Empty stays empty.
		{"empty", "", ""},
		// Control bytes and non-ASCII are escaped.
		{"control", "bad\nline\x00", `bad\x0aline\x00`},
		{"utf8", "é", `\xc3\xa9`},
		// Exactly the limit fits.
		{"limit", strings.Repeat("a", MaxReasonLen), strings.Repeat("a", MaxReasonLen)},
		// One over is cut, ending in "...".
		{"long", strings.Repeat("a", MaxReasonLen+1), strings.Repeat("a", MaxReasonLen-3) + "..."},
		// An escape is never split by the cut.
		{"escape at cut", strings.Repeat("a", MaxReasonLen-5) + "\xff\xff", strings.Repeat("a", MaxReasonLen-5) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CleanReason(tt.in)
			if got != tt.want {
				t.Fatalf("CleanReason(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > MaxReasonLen || !isClean(got, MaxReasonLen) {
				t.Fatalf("CleanReason(%q) = %q is not clean", tt.in, got)
			}
		})
	}
	if got := CleanSample(strings.Repeat("\x01", 1<<20)); len(got) > MaxSampleLen || !isClean(got, MaxSampleLen) {
		t.Fatalf("CleanSample of 1 MiB of control bytes: %d bytes, clean=%v", len(got), isClean(got, MaxSampleLen))
	}
}

func TestSeriesReasons(t *testing.T) {
	var r Recorder
	s := r.Series("api:chat.postMessage")
	for range 5 {
		s.ObserveReason(time.Millisecond, Error, "not_authed", `{"ok":false,"error":"not_authed"}`)
	}
	for range 3 {
		s.CountReason(ServerError, "http 503", "overloaded")
	}
	s.ObserveReason(time.Millisecond, Error, "", "no reason: counted, but in no entry")
	s.ObserveReason(time.Millisecond, OK, "ignored", "not a failure")
	s.CountReason(Halted, "ignored", "halts are not failures")
	ss := r.Snapshot().Series["api:chat.postMessage"]
	want := []Reason{
		{Reason: "not_authed", Count: 5, Sample: `{"ok":false,"error":"not_authed"}`},
		{Reason: "http 503", Count: 3, Sample: "overloaded"},
	}
	if fmt.Sprint(ss.Reasons) != fmt.Sprint(want) {
		t.Fatalf("reasons %v, want %v", ss.Reasons, want)
	}
	if ss.Failures() != 9 || ss.Total() != 11 {
		t.Fatalf("failures %d total %d, want 9 and 11", ss.Failures(), ss.Total())
	}
	// The next interval starts empty, and a reason seen before takes a
	// fresh sample.
	s.CountReason(Error, "not_authed", "second")
	ss = r.Snapshot().Series["api:chat.postMessage"]
	if len(ss.Reasons) != 1 || ss.Reasons[0] != (Reason{Reason: "not_authed", Count: 1, Sample: "second"}) {
		t.Fatalf("second interval: %v", ss.Reasons)
	}
}

// TestReasonsHostile feeds one series 10,000 distinct 1 MiB reasons with
// 1 MiB samples, as a hostile target could: the snapshot keeps
// MaxReasons bounded entries that still count every failure, and its
// encoding stays small.
func TestReasonsHostile(t *testing.T) {
	var r Recorder
	s := r.Series("http:hostile")
	// One 1 MiB buffer, renumbered in place for each reason: the series
	// must copy what it keeps, never hold the caller's bytes.
	buf := []byte(strings.Repeat("x\x00", 1<<19))
	big := unsafe.String(&buf[0], len(buf))
	const n = 10_000
	for i := range n {
		copy(buf, fmt.Sprintf("%06d", i))
		s.CountReason(ServerError, big, big)
	}
	copy(buf, "zzzzzz")
	ss := r.Snapshot().Series["http:hostile"]
	if len(ss.Reasons) > MaxReasons {
		t.Fatalf("%d reasons kept", len(ss.Reasons))
	}
	var sum uint64
	for _, rs := range ss.Reasons {
		sum += rs.Count
		if len(rs.Reason) > MaxReasonLen || !isClean(rs.Reason, MaxReasonLen) || len(rs.Sample) > MaxSampleLen || !isClean(rs.Sample, MaxSampleLen) {
			t.Fatalf("unbounded reason kept: %d-byte reason, %d-byte sample", len(rs.Reason), len(rs.Sample))
		}
	}
	if sum != n {
		t.Fatalf("reasons count %d failures, want %d", sum, n)
	}
	if last := ss.Reasons[len(ss.Reasons)-1]; last.Reason != OtherReason || last.Count < n-MaxReasons {
		t.Fatalf("last reason %q count %d, want %q with at least %d", last.Reason, last.Count, OtherReason, n-MaxReasons)
	}
	b, err := (&Snapshot{Series: map[string]*SeriesSnapshot{"http:hostile": ss}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// MaxReasons × (reason + sample + count) plus the series itself.
	if limit := MaxReasons*(MaxReasonLen+MaxSampleLen+16) + 64; len(b) > limit {
		t.Fatalf("snapshot encodes to %d bytes, more than %d", len(b), limit)
	}
	t.Logf("encoded: %d bytes", len(b))
}

func TestMergeReasons(t *testing.T) {
	// Two schools saw six reasons each, three of them shared: the merge
	// keeps the MaxReasons-1 largest and folds the rest into "other",
	// losing no count.
	a, b := &Snapshot{Series: map[string]*SeriesSnapshot{}}, &Snapshot{Series: map[string]*SeriesSnapshot{}}
	var ra, rb []Reason
	var total uint64
	for i := range 6 {
		ra = append(ra, Reason{Reason: fmt.Sprintf("r%d", i), Count: uint64(10 + i), Sample: "a"})
		rb = append(rb, Reason{Reason: fmt.Sprintf("r%d", i+3), Count: uint64(100 + i), Sample: "b"})
		total += uint64(10+i) + uint64(100+i)
	}
	sortReasons(ra)
	sortReasons(rb)
	a.Series["k"] = &SeriesSnapshot{Counts: [NumOutcomes]uint64{Error: 1000}, Reasons: ra}
	b.Series["k"] = &SeriesSnapshot{Counts: [NumOutcomes]uint64{Error: 1000}, Reasons: rb}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	got := a.Series["k"].Reasons
	if len(got) != MaxReasons || got[len(got)-1].Reason != OtherReason {
		t.Fatalf("merged %v", got)
	}
	var sum uint64
	for i, r := range got {
		sum += r.Count
		if i > 0 && !reasonBefore(got[i-1], r) {
			t.Fatalf("merged out of order: %v", got)
		}
	}
	if sum != total {
		t.Fatalf("merged counts %d, want %d", sum, total)
	}
	// r3..r5 were in both: a's sample wins, counts add.
	if got[0] != (Reason{Reason: "r5", Count: 15 + 102, Sample: "a"}) {
		t.Fatalf("top reason %v", got[0])
	}
	if len(b.Series["k"].Reasons) != 6 {
		t.Fatal("merge changed its argument")
	}
	// Round trip.
	enc, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := back.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	equalSnapshots(t, a, &back)
}

func TestUnmarshalBadReasons(t *testing.T) {
	// series is a version-2 encoding of one series "k" with 5 errors.
	series := func(reasons func(e enc1) enc1) []byte {
		e := enc1(append([]byte(formatMagic), formatVersionNoExposure)).time(t0).time(t1).u(1).str("k").u(1 << Error).u(5)
		return reasons(e).u(0)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		// More reasons than MaxReasons.
		{"too many", series(func(e enc1) enc1 { return e.u(MaxReasons + 1) })},
		// A count that claims many reasons in few bytes.
		{"huge count", series(func(e enc1) enc1 { return e.u(1 << 60) })},
		// An empty reason.
		{"empty reason", series(func(e enc1) enc1 { return e.u(1).str("").u(1).str("") })},
		// A reason over MaxReasonLen.
		{"long reason", series(func(e enc1) enc1 { return e.u(1).str(strings.Repeat("a", MaxReasonLen+1)).u(1).str("") })},
		// A reason with a control byte.
		{"control reason", series(func(e enc1) enc1 { return e.u(1).str("a\nb").u(1).str("") })},
		// A sample over MaxSampleLen.
		{"long sample", series(func(e enc1) enc1 { return e.u(1).str("a").u(1).str(strings.Repeat("s", MaxSampleLen+1)) })},
		// A zero count.
		{"zero count", series(func(e enc1) enc1 { return e.u(1).str("a").u(0).str("") })},
		// More reason counts than failures.
		{"more than failures", series(func(e enc1) enc1 { return e.u(2).str("a").u(3).str("").str("b").u(3).str("") })},
		// Counts that overflow when summed.
		{"overflow", series(func(e enc1) enc1 { return e.u(2).str("a").u(1 << 63).str("").str("b").u(1 << 63).str("") })},
		// Out of order: the smaller count first.
		{"order", series(func(e enc1) enc1 { return e.u(2).str("a").u(1).str("").str("b").u(2).str("") })},
		// The same reason twice.
		{"repeated", series(func(e enc1) enc1 { return e.u(2).str("a").u(1).str("").str("a").u(1).str("") })},
		// "other" not last.
		{"other first", series(func(e enc1) enc1 { return e.u(2).str(OtherReason).u(2).str("").str("a").u(1).str("") })},
		// Truncated inside a reason.
		{"truncated", []byte(enc1(append([]byte(formatMagic), formatVersionNoExposure)).time(t0).time(t1).u(1).str("k").u(1 << Error).u(5).u(1).u(10).raw('a'))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Snapshot
			if err := s.UnmarshalBinary(tt.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("error = %v, want ErrMalformed", err)
			}
		})
	}
	// The well-formed version of the same input decodes.
	ok := series(func(e enc1) enc1 { return e.u(2).str("b").u(3).str("x").str(OtherReason).u(2).str("") })
	var s Snapshot
	if err := s.UnmarshalBinary(ok); err != nil {
		t.Fatal(err)
	}
	if got := s.Series["k"].Reasons; len(got) != 2 || got[0].Reason != "b" || got[1].Count != 2 {
		t.Fatalf("decoded %v", got)
	}
}

// TestObserveReasonAllocs checks the hot-path promise: a reason seen
// before is counted without allocating.
func TestObserveReasonAllocs(t *testing.T) {
	var r Recorder
	s := r.Series("api:chat.postMessage")
	// The last one needs escaping (a target's UTF-8 error text).
	reasons := []string{"not_authed", "channel_not_found", "nicht erlaubt: \xc3\xa4"}
	for i := range 1000 { // every shard sees every reason
		s.ObserveReason(time.Millisecond, Error, reasons[i%3], "sample")
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		s.ObserveReason(time.Millisecond, Error, reasons[i%3], "sample")
		i++
	})
	if allocs != 0 {
		t.Fatalf("ObserveReason allocates %v times per call for a known reason", allocs)
	}
}

// MarshalBinary refuses reasons the decoder would refuse, rather than
// writing a snapshot nobody can read.
func TestMarshalBadReasons(t *testing.T) {
	for _, rs := range [][]Reason{
		{{Reason: "a", Count: 1}, {Reason: "b", Count: 2}},                     // out of order
		{{Reason: "a", Count: 0}},                                              // zero count
		{{Reason: "", Count: 1}},                                               // empty
		{{Reason: "a\n", Count: 1}},                                            // not clean
		{{Reason: "a", Count: 1, Sample: strings.Repeat("s", MaxSampleLen+1)}}, // unbounded sample
	} {
		s := &Snapshot{Series: map[string]*SeriesSnapshot{"k": {Counts: [NumOutcomes]uint64{Error: 5}, Reasons: rs}}}
		if _, err := s.MarshalBinary(); err == nil {
			t.Errorf("reasons %+v encoded", rs)
		}
	}
}
