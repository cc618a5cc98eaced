package formations

import (
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
)

// The seed's formation loads verbatim.
func TestSeedFormationLoads(t *testing.T) {
	f, diags := Load("../examples/seed/announcement-reaction.formation.json")
	if f == nil {
		t.Fatal(diags)
	}
	if f.Name != "Viewing and reacting to a message in Announcement Channel" || f.BeginWithin != 360*time.Second || f.Percent != 10 {
		t.Errorf("formation = %q %v %v", f.Name, f.BeginWithin, f.Percent)
	}
	if n := len(f.Sequence.Steps); n != 3 {
		t.Fatalf("%d steps, want 3", n)
	}
	if d := f.Sequence.Steps[1].DelayAfter; d != time.Minute {
		t.Errorf("step 2 delay %v, want 60s", d)
	}
}

func TestBadFormations(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		// every field checked, each at its position
		{"ranges", `{"name": "", "begin_within_secs": -1, "percent": 101, "sequence": {"steps": [{"request": {"type": "api", "method": "x"}}]}}`,
			[]string{`f.json:1:10: name: must be a non-empty string`, `f.json:1:35: begin_within_secs: -1 is outside [0, 86400] seconds`,
				`f.json:1:50: percent: 101 is outside (0, 100]`}},
		// missing fields are named
		{"missing", `{"sequence": {"steps": [{"request": {"type": "api", "method": "x"}}]}}`,
			[]string{`missing "name"`, `missing "begin_within_secs"`, `missing "percent"`}},
		// step errors come from the behavior language, with positions
		{"bad step", "{\"name\": \"n\", \"begin_within_secs\": 1, \"percent\": 1,\n \"sequence\": {\"steps\": [{\"request\": {\"type\": \"api\", \"method\": \"x\", \"args\": {\"a\": \"{{ nosuchfunc }}\"}}}]}}",
			[]string{`f.json:2:82: sequence › step 1 › request › args.a: template line 1: function "nosuchfunc" not defined`}},
		// unknown fields
		{"unknown", `{"name": "n", "begin_within_secs": 1, "percent": 1, "percentage": 3, "sequence": {"steps": [{"delay_after_ms": 1}]}}`,
			[]string{`unknown field "percentage" (did you mean "percent"?)`}},
		// no sequence
		{"no sequence", `{"name": "n", "begin_within_secs": 1, "percent": 1}`, []string{`missing "sequence"`}},
		{"not an object", `[]`, []string{`top level: must be an object`}},
		// a name is at most MaxName bytes, without control characters
		{"long name", `{"name": "` + strings.Repeat("n", MaxName+1) + `", "begin_within_secs": 1, "percent": 1, "sequence": {"steps": [{"delay_after_ms": 1}]}}`,
			[]string{`f.json:1:10: name: is 201 bytes long; at most 200`}},
		{"control character", `{"name": "herd\u0085now", "begin_within_secs": 1, "percent": 1, "sequence": {"steps": [{"delay_after_ms": 1}]}}`,
			[]string{`f.json:1:10: name: has a control character (U+0085) at byte 4`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, diags := Parse(behaviors.File{Name: "f.json", Data: []byte(tt.src)})
			if f != nil {
				t.Fatal("bad formation loaded")
			}
			all := diags.Error()
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("missing %q in:\n%s", w, all)
				}
			}
		})
	}
}

// Counts are exact: round half up of percent × total, from the decimal
// percent as written (no float drift at .5 boundaries).
func TestCountExact(t *testing.T) {
	tests := []struct {
		percent string
		total   int
		want    int
	}{
		{"10", 1001, 100}, // 100.1 rounds down
		{"10", 1005, 101}, // 100.5 rounds half up
		{"33.3", 7000, 2331},
		{"0.15", 1000, 2}, // 1.5 → 2, though 0.15 is not exact in binary
		{"12.5", 4, 1},    // 0.5 → 1
		{"100", 12345, 12345},
		{"0.001", 100, 0},
		{"50", 0, 0},
	}
	for _, tt := range tests {
		r, _ := new(big.Rat).SetString(tt.percent)
		f := &Formation{percent: r}
		if got := f.Count(tt.total); got != tt.want {
			t.Errorf("%s%% of %d = %d, want %d", tt.percent, tt.total, got, tt.want)
		}
	}
}

// Awkward splits: the shares sum to the exact count, no school gets more
// than it has, and each share is within one of its exact quota.
func TestPlanSplits(t *testing.T) {
	r, _ := new(big.Rat).SetString("33.3")
	f := &Formation{percent: r, Percent: 33.3}
	schools := []School{{"a", 1001}, {"b", 999}, {"c", 3}, {"d", 0}, {"e", 5000}, {"f", 1}, {"g", 1237}}
	p := f.PlanLaunch(schools)
	if p.Total != 8241 || p.Count != 2744 { // 33.3% of 8241 = 2744.253
		t.Fatalf("total %d count %d, want 8241 and 2744", p.Total, p.Count)
	}
	sum := 0
	for i, s := range p.Shares {
		sum += s.Count
		quota := float64(p.Count) * float64(schools[i].Connected) / float64(p.Total)
		if s.School != schools[i].ID || s.Count > schools[i].Connected || math.Abs(float64(s.Count)-quota) >= 1 {
			t.Errorf("school %s: %d of %d connected, quota %.3f", s.School, s.Count, schools[i].Connected, quota)
		}
	}
	if sum != p.Count {
		t.Errorf("shares sum to %d, want %d", sum, p.Count)
	}
	// Equal schools with a remainder: ties broken by id, deterministically.
	q, _ := new(big.Rat).SetString("50")
	p = (&Formation{percent: q}).PlanLaunch([]School{{"s3", 1}, {"s1", 1}, {"s2", 1}})
	if got := []int{p.Shares[0].Count, p.Shares[1].Count, p.Shares[2].Count}; !slices.Equal(got, []int{0, 1, 1}) {
		t.Errorf("tie-break shares = %v, want s1 and s2 first", got)
	}
	// Largest-remainder property over many random splits.
	rng := rand.New(rand.NewPCG(9, 9))
	for range 500 {
		n := 1 + rng.IntN(12)
		ss := make([]School, n)
		for i := range ss {
			ss[i] = School{ID: string(rune('a' + i)), Connected: rng.IntN(6000)}
		}
		pr := new(big.Rat).SetFrac64(int64(rng.IntN(100001)), 1000)
		if pr.Sign() == 0 {
			continue
		}
		p := (&Formation{percent: pr}).PlanLaunch(ss)
		sum := 0
		for i, s := range p.Shares {
			sum += s.Count
			if s.Count > ss[i].Connected {
				t.Fatalf("school over capacity: %+v of %+v", s, ss[i])
			}
		}
		if sum != p.Count {
			t.Fatalf("sum %d != count %d for %v at %s%%", sum, p.Count, ss, pr.FloatString(3))
		}
	}
}

// Start offsets are uniform in [0, window): Kolmogorov–Smirnov at
// α = 0.001; and a clumped generator would fail the same test.
func TestOffsetsUniform(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	within := 360 * time.Second
	offs := Offsets(r, 20000, within)
	xs := make([]float64, len(offs))
	for i, o := range offs {
		if o < 0 || o >= within {
			t.Fatalf("offset %v outside [0, %v)", o, within)
		}
		xs[i] = float64(o) / float64(within)
	}
	if d, crit := ks(xs); d > crit {
		t.Errorf("KS D = %.4f, critical %.4f: offsets are not uniform", d, crit)
	}
	// The test has power: squaring uniforms (clumping early) is rejected.
	for i := range xs {
		xs[i] *= xs[i]
	}
	if d, crit := ks(xs); d <= crit {
		t.Errorf("KS accepted a clumped distribution (D = %.4f)", d)
	}
	if z := Offsets(r, 3, 0); z[0] != 0 || z[2] != 0 {
		t.Errorf("zero window: %v", z)
	}
}

func ks(xs []float64) (d, crit float64) {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := float64(len(xs))
	for i, x := range xs {
		d = max(d, math.Abs(float64(i+1)/n-x), math.Abs(x-float64(i)/n))
	}
	return d, 1.95 / math.Sqrt(n)
}

func TestChoose(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 3))
	counts := make([]int, 10)
	for range 20000 {
		got := Choose(r, 10, 3)
		if len(got) != 3 || got[0] == got[1] || got[1] == got[2] || !slices.IsSorted(got) {
			t.Fatalf("Choose = %v", got)
		}
		for _, i := range got {
			counts[i]++
		}
	}
	for i, c := range counts { // each index chosen with probability 0.3
		if math.Abs(float64(c)/20000-0.3) > 4*math.Sqrt(0.3*0.7/20000) {
			t.Errorf("index %d chosen %d times", i, c)
		}
	}
	if got := Choose(r, 5, 9); len(got) != 5 {
		t.Errorf("k > n: %v", got)
	}
}

// Formations go through the same shape scan: 3 MB of '[' and a percent
// of 1e-99999999 are refused quickly, with positions, instead of
// overflowing the stack or expanding a hundred-million-digit number.
func TestHostileFormations(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"3 MB of [", strings.Repeat("[", 3<<20), "h.json:1:65: invalid JSON: nested deeper than 64 levels"},
		{"tiny percent", `{"name": "n", "begin_within_secs": 0, "percent": 1e-99999999, "sequence": {"steps": [{"delay_after_ms": 1}]}}`, "percent: 1e-99999999 is outside (0, 100]"},
		{"template bomb", `{"name": "n", "begin_within_secs": 0, "percent": 1, "sequence": {"steps": [{"pre_actions": ["{{ print (repeat 10000 (repeat 10000 \"x\")) }}"]}]}}`,
			"repeat would produce 100.0 MB, over the 1 MiB template budget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fm, diags := Parse(behaviors.File{Name: "h.json", Data: []byte(tt.src)})
			if fm != nil || !strings.Contains(diags.Error(), tt.want) {
				t.Errorf("got %v, want %q", diags, tt.want)
			}
		})
	}
}

func FuzzLoadFormation(f *testing.F) {
	files, _ := filepath.Glob("../examples/*/*.formation.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"name": "n", "begin_within_secs": 1e400, "percent": 1e-400, "sequence": {"steps": []}}`))
	f.Add([]byte(`{"name": "n", "begin_within_secs": 0, "percent": 100, "sequence": {"steps": [{"delay_after_ms": 1}]}}`))
	// hostile shapes: deep nesting, huge and tiny numbers, long strings
	f.Add([]byte(strings.Repeat("[", 2_000)))
	f.Add([]byte(`{"name": "n", "begin_within_secs": 0, "percent": ` + strings.Repeat("[", 70) + `1}`))
	f.Add([]byte(`{"name": "n", "begin_within_secs": 1e999999999, "percent": 1e-99999999, "sequence": {"steps": [{"delay_after_ms": 1}]}}`))
	f.Add([]byte(`{"name": "` + strings.Repeat("n", 5_000) + `", "begin_within_secs": 0, "percent": 1, "sequence": {"steps": [{"delay_after_ms": 1}]}}`))
	f.Add([]byte(`{"name": "n", "begin_within_secs": 0, "percent": 1, "sequence": {"steps": [{"pre_actions": ["{{ $x := repeat 10000 (repeat 10000 \"x\") }}"]}]}}`))
	f.Add([]byte(`{"name": "n", /* c */ "begin_within_secs": 0, "percent": 1, "sequence": {"steps": [{"delay_after_ms": 1,},],},}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fm, diags := Parse(behaviors.File{Name: "fuzz.json", Data: data})
		if (fm == nil) != diags.HasErrors() {
			t.Fatalf("formation=%v errors=%v", fm != nil, diags)
		}
		if fm != nil {
			p := fm.PlanLaunch([]School{{"a", 10}, {"b", 7}})
			if p.Count > 17 || p.Count < 0 {
				t.Fatalf("count %d of 17", p.Count)
			}
		}
	})
}
