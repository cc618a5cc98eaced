package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/koipond/koipond/keeper/contract"
)

// maxReasonSampleText is how much of a reason's sample the text report
// shows (the JSON report has it whole, up to its 256-byte bound).
const maxReasonSampleText = 80

// printReasons writes the "failures by reason" block of a text report:
// per failing key, each reason with its count, its share of the key's
// failures and its sample. It writes nothing when no key has a reason.
func printReasons(w io.Writer, keys []contract.ReportKey) {
	failing := false
	for _, k := range keys {
		failing = failing || len(k.Reasons) > 0
	}
	if !failing {
		return
	}
	fmt.Fprintln(w, "failures by reason:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tREASON\tCOUNT\tSHARE\tSAMPLE")
	for _, k := range keys {
		for _, r := range k.Reasons {
			share := 0.0
			if k.Failures > 0 {
				share = 100 * float64(r.Count) / float64(k.Failures)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%.1f%%\t%s\n", k.Key, r.Reason, r.Count, share, shortSample(r.Sample))
		}
	}
	_ = tw.Flush()
}

// shortSample cuts a sample for one line of text (samples are printable
// ASCII: the schools escaped everything else).
func shortSample(s string) string {
	if len(s) <= maxReasonSampleText {
		return s
	}
	return s[:maxReasonSampleText-3] + "..."
}
