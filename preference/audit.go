package preference

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// AuditInput holds the aggregates the database computes for an audit (the
// counting is done in SQL; this package turns counts into rates, tests and
// findings).
type AuditInput struct {
	Scope       string // "all current comparisons" or "snapshot NAME"
	Comparisons int64
	Labelers    []LabelerCounts

	// Inter-labeler agreement over items (a prompt and a pair of its
	// responses) judged by at least two labelers. A vote is one of three
	// categories: first preferred, second preferred, tie.
	AgreementItems  int64
	VotePairs       int64   // pairs of votes on the same item
	AgreeingPairs   int64   // of those, pairs that agree
	AlphaObserved   float64 // sum over items of (m^2 - sum_c n_c^2) / (m - 1)
	AlphaCategories [3]int64

	Duplicates      []DuplicateGroup
	DegeneratePairs []RowRef
	FlaggedRows     []FlaggedRow
	FlagCounts      map[string]int64
	RMDisagreements []RMDisagreement
}

// LabelerCounts are one labeler's raw counts.
type LabelerCounts struct {
	Name        string
	Comparisons int64
	Pairs       int64 // response pairs judged
	TiePairs    int64

	LOOAgree, LOOTotal int64 // votes agreeing with the others' majority on the item

	PositionN         int64   // comparisons with known shown order and a single best response
	PositionFirstWins int64   // of those, the first shown was best
	PositionExpected  float64 // sum of 1/K: first wins by chance
	PositionVariance  float64 // sum of (1/K)(1-1/K)

	LengthPairs int64 // decided pairs whose responses differ in length
	LongerWins  int64

	// Contradictions counts the response pairs this labeler ranked both ways.
	Contradictions int64
	// One of them, for review: comparison ContradictionExample[0] ranks
	// response ContradictionPair[0] over ContradictionPair[1], comparison
	// ContradictionExample[1] the other way (the same id when one comparison
	// does both).
	ContradictionExample [2]int64
	ContradictionPair    [2]int64

	// Judgements are what the labeling app records besides ranks.
	Judgements JudgementCounts
}

// JudgementCounts are one labeler's counts of the labeling app's ratings,
// flags and skips.
type JudgementCounts struct {
	Labeled    int64 // comparisons given in the labeling app
	Responses  int64 // responses judged there
	Flagged    int64 // of those, responses with a flag
	Skipped    int64 // items skipped (with a reason)
	RatedPairs int64 // response pairs with different ranks, both rated
	Inverted   int64 // of those, pairs whose ratings order them the other way
}

// DuplicateGroup is a set of comparisons by one labeler of the same prompt
// and responses with the same judgement; Near when equal only after
// normalising white space.
type DuplicateGroup struct {
	Labeler       string  `json:"labeler"`
	ComparisonIDs []int64 `json:"comparison_ids"`
	Near          bool    `json:"near"`
}

// RowRef points at one comparison (and where it was imported from).
type RowRef struct {
	ComparisonID int64  `json:"comparison_id"`
	Labeler      string `json:"labeler"`
	ImportLine   *int   `json:"import_line,omitempty"`
	Detail       string `json:"detail,omitempty"`
}

// FlaggedRow is a comparison kept with import flags.
type FlaggedRow struct {
	RowRef
	Flags []string `json:"flags"`
}

// RMDisagreement is a labeled pair the reward model scores the other way.
type RMDisagreement struct {
	ComparisonID int64   `json:"comparison_id"`
	Labeler      string  `json:"labeler"`
	Model        string  `json:"model"`
	ScoreChosen  float64 `json:"score_chosen"`
	ScoreOther   float64 `json:"score_rejected"`
	// PLabel is the reward model's probability that the label is right,
	// sigmoid(score_chosen - score_rejected).
	PLabel float64 `json:"p_label"`
}

// Report is the audit of a set of comparisons.
type Report struct {
	Scope       string          `json:"scope"`
	Comparisons int64           `json:"comparisons"`
	Agreement   Agreement       `json:"agreement"`
	Labelers    []LabelerReport `json:"labelers"`
	Findings    []Finding       `json:"findings"` // most severe first

	Duplicates      []DuplicateGroup `json:"duplicates"`
	DegeneratePairs []RowRef         `json:"degenerate_pairs"`
	FlaggedRows     []FlaggedRow     `json:"flagged_rows"`
	FlagCounts      map[string]int64 `json:"flag_counts"`
	RMDisagreements []RMDisagreement `json:"rm_disagreements"`
}

// Agreement between labelers on items judged by several.
type Agreement struct {
	Items        int64   `json:"items"`
	PairwiseRate float64 `json:"pairwise_rate"` // share of vote pairs that agree
	// KrippendorffAlpha (nominal: first / second / tie): 1 is perfect
	// agreement, 0 is what chance gives, below 0 is systematic disagreement.
	KrippendorffAlpha float64 `json:"krippendorff_alpha"`
}

// Rate is a proportion with its 95% Wilson interval.
type Rate struct {
	K    int64   `json:"k"`
	N    int64   `json:"n"`
	Rate float64 `json:"rate"`
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// LabelerReport are one labeler's rates and tests.
type LabelerReport struct {
	Name        string `json:"name"`
	Comparisons int64  `json:"comparisons"`
	Pairs       int64  `json:"pairs"`
	TieRate     Rate   `json:"tie_rate"`
	// Agreement with the majority of the other labelers on the same items.
	MajorityAgreement Rate `json:"majority_agreement"`
	// How often the first shown response was ranked best, against chance.
	FirstWins   Rate    `json:"first_wins"`
	FirstChance float64 `json:"first_chance"`
	FirstP      float64 `json:"first_p"`
	// How often the longer response won, against the other labelers.
	LongerWins         Rate    `json:"longer_wins"`
	LongerPool         float64 `json:"longer_pool"`
	LongerP            float64 `json:"longer_p"`
	MajorityP          float64 `json:"majority_p"`
	MajorityPool       float64 `json:"majority_pool"`
	SelfContradictions int64   `json:"self_contradictions"` // response pairs ranked both ways
	// From the labeling app: responses flagged, items skipped (of items
	// labeled or skipped), and rated pairs whose ratings contradict the
	// ranks.
	FlagRate      Rate `json:"flag_rate"`
	SkipRate      Rate `json:"skip_rate"`
	RatingInverts Rate `json:"rating_inversions"`
}

// Severity orders findings.
type Severity int

const (
	Low Severity = iota
	Medium
	High
)

func (s Severity) String() string { return [...]string{"low", "medium", "high"}[s] }

// MarshalText writes the severity's name in JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is one flagged labeler or row, with the reason and the evidence.
type Finding struct {
	Severity Severity `json:"severity"`
	Subject  string   `json:"subject"` // "labeler NAME" or "comparison ID"
	Reason   string   `json:"reason"`
	Evidence string   `json:"evidence"`
	effect   float64  // orders findings of equal severity
}

// Thresholds of the labeler tests: a labeler is flagged when a rate differs
// from its reference with p below SignificanceP and by at least MinEffect,
// on at least MinSamples observations.
const (
	SignificanceP = 1e-3
	MinEffect     = 0.15
	MinSamples    = 20
	// HighEffect makes a flagged labeler's finding high severity.
	HighEffect = 0.2
)

// Audit turns the database's counts into the report.
func Audit(in AuditInput) Report {
	r := Report{
		Scope: in.Scope, Comparisons: in.Comparisons,
		Duplicates: in.Duplicates, DegeneratePairs: in.DegeneratePairs,
		FlaggedRows: in.FlaggedRows, FlagCounts: in.FlagCounts, RMDisagreements: in.RMDisagreements,
	}
	r.Agreement = agreement(in)

	var totLOO, totLOOAgree, totLen, totLonger, totPairs, totTies int64
	var tot JudgementCounts
	for _, l := range in.Labelers {
		j := l.Judgements
		tot.Responses, tot.Flagged, tot.Skipped, tot.Labeled = tot.Responses+j.Responses, tot.Flagged+j.Flagged, tot.Skipped+j.Skipped, tot.Labeled+j.Labeled
		tot.RatedPairs, tot.Inverted = tot.RatedPairs+j.RatedPairs, tot.Inverted+j.Inverted
		totLOO += l.LOOTotal
		totLOOAgree += l.LOOAgree
		totLen += l.LengthPairs
		totLonger += l.LongerWins
		totPairs += l.Pairs
		totTies += l.TiePairs
	}
	for _, l := range in.Labelers {
		lr := LabelerReport{
			Name: l.Name, Comparisons: l.Comparisons, Pairs: l.Pairs,
			TieRate:            wilson(l.TiePairs, l.Pairs),
			MajorityAgreement:  wilson(l.LOOAgree, l.LOOTotal),
			FirstWins:          wilson(l.PositionFirstWins, l.PositionN),
			LongerWins:         wilson(l.LongerWins, l.LengthPairs),
			SelfContradictions: l.Contradictions,
			FlagRate:           wilson(l.Judgements.Flagged, l.Judgements.Responses),
			SkipRate:           wilson(l.Judgements.Skipped, l.Judgements.Skipped+l.Judgements.Labeled),
			RatingInverts:      wilson(l.Judgements.Inverted, l.Judgements.RatedPairs),
		}
		if l.PositionN > 0 {
			lr.FirstChance = l.PositionExpected / float64(l.PositionN)
			lr.FirstP = zPValue((float64(l.PositionFirstWins) - l.PositionExpected) / math.Sqrt(max(l.PositionVariance, 1e-12)))
		}
		lr.LongerPool, lr.LongerP = versusRest(l.LongerWins, l.LengthPairs, totLonger, totLen)
		lr.MajorityPool, lr.MajorityP = versusRest(l.LOOAgree, l.LOOTotal, totLOOAgree, totLOO)
		r.Labelers = append(r.Labelers, lr)
		r.Findings = append(r.Findings, labelerFindings(lr, l, totTies, totPairs)...)
		r.Findings = append(r.Findings, judgementFindings(lr, tot)...)
	}
	r.Findings = append(r.Findings, rowFindings(in)...)
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
			return c
		}
		return cmp.Compare(b.effect, a.effect)
	})
	return r
}

func agreement(in AuditInput) Agreement {
	a := Agreement{Items: in.AgreementItems}
	if in.VotePairs > 0 {
		a.PairwiseRate = float64(in.AgreeingPairs) / float64(in.VotePairs)
	}
	// Krippendorff's alpha, nominal: 1 - D_o / D_e with
	// D_o = (1/n) sum_u (m_u^2 - sum_c n_uc^2) / (m_u - 1),
	// D_e = (n^2 - sum_c n_c^2) / (n (n - 1)).
	var n, sumSq float64
	for _, c := range in.AlphaCategories {
		n += float64(c)
		sumSq += float64(c) * float64(c)
	}
	if n > 1 {
		de := (n*n - sumSq) / (n * (n - 1))
		if de > 0 {
			a.KrippendorffAlpha = 1 - (in.AlphaObserved/n)/de
		} else {
			a.KrippendorffAlpha = 1 // every vote in one category
		}
	}
	return a
}

func labelerFindings(lr LabelerReport, l LabelerCounts, totTies, totPairs int64) []Finding {
	subject := "labeler " + lr.Name
	var out []Finding
	add := func(effect float64, reason, evidence string) {
		sev := Medium
		if math.Abs(effect) >= HighEffect {
			sev = High
		}
		out = append(out, Finding{Severity: sev, Subject: subject, Reason: reason, Evidence: evidence, effect: math.Abs(effect)})
	}
	if m := lr.MajorityAgreement; m.N >= MinSamples && lr.MajorityP < SignificanceP && lr.MajorityPool-m.Rate >= MinEffect {
		add(lr.MajorityPool-m.Rate, "disagrees with the other labelers' majority",
			fmt.Sprintf("agrees on %d of %d items (%.0f%%, 95%% CI %.0f-%.0f%%) vs %.0f%% for the others, p=%.1e",
				m.K, m.N, 100*m.Rate, 100*m.Low, 100*m.High, 100*lr.MajorityPool, lr.MajorityP))
	}
	if f := lr.FirstWins; f.N >= MinSamples && lr.FirstP < SignificanceP && math.Abs(f.Rate-lr.FirstChance) >= MinEffect {
		add(f.Rate-lr.FirstChance, "position bias: ranks the first shown response best",
			fmt.Sprintf("first shown ranked best in %d of %d (%.0f%%, 95%% CI %.0f-%.0f%%) vs %.0f%% by chance, p=%.1e",
				f.K, f.N, 100*f.Rate, 100*f.Low, 100*f.High, 100*lr.FirstChance, lr.FirstP))
	}
	if g := lr.LongerWins; g.N >= MinSamples && lr.LongerP < SignificanceP && math.Abs(g.Rate-lr.LongerPool) >= MinEffect {
		add(g.Rate-lr.LongerPool, "length bias: prefers the longer response",
			fmt.Sprintf("longer response preferred in %d of %d pairs (%.0f%%, 95%% CI %.0f-%.0f%%) vs %.0f%% for the others, p=%.1e",
				g.K, g.N, 100*g.Rate, 100*g.Low, 100*g.High, 100*lr.LongerPool, lr.LongerP))
		if g.Rate < lr.LongerPool {
			out[len(out)-1].Reason = "length bias: prefers the shorter response"
		}
	}
	if t := lr.TieRate; t.N >= MinSamples && totPairs > t.N {
		pool, p := versusRest(t.K, t.N, totTies, totPairs)
		if p < SignificanceP && t.Rate-pool >= MinEffect {
			add(t.Rate-pool, "declares ties far more often than the others",
				fmt.Sprintf("ties in %d of %d pairs (%.0f%%) vs %.0f%% for the others, p=%.1e", t.K, t.N, 100*t.Rate, 100*pool, p))
		}
	}
	if l.Contradictions > 0 {
		out = append(out, Finding{Severity: Medium, Subject: subject, Reason: "contradicts itself",
			Evidence: contradictionEvidence(l), effect: float64(l.Contradictions)})
	}
	return out
}

// judgementFindings flags a labeler who flags, skips or rates against its
// own ranks far more often than the other labelers of the labeling app.
func judgementFindings(lr LabelerReport, tot JudgementCounts) []Finding {
	var out []Finding
	for _, c := range []struct {
		r          Rate
		totK, totN int64
		reason     string
		what       string
	}{
		{lr.FlagRate, tot.Flagged, tot.Responses, "flags responses far more often than the others", "responses flagged"},
		{lr.SkipRate, tot.Skipped, tot.Skipped + tot.Labeled, "skips items far more often than the others", "items skipped"},
		{lr.RatingInverts, tot.Inverted, tot.RatedPairs, "ratings contradict the ranking", "rated pairs whose ratings order them against the ranks"},
	} {
		if c.r.N < MinSamples || c.totN <= c.r.N {
			continue
		}
		pool, p := versusRest(c.r.K, c.r.N, c.totK, c.totN)
		if p < SignificanceP && c.r.Rate-pool >= MinEffect {
			sev := Medium
			if c.r.Rate-pool >= HighEffect {
				sev = High
			}
			out = append(out, Finding{Severity: sev, Subject: "labeler " + lr.Name, Reason: c.reason, effect: c.r.Rate - pool,
				Evidence: fmt.Sprintf("%s: %d of %d (%.0f%%, 95%% CI %.0f-%.0f%%) vs %.0f%% for the others, p=%.1e",
					c.what, c.r.K, c.r.N, 100*c.r.Rate, 100*c.r.Low, 100*c.r.High, 100*pool, p)})
		}
	}
	return out
}

// contradictionEvidence says how many response pairs a labeler ranked both
// ways and names one, with the comparisons that do it.
func contradictionEvidence(l LabelerCounts) string {
	pairs := "response pairs"
	if l.Contradictions == 1 {
		pairs = "response pair"
	}
	c, a, b := l.ContradictionExample, l.ContradictionPair[0], l.ContradictionPair[1]
	example := fmt.Sprintf("comparison %d ranks response %d over %d, comparison %d ranks %d over %d", c[0], a, b, c[1], b, a)
	if c[0] == c[1] {
		example = fmt.Sprintf("comparison %d ranks response %d over %d and %d over %d", c[0], a, b, b, a)
	}
	return fmt.Sprintf("%d %s ranked both ways (e.g. %s)", l.Contradictions, pairs, example)
}

func rowFindings(in AuditInput) []Finding {
	var out []Finding
	for _, d := range in.DegeneratePairs {
		out = append(out, Finding{Severity: High, Subject: fmt.Sprintf("comparison %d", d.ComparisonID),
			Reason: "degenerate pair: two responses are the same text after normalising white space", Evidence: describe(d)})
	}
	for _, f := range in.FlaggedRows {
		sev := Medium
		out = append(out, Finding{Severity: sev, Subject: fmt.Sprintf("comparison %d", f.ComparisonID),
			Reason: "kept with import flags: " + fmt.Sprint(f.Flags), Evidence: describe(f.RowRef)})
	}
	for _, d := range in.Duplicates {
		kind := "exact"
		if d.Near {
			kind = "near (white space)"
		}
		out = append(out, Finding{Severity: Low, Subject: fmt.Sprintf("comparisons %v", d.ComparisonIDs),
			Reason: kind + " duplicate judgement by one labeler", Evidence: "labeler " + d.Labeler, effect: float64(len(d.ComparisonIDs))})
	}
	for _, d := range in.RMDisagreements {
		out = append(out, Finding{Severity: Low, Subject: fmt.Sprintf("comparison %d", d.ComparisonID),
			Reason: "reward model confidently disagrees with the label (review it)",
			Evidence: fmt.Sprintf("labeler %s; %s gives the chosen response %.3f and the other %.3f: P(label right)=%.3f",
				d.Labeler, d.Model, d.ScoreChosen, d.ScoreOther, d.PLabel),
			effect: 1 - d.PLabel})
	}
	return out
}

func describe(r RowRef) string {
	s := "labeler " + r.Labeler
	if r.ImportLine != nil {
		s += fmt.Sprintf(", import line %d", *r.ImportLine)
	}
	if r.Detail != "" {
		s += ", " + r.Detail
	}
	return s
}

// wilson returns k/n with its 95% Wilson score interval.
func wilson(k, n int64) Rate {
	r := Rate{K: k, N: n}
	if n == 0 {
		return r
	}
	r.Rate = float64(k) / float64(n)
	r.Low, r.High = Wilson95(r.Rate, n)
	return r
}

// Wilson95 is the 95% Wilson score interval of a rate p observed in n
// trials (a win rate with ties counted as half a win is one too).
func Wilson95(p float64, n int64) (low, high float64) {
	if n == 0 {
		return 0, 1
	}
	const z = 1.959963984540054
	nf := float64(n)
	den := 1 + z*z/nf
	centre := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return max(0, centre-half), min(1, centre+half)
}

// versusRest compares k/n with the rate of everyone else (totK-k)/(totN-n)
// by a two-proportion z-test and returns that rate and the two-sided p.
func versusRest(k, n, totK, totN int64) (pool, p float64) {
	restK, restN := totK-k, totN-n
	if n == 0 || restN == 0 {
		return 0, 1
	}
	p1, p2 := float64(k)/float64(n), float64(restK)/float64(restN)
	pp := float64(totK) / float64(totN)
	se := math.Sqrt(pp * (1 - pp) * (1/float64(n) + 1/float64(restN)))
	if se == 0 {
		if p1 == p2 {
			return p2, 1
		}
		return p2, 0
	}
	return p2, zPValue((p1 - p2) / se)
}

// zPValue is the two-sided p-value of a standard normal statistic.
func zPValue(z float64) float64 { return math.Erfc(math.Abs(z) / math.Sqrt2) }
