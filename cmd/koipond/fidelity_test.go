package main

import (
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/contract"
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
