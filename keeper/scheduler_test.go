package keeper

import (
	"math"
	"slices"
	"testing"

	"github.com/koipond/koipond/keeper/state"
)

func TestPlanRanges(t *testing.T) {
	type as = []state.Assignment
	cur := func(a ...state.Assignment) []*state.Assignment {
		var out []*state.Assignment
		for i := range a {
			out = append(out, &a[i])
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		n     int
		slots []capSlot
		cur   []*state.Assignment
		want  as
	}{
		// Equal capacities split evenly, in id order.
		{"fresh", 100, []capSlot{{"a", 1000}, {"b", 1000}}, nil,
			as{{School: "a", From: 0, To: 50}, {School: "b", From: 50, To: 100}}},
		// Proportional to free capacity.
		{"proportional", 90, []capSlot{{"a", 100}, {"b", 200}}, nil,
			as{{School: "a", From: 0, To: 30}, {School: "b", From: 30, To: 90}}},
		// Not enough capacity: each school full, the rest unassigned.
		{"partial", 100, []capSlot{{"a", 30}, {"b", 50}}, nil,
			as{{School: "a", From: 0, To: 30}, {School: "b", From: 30, To: 80}}},
		// A school died: its neighbours extend over its range.
		{"failover", 300, []capSlot{{"a", 1000}, {"c", 1000}},
			cur(state.Assignment{School: "a", From: 0, To: 100}, state.Assignment{School: "b", From: 100, To: 200},
				state.Assignment{School: "c", From: 200, To: 300}),
			as{{School: "a", From: 0, To: 150}, {School: "c", From: 150, To: 300}}},
		// A new school goes where the fewest koi move: 100 torn down, the
		// minimum for its share.
		{"new school", 300, []capSlot{{"a", 1000}, {"c", 1000}, {"d", 1000}},
			cur(state.Assignment{School: "a", From: 0, To: 150}, state.Assignment{School: "c", From: 150, To: 300}),
			as{{School: "a", From: 0, To: 100}, {School: "d", From: 100, To: 200}, {School: "c", From: 200, To: 300}}},
		// Stable: a plan fed back is unchanged (order kept even against ids).
		{"stable", 100, []capSlot{{"a", 1000}, {"b", 1000}},
			cur(state.Assignment{School: "b", From: 0, To: 50}, state.Assignment{School: "a", From: 50, To: 100}),
			as{{School: "b", From: 0, To: 50}, {School: "a", From: 50, To: 100}}},
		// Shrinking keeps the low indices.
		{"scale down", 40, []capSlot{{"a", 1000}, {"b", 1000}},
			cur(state.Assignment{School: "a", From: 0, To: 50}, state.Assignment{School: "b", From: 50, To: 100}),
			as{{School: "a", From: 0, To: 20}, {School: "b", From: 20, To: 40}}},
		// No capacity at all.
		{"none", 10, []capSlot{{"a", 0}}, nil, nil},
		// Capacities of 2^63-1 (a stored record, or a liar) summed to a
		// negative total and assigned nothing: they saturate now.
		{"huge capacities", 100, []capSlot{{"a", math.MaxInt64}, {"b", math.MaxInt64}}, nil,
			as{{School: "a", From: 0, To: 50}, {School: "b", From: 50, To: 100}}},
		{"huge and small", 100, []capSlot{{"a", math.MaxInt64}, {"b", 1000}}, nil,
			as{{School: "a", From: 0, To: 100}}},
		// Negative capacity counts as none; a huge koi count is clamped.
		{"negative capacity", 10, []capSlot{{"a", -5}, {"b", 10}}, nil, as{{School: "b", From: 0, To: 10}}},
		{"huge koi", math.MaxInt64, []capSlot{{"a", 10}}, nil, as{{School: "a", From: 0, To: 10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planRanges(tc.n, tc.slots, tc.cur)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			for _, a := range got {
				for _, s := range tc.slots {
					if s.id == a.School && a.Count() > s.free {
						t.Errorf("%s gets %d koi, capacity %d", s.id, a.Count(), s.free)
					}
				}
			}
		})
	}
}
