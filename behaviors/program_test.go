package behaviors

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func compileOne(t *testing.T, p *Program, src string) Text {
	t.Helper()
	tx, err := p.compile(src, "test")
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	return tx
}

// Runaway templates are stopped by the documented limits, and each failure
// says which limit. A loop is stopped by the iteration limit or, on a
// machine too slow to reach it in MaxDuration, by the time limit: either
// is right, and on a starved race-instrumented process (100,000 iterations
// have taken over 5 s) the time limit comes first.
func TestTemplateLimits(t *testing.T) {
	p := NewProgram()
	env := &Env{Store: NewStore(Identity{})}
	const loop = "range iterations|ran longer than"
	tests := []struct {
		name  string
		src   string
		limit string // the error names this limit (alternatives split by |)
	}{
		{"range over a huge int", `{{ range 100000000000 }}{{ end }}`, loop},
		{"nested ranges", `{{ range 1000 }}{{ range 1000 }}{{ end }}{{ end }}`, loop},
		{"huge until", `{{ until 100000000 }}`, "until: size 100000000 is over the 10000 limit"},
		{"huge seq", `{{ seq 1 100000000 }}`, "seq: size 99999999 is over the 10000 limit"},
		{"huge repeat", `{{ repeat (atoi "100000000") "x" }}`, "repeat would produce 100.0 MB, over the 1 MiB budget"},
		{"huge indent", `{{ indent (atoi "100000000") "x" }}`, "indent would produce 100.0 MB, over the 1 MiB budget"},
		{"huge random string", `{{ randAlpha 100000000 }}`, "randAlpha would produce 100.0 MB, over the 1 MiB budget"},
		{"output over the cap", `{{ range 100 }}{{ repeat 1000 "x" }}{{ end }}`, "output larger than 65536 bytes"},
	}
	// How long the most iterations allowed take on this machine now,
	// measured on a tenth of them (all of them may take longer than
	// MaxDuration on a starved machine): a runaway loop runs until one
	// of the two limits stops it.
	start := time.Now()
	if _, err := p.Render(context.Background(), env, compileOne(t, p, `{{ range `+strconv.Itoa(MaxIterations/10)+` }}{{ end }}`), nil); err != nil {
		t.Fatalf("a template at a tenth of the iteration limit: %v", err)
	}
	allowed := 10 * time.Since(start)
	t.Logf("%d iterations take about %v here", MaxIterations, allowed)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := compileOne(t, p, tt.src)
			start := time.Now()
			_, err := p.Render(context.Background(), env, tx, nil)
			d := time.Since(start)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
			if !slices.ContainsFunc(strings.Split(tt.limit, "|"), func(l string) bool { return strings.Contains(err.Error(), l) }) {
				t.Errorf("err = %v, want it to name the limit (%s)", err, tt.limit)
			}
			// The time limit is on the wall clock, checked every 64
			// iterations: whatever the load, a loop ends by MaxDuration
			// and a few iterations; the rest is room for the process
			// to be descheduled (twice the measured iterations, and a
			// second).
			if bound := MaxDuration + 2*allowed + time.Second; d > bound {
				t.Errorf("took %v to stop, over %v (%d iterations take about %v here, the time limit is %v)",
					d, bound, MaxIterations, allowed, MaxDuration)
			}
		})
	}
	// Within the limits, templates work.
	out, err := p.Render(context.Background(), env, compileOne(t, p, `{{ range $i := until 3 }}{{ $i }}{{ end }}{{ len (until 100) }}`), nil)
	if err != nil || out != "012100" {
		t.Errorf("bounded template: %q, %v", out, err)
	}
}

// The iteration limit counts exactly: MaxIterations range iterations are
// allowed, one more is refused. (Checked on the counter itself, with the
// deadline out of reach, since a whole template at the limit may meet the
// time limit first on a slow machine.)
func TestIterationLimitBoundary(t *testing.T) {
	b := binding{deadline: time.Now().Add(time.Hour)}
	for i := range MaxIterations {
		if err := b.tick(); err != nil {
			t.Fatalf("iteration %d of %d refused: %v", i+1, MaxIterations, err)
		}
	}
	if err := b.tick(); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "range iterations") {
		t.Errorf("iteration %d: %v, want the iteration limit", MaxIterations+1, err)
	}
	// And the deadline is checked: a binding past its deadline stops
	// within 64 iterations.
	b = binding{deadline: time.Now().Add(-time.Second)}
	var err error
	for range 64 {
		if err = b.tick(); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "ran longer than") {
		t.Errorf("past the deadline: %v, want the time limit", err)
	}
}

// halt is a *HaltError that unwraps to ErrHalt, with its reason.
func TestHalt(t *testing.T) {
	p := NewProgram()
	_, err := p.Render(context.Background(), &Env{Store: NewStore(Identity{})}, compileOne(t, p, `{{ halt "no random channel found" }}`), nil)
	var he *HaltError
	if !errors.As(err, &he) || he.Reason != "no random channel found" || !errors.Is(err, ErrHalt) {
		t.Fatalf("err = %#v", err)
	}
}

// The koi functions over the store, as a behavior uses them.
func TestKoiFunctions(t *testing.T) {
	p := NewProgram()
	st := NewStore(Identity{Index: 4, UserID: "U4", Token: "tok"})
	env := &Env{Store: st, Params: map[string]string{"channel_id": "C9"}}
	resp := map[string]any{
		"channels": []any{
			map[string]any{"id": "C1", "name": "general", "is_member": true},
			map[string]any{"id": "C2", "name": "old", "is_archived": true, "is_member": true},
			map[string]any{"id": "C3", "name": "random"},
		},
		"messages": []any{
			map[string]any{"ts": "10.000002", "user": "U2", "text": "b"},
			map[string]any{"ts": "10.000001", "user": "U1", "text": "a"},
			map[string]any{"text": "no ts, no user"},
		},
	}
	tests := []struct {
		src, want string
	}{
		{`{{ koiIndex }} {{ userID }} {{ token }}`, "4 U4 tok"},
		{`{{ get "channel_id" }} {{ param "channel_id" }}`, "C9 C9"},                        // launch parameters
		{`{{ set "x" 3 }}{{ get "x" }}{{ if not (get "nope") }}-nil{{ end }}`, "3-nil"},     // variables
		{`{{ addChannels .channels }}{{ len (stringArray "a" "b") }}`, "2"},                 // channels from a reply
		{`{{ (randomChannel true).ID }}`, "C1"},                                             // archived and non-member skipped
		{`{{ setCurrentChannel "C3" }}{{ (currentChannel).Name }}`, "random"},               // by id
		{`{{ addMessages "C3" .messages }}{{ (latestMessage "C3").TS }}`, "10.000002"},      // newest kept last
		{`{{ len (messages (currentChannel)) }}`, "2"},                                      // ts-less dropped
		{`{{ join "," (extractStrings .messages "user") }}`, "U2,U1"},                       // missing keys skipped
		{`{{ addUserIDs (extractStrings .messages "user") }}{{ len userIDs }}`, "2"},        // user ids
		{`{{ pickString (stringArray "only") }}|{{ pickString (list) }}|`, "only||"},        // pick
		{`{{ dictGet (dictSet (dict) "k" "v") "k" }}`, "v"},                                 // sprig's set/get renamed
		{`{{ if chance 1 }}yes{{ end }}{{ if chance 0 }}no{{ end }}`, "yes"},                // chance
		{`{{ index .messages 0 "ts" }}`, "10.000002"},                                       // the seed formation's index
		{`{{ websocketURL "ws://127.0.0.1:1/ws" }}{{ websocketHeader "X-A" "b" }}ok`, "ok"}, // websocket spec
	}
	for _, tt := range tests {
		got, err := p.Render(context.Background(), env, compileOne(t, p, tt.src), resp)
		if err != nil || got != tt.want {
			t.Errorf("%s\n  = %q, %v; want %q", tt.src, got, err, tt.want)
		}
	}
	if ws := st.Websocket(); ws.URL != "ws://127.0.0.1:1/ws" || ws.Header.Get("X-A") != "b" {
		t.Errorf("websocket spec = %+v", ws)
	}
	bad := []string{
		`{{ param "missing" }}`,
		`{{ setCurrentChannel 42 }}`,
		`{{ websocketURL "http://x" }}`,
		`{{ pickString (list 1 2) }}`,
		`{{ addMessages "" .messages }}`,
	}
	for _, src := range bad {
		if _, err := p.Render(context.Background(), env, compileOne(t, p, src), resp); err == nil {
			t.Errorf("%s: no error", src)
		} else if !strings.HasPrefix(err.Error(), "test: ") {
			t.Errorf("%s: error %q does not say where", src, err)
		}
	}
}

// Sequence variables belong to one execution; koi variables to the koi.
func TestVariableScopes(t *testing.T) {
	p := NewProgram()
	st := NewStore(Identity{})
	a, b := &Env{Store: st}, &Env{Store: st}
	if err := p.Run(context.Background(), a, compileOne(t, p, `{{ set "ch" "C1" }}{{ setKoi "self" "U1" }}`), nil); err != nil {
		t.Fatal(err)
	}
	got, _ := p.Render(context.Background(), b, compileOne(t, p, `[{{ with get "ch" }}{{ . }}{{ end }}][{{ get "self" }}]`), nil)
	if got != "[][U1]" {
		t.Errorf("another sequence sees %q, want its own empty ch and the koi's self", got)
	}
	got, _ = p.Render(context.Background(), a, compileOne(t, p, `{{ get "ch" }}`), nil)
	if got != "C1" {
		t.Errorf("the same sequence sees %q", got)
	}
}

// One compiled program serves many koi at once without mixing their
// stores.
func TestProgramConcurrentKoi(t *testing.T) {
	p := NewProgram()
	setX := compileOne(t, p, `{{ set "me" koiIndex }}`)
	getX := compileOne(t, p, `{{ get "me" }}`)
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := &Env{Store: NewStore(Identity{Index: i})}
			for range 200 {
				if err := p.Run(context.Background(), env, setX, nil); err != nil {
					errs <- err.Error()
					return
				}
				if got, _ := p.Render(context.Background(), env, getX, nil); got != strconv.Itoa(i) {
					errs <- "koi " + strconv.Itoa(i) + " saw " + got
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func BenchmarkRenderConst(b *testing.B) {
	p := NewProgram()
	tx, _ := p.compile("42", "b")
	env := &Env{Store: NewStore(Identity{})}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = p.Render(context.Background(), env, tx, nil)
	}
}

func BenchmarkRenderTemplate(b *testing.B) {
	p := NewProgram()
	tx, _ := p.compile(`{{ (get "channel").ID }}`, "b")
	st := NewStore(Identity{})
	st.Set("channel", &Channel{ID: "C1"})
	env := &Env{Store: st}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = p.Render(context.Background(), env, tx, nil)
	}
}

// BenchmarkRenderRange ranges over a decoded list of 1,000 objects, as a
// post_action over a reply does: the per-iteration cost of a range body
// (its tick included).
func BenchmarkRenderRange(b *testing.B) {
	p := NewProgram()
	tx, err := p.compile(`{{ range .members }}{{ if hasPrefix "UX" .id }}{{ halt "found" }}{{ end }}{{ end }}`, "b")
	if err != nil {
		b.Fatal(err)
	}
	members := make([]any, 1000)
	for i := range members {
		members[i] = map[string]any{"id": "U" + strconv.Itoa(i)}
	}
	data := map[string]any{"members": members}
	env := &Env{Store: NewStore(Identity{})}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Run(context.Background(), env, tx, data); err != nil {
			b.Fatal(err)
		}
	}
}
