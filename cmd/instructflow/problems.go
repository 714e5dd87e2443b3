package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/instructflow/instructflow/internal/jsonl"
	"github.com/instructflow/instructflow/internal/printable"
)

// problems is what an import's reader found, for its report: the first
// problems kept and a count of all of them by rule.
type problems[K ~string] struct {
	File          string             `json:"file"`
	Rows          int                `json:"rows"`
	Problems      []jsonl.Problem[K] `json:"problems"`
	ProblemCounts map[K]int          `json:"problem_counts"`
	ProblemsTotal int                `json:"problems_total"`
	action        func(K) jsonl.Action
}

// problemsOf takes what rd found, each problem with what it did in rd
// (--skip-invalid turns refusals into skips).
func problemsOf[R any, K ~string](file string, rd *jsonl.Reader[R, K]) problems[K] {
	return problems[K]{File: file, Rows: rd.Rows, Problems: rd.Problems, ProblemCounts: rd.Counts,
		ProblemsTotal: rd.ProblemCount(), action: rd.Action}
}

// refusal says why the file was refused and what to do.
func (r problems[K]) refusal(dryRun bool) string {
	n := 0
	for rule, c := range r.ProblemCounts {
		if r.action(rule) == jsonl.Refuse {
			n += c
		}
	}
	if dryRun {
		return fmt.Sprintf("dry run: the file would be refused: %d problems refuse it (%s); fix them, or import the rest with --skip-invalid", n, r.byRule())
	}
	for _, p := range r.Problems {
		if r.action(p.Rule) == jsonl.Refuse {
			return fmt.Sprintf("refused at line %d (%s); nothing was written: fix the line, or import the rest with --skip-invalid (--dry-run lists every problem)", p.Line, p.Rule)
		}
	}
	return fmt.Sprintf("refused: %d problems refuse the file (%s); nothing was written: fix them, or import the rest with --skip-invalid", n, r.byRule())
}

// byRule lists the problem counts by rule, most frequent first.
func (r problems[K]) byRule() string {
	rules := make([]K, 0, len(r.ProblemCounts))
	for rule := range r.ProblemCounts {
		rules = append(rules, rule)
	}
	slices.SortFunc(rules, func(a, b K) int {
		if c := cmp.Compare(r.ProblemCounts[b], r.ProblemCounts[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	parts := make([]string, len(rules))
	for i, rule := range rules {
		parts[i] = fmt.Sprintf("%s %d", rule, r.ProblemCounts[rule])
	}
	return strings.Join(parts, ", ")
}

// print lists the problems kept, and how many more there were.
func (r problems[K]) print(errw io.Writer) {
	file := printable.String(r.File)
	for _, p := range r.Problems {
		fmt.Fprintf(errw, "%s: %s [%s]\n", file, printable.String(p.String()), r.action(p.Rule))
	}
	if more := r.ProblemsTotal - len(r.Problems); more > 0 {
		fmt.Fprintf(errw, "%s: ... and %d more problems (%s in all; --show-problems N lists more)\n", file, more, r.byRule())
	}
}
