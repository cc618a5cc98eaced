package behaviors

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// Template bombs fail with a counted budget error and allocate about the
// budget, never what they ask for. The counts come from variables so that
// the static check (which would refuse constants at load) does not see
// them: this is the runtime guard.
func TestTemplateBudget(t *testing.T) {
	p := NewProgram()
	doubling := `{{ $s := get "ten" }}` + strings.Repeat(`{{ $s = print $s $s }}`, 30)
	tests := []struct {
		name, src string
		want      string // in the error
	}{
		// the reported bomb: 10,000 × 10,000 × 10,000 bytes
		{"nested repeats", `{{ $x := repeat (get "n") (repeat (get "n") (repeat (get "n") "x")) }}`, "template budget: repeat would produce 100.0 MB, over the 1.0 MB left of the 1 MiB budget"},
		// thirty doublings: 10 GB
		{"print doubling", doubling, "template budget: print would produce"},
		{"printf doubling", `{{ $s := get "ten" }}` + strings.Repeat(`{{ $s = printf "%s%s" $s $s }}`, 30), "template budget: printf would produce"},
		{"cat doubling", `{{ $s := get "ten" }}` + strings.Repeat(`{{ $s = cat $s $s }}`, 30), "template budget: cat would produce"},
		// a list that holds itself twice at each of 40 levels prints as 2^40 values
		{"list doubling printed", `{{ $l := list 1 }}` + strings.Repeat(`{{ $l = list $l $l }}`, 40) + `{{ $l }}`, "template budget: printing a value would produce"},
		{"list doubling to JSON", `{{ $l := list 1 }}` + strings.Repeat(`{{ $l = list $l $l }}`, 40) + `{{ $j := toJson $l }}`, "template budget: toJson would produce"},
		{"list doubling copied", `{{ $l := list 1 }}` + strings.Repeat(`{{ $l = list $l $l }}`, 40) + `{{ $j := deepCopy $l }}`, "template budget: deepCopy would produce"},
		{"join of a shared string", `{{ $s := repeat 100000 "x" }}{{ $j := join "" (list $s $s $s $s $s $s $s $s $s $s $s $s) }}`, "template budget: join would produce"},
		// a width pads every element of a list
		{"printf width over a list", `{{ $x := printf "%0999999d" (until (get "n")) }}`, "template budget: printf would produce"},
		{"replace of the empty string", `{{ $x := replace "" (repeat 2000 "y") (repeat 2000 "x") }}`, "template budget: replace would produce"},
		{"indent of many lines", `{{ $x := indent 9999 (repeat 10000 "\n") }}`, "template budget: indent would produce"},
		{"wrapWith", `{{ $x := wrapWith 1 (repeat 5000 "-") (repeat 5000 "x") }}`, "template budget: wrapWith would produce"},
		{"regexReplaceAll expanding", `{{ $x := regexReplaceAll "x" (repeat 5000 "x") "$0$0$0$0" }}`, "template budget: regexReplaceAll would produce"},
		{"upper in a loop", `{{ $s := repeat 100000 "x" }}{{ range until 100 }}{{ $u := upper $s }}{{ end }}`, "template budget: upper would produce"},
		{"list growth", `{{ $l := list }}{{ range until 10000 }}{{ $l = append $l (until 100) }}{{ end }}`, "template budget: append would produce"},
		{"output", `{{ range until 10000 }}{{ repeat 100 "x" }}{{ end }}`, "output larger than"},
		// a dictionary holding itself would print forever (a fatal stack overflow)
		{"cyclic dict", `{{ $d := dict }}{{ $_ := dictSet $d "self" (list $d) }}{{ $d }}`, "dictSet: the dictionary would contain itself"},
		{"cyclic merge", `{{ $d := dict }}{{ $_ := merge $d (dict "a" $d) }}{{ $d }}`, "merge: the dictionary would contain itself"},
		{"halt with a huge reason", `{{ $l := list 1 }}` + strings.Repeat(`{{ $l = list $l $l }}`, 40) + `{{ halt $l }}`, "template budget: halt would produce"},
		{"uniq is quadratic", `{{ $u := uniq (until 10000) }}`, "template budget: uniq would produce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := &Env{Store: NewStore(Identity{}), Vars: map[string]any{"n": 10000, "ten": "0123456789"}}
			tx := compileOne(t, p, tt.src)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := p.Render(context.Background(), env, tx, nil)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrLimit) && !strings.Contains(tt.want, "itself") {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 16*DefaultBudget {
				t.Errorf("allocated %d bytes before failing (budget %d)", got, DefaultBudget)
			}
		})
	}
}

// Within the budget templates behave as before.
func TestTemplateBudgetAllows(t *testing.T) {
	p := NewProgram()
	env := &Env{Store: NewStore(Identity{})}
	tests := []struct{ src, want string }{
		{`{{ repeat 3 "ab" }}`, "ababab"},
		{`{{ print "a" 1 }}{{ println "b" }}{{ printf "%03d|%s|%q" 7 "x" "y" }}`, "a1b\n007|x|\"y\""},
		{`{{ upper "koi" }} {{ cat "a" "b" }} {{ join "," (list 1 2) }}`, "KOI a b 1,2"},
		{`{{ toJson (dict "a" (list 1 "x")) }}`, `{"a":[1,"x"]}`},
		{`{{ $d := dict "a" 1 }}{{ $_ := dictSet $d "b" (dict "c" 2) }}{{ $d.b.c }}`, "2"},
		{`{{ replace "a" "bb" "banana" }} {{ indent 2 "x\ny" }}`, "bbbnbbnbb   x\n  y"},
		{`{{ html "<a>" }} {{ js "'" }} {{ urlquery "a b" }}`, "&lt;a&gt; \\' a+b"},
		{`{{ len (until 100) }} {{ . }}`, "100 <no value>"},
	}
	for _, tt := range tests {
		got, err := p.Render(context.Background(), env, compileOne(t, p, tt.src), nil)
		if err != nil || got != tt.want {
			t.Errorf("%s = %q, %v; want %q", tt.src, got, err, tt.want)
		}
	}
	// values print as text/template prints them: pointers followed
	env.Store.AddChannel(Channel{ID: "C1", Name: "general", IsMember: true})
	for src, want := range map[string]string{
		`{{ channel "C1" }}`:          "{C1 general true false false false 0}",
		`{{ channel "none" }}`:        "<no value>",
		`{{ list (channel "C1") 1 }}`: "[0x", // inside a list fmt prints the address, as before
		`{{ dict "a" (list 1 "b") }}`: "map[a:[1 b]]",
		`{{ (channel "C1").Name }}`:   "general",
	} {
		got, err := p.Render(context.Background(), env, compileOne(t, p, src), nil)
		if err != nil || !strings.HasPrefix(got, want) {
			t.Errorf("%s = %q, %v; want %q", src, got, err, want)
		}
	}
	// a template may use most of its budget
	big := compileOne(t, p, `{{ $s := repeat 900000 "x" }}{{ len $s }}`)
	if got, err := p.Render(context.Background(), env, big, nil); err != nil || got != "900000" {
		t.Errorf("900 kB string: %q, %v", got, err)
	}
}

// Variables cannot pile budgets up: 256 variables of almost a budget each
// would hold a quarter gigabyte per koi.
func TestVariableBytesBounded(t *testing.T) {
	p := NewProgram()
	for _, fn := range []string{"set", "setKoi"} {
		env := &Env{Store: NewStore(Identity{})}
		var err error
		for i := range 10 {
			tx := compileOne(t, p, `{{ `+fn+` "v`+string(rune('0'+i))+`" (repeat 1000000 "x") }}`)
			if err = p.Run(context.Background(), env, tx, nil); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "would take the variables past 4 MiB") {
			t.Errorf("%s: err = %v", fn, err)
		}
		// overwriting a variable frees its share
		env = &Env{Store: NewStore(Identity{})}
		for range 10 {
			if err := p.Run(context.Background(), env, compileOne(t, p, `{{ `+fn+` "v" (repeat 1000000 "x") }}`), nil); err != nil {
				t.Errorf("%s overwrite: %v", fn, err)
			}
		}
	}
}

// Constant expressions over the budget are refused when the file is
// validated, with the template's position.
func TestConstantBombsRefusedAtLoad(t *testing.T) {
	doubling := `{{ $s := \"xxxxxxxxxx\" }}` + strings.Repeat(`{{ $s = print $s $s }}`, 17)
	tests := []struct{ name, tmpl, want string }{
		// the reported template: refused at its innermost over-budget repeat
		{"nested repeats", `{{ $x := repeat 10000 (repeat 10000 (repeat 10000 \"x\")) }}`, "h.json:1:67: behavior \"a\" › step 1 › pre_actions[0]: template line 1:24: repeat would produce 100.0 MB, over the 1 MiB template budget"},
		{"one repeat", `{{ repeat 2000000 \"x\" }}`, "template line 1:4: repeat would produce 2.0 MB"},
		{"print doubling", doubling, "template line 1:385: print would produce 1.3 MB"},
		{"printf doubling", `{{ $s := \"xxxxxxxxxx\" }}` + strings.Repeat(`{{ $s = printf \"%s%s\" $s $s }}`, 17), "printf would produce 1.3 MB"},
		{"pipeline", `{{ repeat 1100 \"x\" | repeat 1000 }}`, "repeat would produce 1.1 MB"},
		{"indent", `{{ indent 2000000 \"x\" }}`, "indent would produce 2.0 MB"},
		// a doubling inside an if still doubles a known size
		{"in a branch", `{{ $s := repeat 600000 \"x\" }}{{ if true }}{{ $s = cat $s $s }}{{ end }}`, "cat would produce 1.2 MB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := `{"behaviors": {"a": {"frequency": 0.1, "steps": [{"pre_actions": ["` + tt.tmpl + `"]}]}}}`
			set, diags := Parse(File{Name: "h.json", Data: []byte(src)})
			if set != nil || !strings.Contains(diags.Error(), tt.want) {
				t.Errorf("got %v, want %q", diags, tt.want)
			}
		})
	}
	// Bounded or unknown sizes load: the runtime budget guards them.
	for _, ok := range []string{
		`{{ $s := repeat 1000 \"x\" }}{{ $s = print $s $s }}`,
		`{{ $s := \"x\" }}{{ range until 30 }}{{ $s = print $s $s }}{{ end }}{{ $t := print $s $s }}`,
		`{{ printf \"%.3s\" (repeat 1000000 \"x\") }}`,
		`{{ repeat (get \"n\") (repeat 1000 \"x\") }}`,
	} {
		src := `{"behaviors": {"a": {"frequency": 0.1, "steps": [{"pre_actions": ["` + ok + `"]}]}}}`
		if set, diags := Parse(File{Name: "h.json", Data: []byte(src)}); set == nil {
			t.Errorf("%s refused: %v", ok, diags)
		}
	}
}
