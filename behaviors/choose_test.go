package behaviors

import (
	"strings"
	"testing"
	"time"
)

// A choose step decodes its weighted branches, nested ones too, and Pick
// maps a uniform draw to a branch by cumulative weight (none past the sum).
func TestChooseDecodesAndPicks(t *testing.T) {
	set, diags := Parse(File{Name: "s.json", Data: []byte(`{"behaviors": {"session:a": {"frequency": 0.1, "steps": [
  {"request": {"type": "api", "method": "a"},
   "choose": [
     {"weight": 0.25, "doc": "then b", "steps": [{"delay_after_ms": [100, 200]}, {"request": {"type": "api", "method": "b"},
        "choose": [{"weight": 1, "steps": [{"request": {"type": "api", "method": "c"}}]}]}]},
     {"weight": 0.5, "steps": [{"request": {"type": "api", "method": "d"}}]}]}]}}}`)})
	if set == nil {
		t.Fatal(diags)
	}
	st := &set.Behavior("session:a").Sequence.Steps[0]
	if len(st.Choose) != 2 || st.Choose[0].Weight != 0.25 || st.Choose[1].Weight != 0.5 {
		t.Fatalf("branches = %+v", st.Choose)
	}
	tests := []struct {
		u    float64
		want *Sequence
	}{
		{0, st.Choose[0].Sequence},      // the first branch's share starts at 0
		{0.2499, st.Choose[0].Sequence}, // and ends before its weight
		{0.25, st.Choose[1].Sequence},   // the second's starts there
		{0.7499, st.Choose[1].Sequence},
		{0.75, nil}, // past the sum: no branch
		{0.99, nil},
	}
	for _, tc := range tests {
		if got := st.Pick(tc.u); got != tc.want {
			t.Errorf("Pick(%v) = %p, want %p", tc.u, got, tc.want)
		}
	}
	var methods []string
	set.Behavior("session:a").Sequence.EachStep(func(s *Step) {
		if s.Request != nil {
			methods = append(methods, s.Request.Method)
		}
	})
	if strings.Join(methods, ",") != "a,b,c,d" {
		t.Errorf("EachStep saw %v, want a,b,c,d in order", methods)
	}
	inner := st.Choose[0].Sequence.Steps[1].Where
	if inner != `behavior "session:a" › step 1 › choose[0] › step 2` {
		t.Errorf("nested step is named %q", inner)
	}
}

// A delay given as quantiles is drawn by inverting the piecewise-linear
// distribution through them; its DelayAfter is the median.
func TestDelayQuantiles(t *testing.T) {
	set, diags := Parse(File{Name: "s.json", Data: []byte(`{"behaviors": {"x": {"frequency": 0.1, "steps": [
  {"request": {"type": "api", "method": "a"}, "delay_after_ms": [1000, 2000, 6000]}]}}}`)})
	if set == nil {
		t.Fatal(diags)
	}
	st := &set.Behavior("x").Sequence.Steps[0]
	tests := []struct {
		u    float64
		want time.Duration
	}{
		{0, time.Second},                  // the lowest quantile
		{0.25, 1500 * time.Millisecond},   // halfway up the first segment
		{0.5, 2 * time.Second},            // the median
		{0.75, 4 * time.Second},           // halfway up the second
		{0.999999, 6 * time.Second},       // the top (rounded to the ms)
		{1, 6 * time.Second},              // clamped
		{-1, time.Second},                 // clamped
		{0.625, 3 * time.Second},          // a quarter up the second segment
		{0.125, 1250 * time.Millisecond},  // a quarter up the first
		{0.875, 5 * time.Second},          // three quarters up the second
		{0.0625, 1125 * time.Millisecond}, // an eighth up the first
	}
	for _, tc := range tests {
		if got := st.Delay(tc.u).Round(time.Millisecond); got != tc.want {
			t.Errorf("Delay(%v) = %v, want %v", tc.u, got, tc.want)
		}
	}
	if st.DelayAfter != 2*time.Second {
		t.Errorf("DelayAfter = %v, want the median 2s", st.DelayAfter)
	}
}

// Every bad choose or delay array is a positioned error naming the branch.
func TestChooseBadInput(t *testing.T) {
	wrap := func(step string) string {
		return `{"behaviors": {"x": {"frequency": 0.1, "steps": [` + step + `]}}}`
	}
	deep := `{"request": {"type": "api", "method": "z"}}`
	for range MaxChooseDepth + 1 {
		deep = `{"choose": [{"weight": 0.5, "steps": [` + deep + `]}]}`
	}
	tests := []struct {
		name, src, want string
	}{
		{"weights over 1", wrap(`{"choose": [{"weight": 0.6, "steps": [{"delay_after_ms": 1}]}, {"weight": 0.5, "steps": [{"delay_after_ms": 1}]}]}`),
			`behavior "x" › step 1 › choose: the weights add up to 1.1, more than 1`},
		{"weight out of range", wrap(`{"choose": [{"weight": -0.1, "steps": [{"delay_after_ms": 1}]}]}`),
			`behavior "x" › step 1 › choose[0] › weight: -0.1 is outside [0, 1]`},
		{"weight missing", wrap(`{"choose": [{"steps": [{"delay_after_ms": 1}]}]}`),
			`behavior "x" › step 1 › choose[0]: a branch needs "weight"`},
		{"steps missing", wrap(`{"choose": [{"weight": 0.5}]}`),
			`behavior "x" › step 1 › choose[0]: a branch needs "steps"`},
		{"no branches", wrap(`{"choose": []}`),
			`behavior "x" › step 1 › choose: needs at least one branch`},
		{"unknown branch field", wrap(`{"choose": [{"weight": 0.5, "steps": [{"delay_after_ms": 1}], "wieght": 1}]}`),
			`behavior "x" › step 1 › choose[0]: unknown field "wieght" (did you mean "weight"?)`},
		{"bad nested step", wrap(`{"choose": [{"weight": 0.5, "steps": [{"request": {"type": "grpc"}}]}]}`),
			`behavior "x" › step 1 › choose[0] › step 1 › request › type: unknown request type "grpc"`},
		{"connect in a branch", wrap(`{"choose": [{"weight": 0.5, "steps": [{"request": {"type": "connect"}}]}]}`),
			`behavior "x" › step 1 › choose[0] › step 1 › request › type: a connect request runs only in boot`},
		{"nested too deep", wrap(deep), `nest more than 8 deep`},
		{"quantiles decrease", wrap(`{"delay_after_ms": [100, 50]}`),
			`behavior "x" › step 1 › delay_after_ms[1]: 50 ms is below the value before it`},
		{"one quantile", wrap(`{"delay_after_ms": [100]}`),
			`behavior "x" › step 1 › delay_after_ms: an array of pauses needs 2 to 101 values`},
		{"quantile negative", wrap(`{"delay_after_ms": [-1, 5]}`),
			`behavior "x" › step 1 › delay_after_ms[0]: -1 ms is outside`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseErrs(t, tc.src)
			if !strings.Contains(got, tc.want) {
				t.Errorf("diagnostics:\n%s\nwant one containing %q", got, tc.want)
			}
		})
	}
}

// An await inside a branch is checked against the classifier like any.
func TestAwaitTypeCheckedInBranches(t *testing.T) {
	got := parseErrs(t, `{"frames": {"json": [], "text": [{"prefix": "PING", "type": "ping"}]}, "behaviors": {"x": {"frequency": 0.1, "steps": [
  {"choose": [{"weight": 0.5, "steps": [{"request": {"type": "ws", "text": "x", "await": {"type": "pong"}}}]}]}]}}}`)
	if !strings.Contains(got, `behavior "x" › step 1 › choose[0] › step 1 › request › await › type: no rule of "frames" names a frame "pong"`) {
		t.Errorf("diagnostics:\n%s", got)
	}
}
