package preference

import (
	"math"
	"strings"
	"testing"
)

func TestKrippendorffAlpha(t *testing.T) {
	// Two labelers, three items: (a,a), (b,b), (a,b). By hand: D_o = 2/6,
	// D_e = (36-18)/30, alpha = 1 - (1/3)/0.6 = 4/9.
	in := AuditInput{AgreementItems: 3, VotePairs: 3, AgreeingPairs: 2, AlphaObserved: 2, AlphaCategories: [3]int64{3, 3, 0}}
	a := agreement(in)
	if math.Abs(a.KrippendorffAlpha-4.0/9) > 1e-12 || math.Abs(a.PairwiseRate-2.0/3) > 1e-12 {
		t.Fatalf("alpha %v rate %v, want 4/9 and 2/3", a.KrippendorffAlpha, a.PairwiseRate)
	}
	// Perfect agreement on varied items is 1.
	perfect := agreement(AuditInput{AlphaObserved: 0, AlphaCategories: [3]int64{4, 2, 0}, VotePairs: 3, AgreeingPairs: 3})
	if perfect.KrippendorffAlpha != 1 {
		t.Errorf("perfect agreement alpha %v", perfect.KrippendorffAlpha)
	}
}

func TestWilson(t *testing.T) {
	// Reference: 8 of 10 -> 0.4902 to 0.9433 (Wilson, 95%).
	r := wilson(8, 10)
	if math.Abs(r.Low-0.4902) > 1e-4 || math.Abs(r.High-0.9433) > 1e-4 || r.Rate != 0.8 {
		t.Fatalf("wilson(8,10) = %+v", r)
	}
	if z := wilson(0, 0); z.Rate != 0 || z.N != 0 {
		t.Errorf("wilson(0,0) = %+v", z)
	}
}

func TestZPValue(t *testing.T) {
	if p := zPValue(1.959963984540054); math.Abs(p-0.05) > 1e-9 {
		t.Errorf("p(1.96) = %v, want 0.05", p)
	}
	if p := zPValue(0); p != 1 {
		t.Errorf("p(0) = %v", p)
	}
}

func TestAuditFlagsBiasedLabelers(t *testing.T) {
	reliable := func(name string) LabelerCounts {
		return LabelerCounts{Name: name, Comparisons: 200, Pairs: 200, LOOAgree: 180, LOOTotal: 200,
			PositionN: 200, PositionFirstWins: 102, PositionExpected: 100, PositionVariance: 50,
			LengthPairs: 200, LongerWins: 96}
	}
	first := reliable("first")
	first.PositionFirstWins, first.LOOAgree = 200, 100
	long := reliable("long")
	long.LongerWins = 200
	in := AuditInput{Labelers: []LabelerCounts{reliable("a"), reliable("b"), reliable("c"), first, long},
		FlaggedRows: []FlaggedRow{{RowRef: RowRef{ComparisonID: 7, Labeler: "a"}, Flags: []string{"empty_response"}}}}
	r := Audit(in)
	subjects := map[string][]string{}
	for _, f := range r.Findings {
		subjects[f.Subject] = append(subjects[f.Subject], f.Reason)
	}
	for _, name := range []string{"a", "b", "c"} {
		if got := subjects["labeler "+name]; got != nil {
			t.Errorf("reliable labeler %s flagged: %v", name, got)
		}
	}
	if got := strings.Join(subjects["labeler first"], "; "); !strings.Contains(got, "position bias") || !strings.Contains(got, "majority") {
		t.Errorf("labeler first: %q, want position bias and low majority agreement", got)
	}
	if got := strings.Join(subjects["labeler long"], "; "); !strings.Contains(got, "prefers the longer") {
		t.Errorf("labeler long: %q, want length bias", got)
	}
	if subjects["comparison 7"] == nil {
		t.Error("flagged row not reported")
	}
	for i := 1; i < len(r.Findings); i++ {
		if r.Findings[i].Severity > r.Findings[i-1].Severity {
			t.Fatalf("findings not ordered by severity: %v", r.Findings)
		}
	}
	if r.Findings[0].Severity != High {
		t.Errorf("most severe finding is %v", r.Findings[0])
	}
}

// Labelers of the labeling app who flag, skip or rate against their ranks
// far more often than the others are findings; the others are not.
func TestAuditFlagsJudgements(t *testing.T) {
	usual := func(name string) LabelerCounts {
		return LabelerCounts{Name: name, Judgements: JudgementCounts{Labeled: 100, Responses: 400, Flagged: 20, Skipped: 3, RatedPairs: 500, Inverted: 25}}
	}
	flagger, skipper, contrary := usual("flagger"), usual("skipper"), usual("contrary")
	flagger.Judgements.Flagged = 240
	skipper.Judgements.Skipped = 60
	contrary.Judgements.Inverted = 300
	r := Audit(AuditInput{Labelers: []LabelerCounts{usual("a"), usual("b"), usual("c"), flagger, skipper, contrary}})
	reasons := map[string]string{}
	for _, f := range r.Findings {
		reasons[f.Subject] += f.Reason + "; "
	}
	for subject, want := range map[string]string{
		"labeler a": "", "labeler b": "", "labeler c": "",
		"labeler flagger":  "flags responses far more often than the others; ",
		"labeler skipper":  "skips items far more often than the others; ",
		"labeler contrary": "ratings contradict the ranking; ",
	} {
		if reasons[subject] != want {
			t.Errorf("%s: %q, want %q", subject, reasons[subject], want)
		}
	}
	var b strings.Builder
	r.WriteText(&b)
	if !strings.Contains(b.String(), "In the labeling app:") || !strings.Contains(b.String(), "60% of 400") {
		t.Errorf("text report lacks the labeling app's table:\n%s", b.String())
	}
}

func TestContradictionEvidence(t *testing.T) {
	for _, tc := range []struct {
		l    LabelerCounts
		want string
	}{
		{LabelerCounts{Contradictions: 3, ContradictionExample: [2]int64{44, 51}, ContradictionPair: [2]int64{7, 9}},
			"3 response pairs ranked both ways (e.g. comparison 44 ranks response 7 over 9, comparison 51 ranks 9 over 7)"},
		{LabelerCounts{Contradictions: 1, ContradictionExample: [2]int64{44, 44}, ContradictionPair: [2]int64{7, 9}},
			"1 response pair ranked both ways (e.g. comparison 44 ranks response 7 over 9 and 9 over 7)"},
	} {
		if got := contradictionEvidence(tc.l); got != tc.want {
			t.Errorf("evidence %q\nwant     %q", got, tc.want)
		}
	}
}

// TestWriteTextEscapesImportedText: a labeler name with terminal escapes
// or a newline can neither colour the terminal nor add a line.
func TestWriteTextEscapesImportedText(t *testing.T) {
	name := "ev\x1b[31mil\nHigh] labeler ada: fake"
	in := AuditInput{Scope: "snapshot s\r1", Comparisons: 1,
		Labelers: []LabelerCounts{{Name: name, Comparisons: 1, Pairs: 1, Contradictions: 1, ContradictionExample: [2]int64{1, 2}, ContradictionPair: [2]int64{3, 4}}}}
	var clean, evil strings.Builder
	Audit(in).WriteText(&evil)
	in.Scope, in.Labelers[0].Name = "snapshot s1", "evil"
	Audit(in).WriteText(&clean)
	out := evil.String()
	if strings.ContainsAny(out, "\x1b\r") || strings.Count(out, "\n") != strings.Count(clean.String(), "\n") {
		t.Fatalf("control characters reached the report:\n%s", out)
	}
	for _, want := range []string{`labeler ev\x1b[31mil\nHigh] labeler ada: fake: contradicts itself`, `snapshot s\r1`} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestExportStable(t *testing.T) {
	lines, ties := Export(FormatRanking, "p <x>", []string{"a", "b", "c"}, []int16{2, 1, 2}, "l")
	want := `{"prompt":"p <x>","responses":["a","b","c"],"ranking":[1,0,2],"labeler":"l","ranks":[2,1,2]}` + "\n"
	if ties != 0 || len(lines) != 1 || string(lines[0]) != want {
		t.Fatalf("ranking export %q", lines)
	}
	lines, ties = Export(FormatPairwise, "p", []string{"a", "b", "c"}, []int16{2, 1, 2}, "l")
	if ties != 1 || len(lines) != 2 || string(lines[0]) != `{"prompt":"p","chosen":"b","rejected":"a","labeler":"l"}`+"\n" {
		t.Fatalf("pairwise export %q ties %d", lines, ties)
	}
}
