package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/wire/wiretest"
)

// The text report's Fidelity section: the summary first, a row per
// behavior with expected, observed and z, the causes, each launch's
// uniformity and the notes; control characters from the network never
// reach the terminal.
func TestPrintFidelity(t *testing.T) {
	z1, z2, ks, p := -14.2, 0.8, 0.41, 3e-12
	f := &contract.Fidelity{Verdict: contract.FidelityNotMatched, Summary: "behavior post under: 50% halted (no current channel)",
		KoiMinutes: 1180, PlannedKoiMinutes: 1200, Notes: []string{"guardrail \"x\" → pause at 10:00:00"},
		Behaviors: []contract.FidelityBehavior{
			{Behavior: "post", Expected: 400, SE: 19.5, Started: 398, Completed: 121, Halted: 200, Failed: 77, Z: &z1,
				Verdict: contract.FidelityUnder, Cause: "50% halted (no current channel)"},
			{Behavior: "list\x1b[2J", Expected: 800, SE: 27, Started: 820, Completed: 820, Z: &z2, Verdict: contract.FidelityWithin},
			{Behavior: "rare", Expected: 2, SE: 1.4, Verdict: contract.FidelityTooLittle},
		},
		Launches: []contract.FidelityLaunch{
			{ID: "l1", Name: "herd", Planned: 100, Started: 100, Completed: 98, Starts: 100, KS: &ks, P: &p, Uniformity: contract.FidelityClumped},
			{ID: "l2", Name: "tiny", Planned: 5, Started: 5, Completed: 5, Starts: 5, Uniformity: contract.FidelityTooFew, Note: "too few starts to test (5; at least 20)"},
		}}
	var b strings.Builder
	printFidelity(&b, f)
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"Fidelity: NOT MATCHED — behavior post under: 50% halted (no current channel)\n",
		"1180 koi-minutes scheduled of 1200 planned",
		"post      400.0     19.5  398      121        200     77      0         -14.20  under",
		"rare", "too little exposure to judge",
		"post under: 50% halted (no current channel)",
		`launch l1 "herd": 100 planned, 100 started, 98 completed; starts clumped (KS D 0.410 over 100 starts, p 3e-12)`,
		`launch l2 "tiny": 5 planned, 5 started, 5 completed; starts too_few: too few starts to test (5; at least 20)`,
		`note: guardrail "x" → pause at 10:00:00`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("an escape sequence reached the text report:\n%q", out)
	}
	if w := fidelityWord(&contract.Fidelity{Verdict: contract.FidelityMatched}); w != "matched" {
		t.Errorf("word %q", w)
	}
}

// The progress line says the fidelity word once the run view carries a
// verdict, and a change of verdict makes the plain printer write a line.
func TestProgressFidelityWord(t *testing.T) {
	s := progressSample{Elapsed: time.Second, Run: progressRun(contract.RunRunning, 1)}
	if line := progressLine(s); strings.Contains(line, "fidelity") {
		t.Errorf("no verdict yet, the line says one: %q", line)
	}
	before := progressKey(s)
	s.Run.Fidelity = &contract.Fidelity{Verdict: contract.FidelityNotMatched}
	if line := progressLine(s); !strings.HasSuffix(line, "  fidelity NOT MATCHED") {
		t.Errorf("line %q does not end with the fidelity word", line)
	}
	if progressKey(s) == before {
		t.Error("a new fidelity verdict does not change the progress key")
	}
}

// coinSet halts one behavior on a coin flip: the load cannot match its
// spec.
const coinSet = `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {
    "tick": {"frequency": 0.5, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
    "coin": {"frequency": 0.5, "steps": [{"pre_actions": ["{{ if chance 0.5 }}{{ halt \"the coin said no\" }}{{ end }}"],
      "request": {"type": "api", "method": "auth.test"}}]}}}`

// CI gating on fidelity end to end (keeper, school, pond over real
// sockets): `run create --wait --threshold fidelity=matched` exits 0 for a
// set whose behaviors always complete, and 1 for one with a behavior
// halting half the time, its report naming the behavior and the halt; the
// CSV report carries the verdict row.
func TestRunWaitGatesOnFidelity(t *testing.T) {
	k := testKeeper(t)
	p := testPond(t, 100, 5, nil)
	testSchool(t, k, "a", 100)
	base := "http://" + k.HTTPAddr()
	c := wiretest.API{Base: base + "/api/v1"}
	c.Call(t, "POST", "/behavior-sets", map[string]any{"name": "steady", "files": []map[string]string{{"name": "steady.json", "content": tickSet}}}, nil)
	c.Call(t, "POST", "/behavior-sets", map[string]any{"name": "coin", "files": []map[string]string{{"name": "coin.json", "content": coinSet}}}, nil)
	type result struct {
		out, errOut string
		code        int
	}
	results := map[string]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, set := range []string{"steady", "coin"} {
		wg.Go(func() {
			out, errOut, code := runCmd(t, "run", "create", "--keeper", base, "--name", set, "--behaviors", set,
				"--api-base", p.URL()+"/api", "--token-template", "xoxp-pond-{{.Index}}", "--koi", "30", "--ramp", "0",
				"--time-scale", "60", "--duration", "8s", "--wait", "--threshold", "fidelity=matched")
			mu.Lock()
			results[set] = result{out, errOut, code}
			mu.Unlock()
		})
	}
	wg.Wait()
	for name, r := range results {
		t.Logf("%s run: exit %d\n--- progress\n%s--- report\n%s", name, r.code, r.errOut, r.out)
	}
	s, coin := results["steady"], results["coin"]
	if s.code != 0 || !strings.Contains(s.out, "Fidelity: matched — the load matched its spec") || !strings.Contains(s.out, "PASS  fidelity: matched") {
		t.Errorf("steady run: exit %d, want 0 with the load matched", s.code)
	}
	if coin.code != 1 || !strings.Contains(coin.out, "Fidelity: NOT MATCHED — behavior coin under: ") ||
		!strings.Contains(coin.out, "halted (the coin said no)") || !strings.Contains(coin.out, "FAIL  fidelity: matched") {
		t.Errorf("coin run: exit %d, want 1 with the halting behavior named", coin.code)
	}
	if !strings.Contains(coin.errOut, "fidelity ") {
		t.Errorf("the progress lines never say the fidelity word:\n%s", coin.errOut)
	}
	var runs []struct{ ID, Name string }
	c.Call(t, "GET", "/runs", nil, &runs)
	for _, r := range runs {
		out, _, _ := runCmd(t, "report", "--keeper", base, "--format", "csv", r.ID)
		want := map[string]string{"steady": ",fidelity,", "coin": "not_matched: behavior coin under"}[r.Name]
		if !strings.Contains(out, r.ID+",fidelity,") || !strings.Contains(out, want) {
			t.Errorf("CSV report %s has no fidelity row %q:\n%s", r.Name, want, out)
		}
	}
}
