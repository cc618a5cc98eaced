package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/koipond/koipond/keeper/contract"
)

// fidelityWord is a fidelity verdict in a word or two, for the progress
// line and run show: "matched", "NOT MATCHED" or "unjudged".
func fidelityWord(f *contract.Fidelity) string {
	switch {
	case f == nil:
		return ""
	case f.Verdict == contract.FidelityNotMatched:
		return "NOT MATCHED"
	}
	return clean(f.Verdict, 20)
}

// printFidelity writes the "Fidelity" section of a text report: the
// summary line, then per behavior expected against observed with z and
// the verdict (and its cause), per launch planned, started, completed
// and the uniformity of the starts, then the run-wide notes.
func printFidelity(w io.Writer, f *contract.Fidelity) {
	if f == nil {
		return
	}
	fmt.Fprintf(w, "Fidelity: %s — %s\n", fidelityWord(f), clean(f.Summary, 400))
	if f.KoiMinutes > 0 || f.PlannedKoiMinutes > 0 {
		line := fmt.Sprintf("  %.0f koi-minutes scheduled", f.KoiMinutes)
		if f.PlannedKoiMinutes > 0 {
			line += fmt.Sprintf(" of %.0f planned", f.PlannedKoiMinutes)
		}
		fmt.Fprintln(w, line)
	}
	if len(f.Behaviors) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  BEHAVIOR\tEXPECTED\tSE\tSTARTED\tCOMPLETED\tHALTED\tFAILED\tCANCELED\tZ\tVERDICT")
		for _, b := range f.Behaviors {
			z := "-"
			if b.Z != nil {
				z = fmt.Sprintf("%+.2f", *b.Z)
			}
			verdict := b.Verdict
			if verdict == contract.FidelityTooLittle {
				verdict = "too little exposure to judge"
			}
			fmt.Fprintf(tw, "  %s\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", fitMiddle(clean(b.Behavior, 200), reportKeyWidth),
				b.Expected, b.SE, b.Started, b.Completed, b.Halted, b.Failed, b.Canceled, z, clean(verdict, 40))
		}
		_ = tw.Flush()
		for _, b := range f.Behaviors {
			if b.Cause != "" {
				fmt.Fprintf(w, "  %s %s: %s\n", clean(b.Behavior, 80), clean(b.Verdict, 20), clean(b.Cause, 400))
			}
		}
	}
	for _, l := range f.Launches {
		test := clean(l.Uniformity, 20)
		if l.P != nil && l.KS != nil {
			test = fmt.Sprintf("%s (KS D %.3f over %d starts, p %.3g)", test, *l.KS, l.Starts, *l.P)
		} else if l.Note != "" {
			test = fmt.Sprintf("%s: %s", test, clean(l.Note, 120))
		}
		fmt.Fprintf(w, "  launch %s %q: %d planned, %d started, %d completed; starts %s\n", clean(l.ID, 40), clean(l.Name, 80),
			l.Planned, l.Started, l.Completed, test)
	}
	for _, n := range f.Notes {
		fmt.Fprintf(w, "  note: %s\n", clean(n, 300))
	}
}
