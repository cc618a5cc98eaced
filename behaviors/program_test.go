package behaviors

import (
	"errors"
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
// says which limit.
func TestTemplateLimits(t *testing.T) {
	p := NewProgram()
	env := &Env{Store: NewStore(Identity{})}
	tests := []struct {
		name string
		src  string
	}{
		{"range over a huge int", `{{ range 100000000000 }}{{ end }}`},
		{"nested ranges", `{{ range 1000 }}{{ range 1000 }}{{ end }}{{ end }}`},
		{"huge until", `{{ until 100000000 }}`},
		{"huge seq", `{{ seq 1 100000000 }}`},
		{"huge repeat", `{{ repeat (atoi "100000000") "x" }}`},
		{"huge indent", `{{ indent (atoi "100000000") "x" }}`},
		{"huge random string", `{{ randAlpha 100000000 }}`},
		{"output over the cap", `{{ range 100 }}{{ repeat 1000 "x" }}{{ end }}`},
	}
	// How long the most iterations allowed take on this machine now: a
	// starved, race-instrumented process has taken 11 s for what a quiet
	// one does in well under a second, so a template stopped by the
	// iteration limit may take that long (twice it, for the load to vary).
	start := time.Now()
	if _, err := p.Render(env, compileOne(t, p, `{{ range `+strconv.Itoa(MaxIterations)+` }}{{ end }}`), nil); err != nil {
		t.Fatalf("a template at the iteration limit: %v", err)
	}
	allowed := time.Since(start)
	t.Logf("%d iterations take %v here", MaxIterations, allowed)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := compileOne(t, p, tt.src)
			start := time.Now()
			_, err := p.Render(env, tx, nil)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
			if d := time.Since(start); d > max(2*MaxDuration, 2*allowed)+time.Second {
				t.Errorf("took %v to stop (%d iterations take %v here)", d, MaxIterations, allowed)
			}
		})
	}
	// Within the limits, templates work.
	out, err := p.Render(env, compileOne(t, p, `{{ range $i := until 3 }}{{ $i }}{{ end }}{{ len (until 100) }}`), nil)
	if err != nil || out != "012100" {
		t.Errorf("bounded template: %q, %v", out, err)
	}
}

// halt is a *HaltError that unwraps to ErrHalt, with its reason.
func TestHalt(t *testing.T) {
	p := NewProgram()
	_, err := p.Render(&Env{Store: NewStore(Identity{})}, compileOne(t, p, `{{ halt "no random channel found" }}`), nil)
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
		got, err := p.Render(env, compileOne(t, p, tt.src), resp)
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
		if _, err := p.Render(env, compileOne(t, p, src), resp); err == nil {
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
	if err := p.Run(a, compileOne(t, p, `{{ set "ch" "C1" }}{{ setKoi "self" "U1" }}`), nil); err != nil {
		t.Fatal(err)
	}
	got, _ := p.Render(b, compileOne(t, p, `[{{ with get "ch" }}{{ . }}{{ end }}][{{ get "self" }}]`), nil)
	if got != "[][U1]" {
		t.Errorf("another sequence sees %q, want its own empty ch and the koi's self", got)
	}
	got, _ = p.Render(a, compileOne(t, p, `{{ get "ch" }}`), nil)
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
				if err := p.Run(env, setX, nil); err != nil {
					errs <- err.Error()
					return
				}
				if got, _ := p.Render(env, getX, nil); got != strconv.Itoa(i) {
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
		_, _ = p.Render(env, tx, nil)
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
		_, _ = p.Render(env, tx, nil)
	}
}
