package preference

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/instructflow/instructflow/internal/printable"
)

// WriteText prints the report for a terminal: the findings first, then the
// tables they come from. Imported text (labeler names, snapshot names) is
// printed with its control characters escaped.
func (r Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Label audit of %s: %d comparisons, %d labelers\n\n", printable.String(r.Scope), r.Comparisons, len(r.Labelers))
	if len(r.Findings) == 0 {
		fmt.Fprintln(w, "Findings: none")
	} else {
		fmt.Fprintf(w, "Findings (%d, most severe first):\n", len(r.Findings))
		for _, f := range r.Findings {
			fmt.Fprintf(w, "  [%-6s] %s: %s\n           %s\n", f.Severity,
				printable.String(f.Subject), printable.String(f.Reason), printable.String(f.Evidence))
		}
	}
	if a := r.Agreement; a.Items > 0 {
		fmt.Fprintf(w, "\nAgreement between labelers: %d items judged by two or more; pairwise agreement %.1f%%, Krippendorff's alpha %.3f\n",
			a.Items, 100*a.PairwiseRate, a.KrippendorffAlpha)
	} else {
		fmt.Fprintln(w, "\nAgreement between labelers: no item was judged by two or more labelers")
	}
	fmt.Fprintf(w, "\n%-24s %8s %8s %16s %16s %16s %8s %7s\n", "labeler", "compar.", "pairs", "majority agree", "first wins", "longer wins", "ties", "contra.")
	for _, l := range r.Labelers {
		fmt.Fprintf(w, "%-24s %8d %8d %16s %16s %16s %7.1f%% %7d\n", printable.String(l.Name), l.Comparisons, l.Pairs,
			rate(l.MajorityAgreement), rate(l.FirstWins), rate(l.LongerWins), 100*l.TieRate.Rate, l.SelfContradictions)
	}
	var app []LabelerReport
	for _, l := range r.Labelers {
		if l.FlagRate.N > 0 || l.SkipRate.N > 0 {
			app = append(app, l)
		}
	}
	if len(app) > 0 {
		fmt.Fprintf(w, "\nIn the labeling app:\n%-24s %16s %16s %22s\n", "labeler", "flagged", "skipped", "ratings against ranks")
		for _, l := range app {
			fmt.Fprintf(w, "%-24s %16s %16s %22s\n", printable.String(l.Name), rate(l.FlagRate), rate(l.SkipRate), rate(l.RatingInverts))
		}
	}
	if len(r.FlagCounts) > 0 {
		keys := make([]string, 0, len(r.FlagCounts))
		for k := range r.FlagCounts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", printable.String(k), r.FlagCounts[k]))
		}
		fmt.Fprintf(w, "\nRows kept with import flags: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "Duplicate judgements: %d groups; degenerate pairs: %d\n", len(r.Duplicates), len(r.DegeneratePairs))
	if len(r.RMDisagreements) > 0 {
		fmt.Fprintf(w, "Reward-model disagreements to review: %d (see findings)\n", len(r.RMDisagreements))
	}
}

func rate(r Rate) string {
	if r.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%% of %d", 100*r.Rate, r.N)
}
