package warehouse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The call sort spills chunks within its budget and merges them level by
// level, and still gives every call back, per user in time order, ties in
// input order, exactly as a stable in-memory sort would.
func TestCallSorterSpillsAndKeepsEveryCall(t *testing.T) {
	type c struct {
		user   string
		ms     int64
		method uint16
		seq    int
	}
	r := rand.New(rand.NewPCG(9, 9))
	var in []c
	for i := range 30000 {
		// few distinct times, so ties are common; duplicates kept
		in = append(in, c{user: fmt.Sprintf("user-%03d", r.IntN(300)), ms: int64(r.IntN(50)) * 1000, method: uint16(r.IntN(5)), seq: i})
	}
	s := newCallSorter(1<<16, t.TempDir(), 2)
	for _, x := range in {
		if err := s.add(x.user, x.ms, x.method, 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.runs) < 3 {
		t.Fatalf("%d runs spilled from 30,000 calls in 64 KiB: the test does not exercise the merge", len(s.runs))
	}
	want := slices.Clone(in)
	slices.SortStableFunc(want, func(a, b c) int {
		if d := strings.Compare(a.user, b.user); d != 0 {
			return d
		}
		return int(a.ms - b.ms)
	})
	var got []c
	err := s.each(context.Background(), func(user []byte, newUser bool, ms int64, m uint16) error {
		if newUser != (len(got) == 0 || got[len(got)-1].user != string(user)) {
			return fmt.Errorf("call %d: newUser %v for %s", len(got), newUser, user)
		}
		got = append(got, c{user: string(user), ms: ms, method: m})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d calls back, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].user != want[i].user || got[i].ms != want[i].ms || got[i].method != want[i].method {
			t.Fatalf("call %d: %+v, want %+v (ties in input order)", i, got[i], want[i])
		}
	}
	if len(s.runs) != 0 {
		t.Errorf("run files left: %v", s.runs)
	}
}
