package preference

import (
	"errors"
	"fmt"
	"github.com/instructflow/instructflow/chat"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/instructflow/instructflow/internal/jsonl"
)

// Format is an interchange format of preference data, one JSON object a line.
type Format string

const (
	// FormatRanking: {"prompt": s, "responses": [s, ...], "ranking": [i, ...] (best first), "labeler": s}
	FormatRanking Format = "ranking"
	// FormatPairwise (TRL style): {"prompt": s, "chosen": s, "rejected": s, "labeler"?: s}
	FormatPairwise Format = "pairwise"
	// FormatHH (Anthropic HH-RLHF): {"chosen": transcript, "rejected": transcript}
	FormatHH Format = "hh"
)

// ParseFormat checks a format name given by a user.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatRanking, FormatPairwise, FormatHH:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q: use ranking, pairwise or hh", s)
}

// Record is one accepted line: a ranking with what the import found about it.
type Record struct {
	Line int
	Ranking
	// OrderKnown says whether Responses are in the order they were shown.
	// Pairwise and HH files do not say, so position bias ignores them.
	OrderKnown bool
	// Flags name problems that keep the row but mark it (see Rules).
	Flags []Rule
}

// ReaderOptions tune validation.
type ReaderOptions struct {
	// MaxChars is the longest prompt or response accepted, in characters.
	MaxChars int
	// MaxK is the most responses a ranking may have (DefaultMaxK when 0).
	MaxK int
	// Labeler names the labeler of rows that do not name one.
	Labeler string
	// SkipInvalid skips rows that would otherwise refuse the whole file.
	SkipInvalid bool
	// KeepReading reads on after a problem that refuses the file, to count
	// every problem (a dry run); by default reading stops there.
	KeepReading bool
	// MaxProblems is how many problems the reader keeps, in line order
	// (DefaultMaxProblems when 0); the rest are only counted.
	MaxProblems int
}

// ErrRefused is returned by Reader.Next when a problem refuses the file: at
// that problem, or at the end of the file with KeepReading.
var ErrRefused = jsonl.ErrRefused

// Reader reads and validates an interchange file line by line (see
// jsonl.Reader: Problems, Counts and Rows); Next returns only accepted
// records.
type Reader struct {
	*jsonl.Reader[Record, Rule]
	format Format
	opts   ReaderOptions
}

// NewReader returns a reader of r in the given format.
func NewReader(r io.Reader, format Format, opts ReaderOptions) (*Reader, error) {
	if opts.MaxChars <= 0 {
		opts.MaxChars = DefaultMaxChars
	}
	if opts.MaxK == 0 {
		opts.MaxK = DefaultMaxK
	}
	if opts.MaxK < 2 || opts.MaxK > MaxMaxK {
		return nil, fmt.Errorf("preference: a limit of %d responses per ranking: use 2 to %d", opts.MaxK, MaxMaxK)
	}
	if opts.Labeler == "" {
		opts.Labeler = DefaultLabeler
	}
	if strings.TrimSpace(opts.Labeler) == "" || strings.IndexByte(opts.Labeler, 0) >= 0 {
		return nil, fmt.Errorf("preference: default labeler %q: give a name that is not blank and has no NUL", opts.Labeler)
	}
	rd := &Reader{format: format, opts: opts}
	var err error
	rd.Reader, err = jsonl.NewReader(r, rd.parse, Rule.Action,
		jsonl.Options{SkipInvalid: opts.SkipInvalid, KeepReading: opts.KeepReading, MaxProblems: opts.MaxProblems})
	if err != nil {
		return nil, fmt.Errorf("preference: %w", err)
	}
	return rd, nil
}

// DefaultMaxChars is the default limit on a prompt or response.
const DefaultMaxChars = 32768

// DefaultMaxK is the default limit on the responses of one ranking: the
// audit, the reward model and export all do work quadratic in K.
const DefaultMaxK = 16

// MaxMaxK is the highest MaxK: ranks are stored as 16-bit integers.
const MaxMaxK = 32767

// DefaultMaxProblems is how many problems a reader keeps by default.
const DefaultMaxProblems = jsonl.DefaultMaxProblems

// DefaultLabeler names rows whose file does not say who labeled them.
const DefaultLabeler = "unattributed"

// Next returns the next accepted record; io.EOF at the end of the file; or
// an error wrapping ErrRefused when a problem refuses the file (see Problems).
func (rd *Reader) Next() (Record, error) {
	row, err := rd.Reader.Next()
	if errors.Is(err, io.EOF) {
		return Record{}, err
	}
	if err != nil {
		return Record{}, fmt.Errorf("preference: %w", err)
	}
	rec := row.Value
	rec.Line, rec.Flags = row.Line, row.Flags
	return rec, nil
}

func (rd *Reader) parse(raw []byte) (Record, []Problem) {
	switch rd.format {
	case FormatRanking:
		return rd.parseRanking(raw)
	case FormatPairwise:
		return rd.parsePairwise(raw)
	default:
		return rd.parseHH(raw)
	}
}

// decode unmarshals a line, turning JSON errors into problems.
func decode(raw []byte, v any) []Problem {
	return jsonl.Decode(raw, v, RuleBadJSON, RuleMissingField)
}

type field struct {
	name    string
	present bool
}

// requireFields reports each absent field, in the order given.
func requireFields(fields []field) []Problem {
	var probs []Problem
	for _, f := range fields {
		if !f.present {
			probs = append(probs, Problem{Rule: RuleMissingField, Detail: fmt.Sprintf("field %q is missing or null", f.name)})
		}
	}
	return probs
}

func (rd *Reader) parseRanking(raw []byte) (Record, []Problem) {
	var v struct {
		Prompt    *string  `json:"prompt"`
		Responses []string `json:"responses"`
		Ranking   []int    `json:"ranking"`
		Labeler   *string  `json:"labeler"`
	}
	if probs := decode(raw, &v); probs != nil {
		return Record{}, probs
	}
	if probs := requireFields([]field{{"prompt", v.Prompt != nil}, {"responses", v.Responses != nil}, {"ranking", v.Ranking != nil}, {"labeler", v.Labeler != nil}}); probs != nil {
		return Record{}, probs
	}
	if len(v.Responses) > rd.opts.MaxK {
		return Record{}, []Problem{{Rule: RuleTooManyResponses, Detail: fmt.Sprintf("%d responses, over the limit of %d", len(v.Responses), rd.opts.MaxK)}}
	}
	texts := []namedText{{"prompt", *v.Prompt}, {"labeler", *v.Labeler}}
	for i, r := range v.Responses {
		texts = append(texts, namedText{responseName(FormatRanking, i), r})
	}
	if probs := append(nulProblems(texts), labelerProblems(*v.Labeler, false)...); probs != nil {
		return Record{}, probs
	}
	rec := Record{Ranking: Ranking{Prompt: *v.Prompt, Responses: v.Responses, Labeler: *v.Labeler}, OrderKnown: true}
	if len(v.Responses) < 2 {
		return rec, []Problem{{Rule: RuleNotPermutation, Detail: fmt.Sprintf("%d responses; a ranking needs at least 2", len(v.Responses))}}
	}
	ranks, err := ranksFromOrder(v.Ranking, len(v.Responses))
	if err != nil {
		return rec, []Problem{{Rule: RuleNotPermutation, Detail: err.Error()}}
	}
	rec.Ranks = ranks
	return rec, rd.check(rec)
}

type namedText struct{ name, s string }

// nulProblems reports each text that holds a NUL character: Postgres text
// cannot store one, so such a row would fail the import half-way.
func nulProblems(texts []namedText) []Problem {
	var probs []Problem
	for _, t := range texts {
		if i := strings.IndexByte(t.s, 0); i >= 0 {
			probs = append(probs, Problem{Rule: RuleNUL,
				Detail: fmt.Sprintf(`%s holds a NUL character (\u0000) at character %d; remove it`, t.name, utf8.RuneCountInString(t.s[:i]))})
		}
	}
	return probs
}

// labelerProblems reports a labeler name that names no one; optional says
// the format lets a row leave the field out.
func labelerProblems(name string, optional bool) []Problem {
	if strings.TrimSpace(name) != "" {
		return nil
	}
	detail := fmt.Sprintf("labeler %q is blank: name the labeler", name)
	if optional {
		detail += ", or leave the field out to use the default labeler (--labeler)"
	}
	return []Problem{{Rule: RuleEmptyLabeler, Detail: detail}}
}

// ranksFromOrder turns a best-first list of response indices into the rank
// of each response (1 = best).
func ranksFromOrder(order []int, k int) ([]int, error) {
	if len(order) != k {
		return nil, fmt.Errorf("ranking has %d entries for %d responses; list every response index once, best first", len(order), k)
	}
	ranks := make([]int, k)
	for pos, i := range order {
		if i < 0 || i >= k {
			return nil, fmt.Errorf("ranking names response %d; indices go from 0 to %d", i, k-1)
		}
		if ranks[i] != 0 {
			return nil, fmt.Errorf("ranking names response %d twice", i)
		}
		ranks[i] = pos + 1
	}
	return ranks, nil
}

func (rd *Reader) parsePairwise(raw []byte) (Record, []Problem) {
	var v struct {
		Prompt   *string `json:"prompt"`
		Chosen   *string `json:"chosen"`
		Rejected *string `json:"rejected"`
		Labeler  *string `json:"labeler"`
	}
	if probs := decode(raw, &v); probs != nil {
		return Record{}, probs
	}
	if probs := requireFields([]field{{"prompt", v.Prompt != nil}, {"chosen", v.Chosen != nil}, {"rejected", v.Rejected != nil}}); probs != nil {
		return Record{}, probs
	}
	labeler := rd.opts.Labeler
	if v.Labeler != nil {
		labeler = *v.Labeler
	}
	texts := []namedText{{"prompt", *v.Prompt}, {"chosen", *v.Chosen}, {"rejected", *v.Rejected}, {"labeler", labeler}}
	if probs := append(nulProblems(texts), labelerProblems(labeler, true)...); probs != nil {
		return Record{}, probs
	}
	rec := Record{Ranking: Ranking{Prompt: *v.Prompt, Responses: []string{*v.Chosen, *v.Rejected}, Ranks: []int{1, 2}, Labeler: labeler}}
	return rec, rd.check(rec)
}

func (rd *Reader) parseHH(raw []byte) (Record, []Problem) {
	var v struct {
		Chosen   *string `json:"chosen"`
		Rejected *string `json:"rejected"`
	}
	if probs := decode(raw, &v); probs != nil {
		return Record{}, probs
	}
	if probs := requireFields([]field{{"chosen", v.Chosen != nil}, {"rejected", v.Rejected != nil}}); probs != nil {
		return Record{}, probs
	}
	if probs := nulProblems([]namedText{{"chosen transcript", *v.Chosen}, {"rejected transcript", *v.Rejected}}); probs != nil {
		return Record{}, probs
	}
	if *v.Chosen == *v.Rejected {
		return Record{}, []Problem{{Rule: RuleIdenticalPair, Detail: "chosen and rejected transcripts are identical"}}
	}
	prompt, c, r, mismatch, ok := chat.SplitHH(*v.Chosen, *v.Rejected)
	if !ok {
		return Record{}, []Problem{{Rule: RuleBadTranscript, Detail: `the transcripts share no "\n\nAssistant:" turn, so there is no prompt`}}
	}
	rec := Record{Ranking: Ranking{Prompt: prompt, Responses: []string{c, r}, Ranks: []int{1, 2}, Labeler: rd.opts.Labeler}}
	probs := rd.check(rec)
	if mismatch {
		probs = append(probs, Problem{Rule: RulePromptMismatch,
			Detail: "the transcripts' own last assistant turns start at different places: they do not share their prompt"})
	}
	return rec, probs
}

// check applies the content rules shared by every format.
func (rd *Reader) check(rec Record) []Problem {
	var probs []Problem
	if strings.TrimSpace(rec.Prompt) == "" {
		probs = append(probs, Problem{Rule: RuleEmptyPrompt, Detail: "the prompt is empty"})
	} else if turns, err := chat.ParseHHPrompt(rec.Prompt); err == nil && strings.TrimSpace(turns[len(turns)-1].Content) == "" {
		// As data import refuses it: an HH prompt whose last human turn is
		// blank asks nothing.
		probs = append(probs, Problem{Rule: RuleEmptyPrompt, Detail: "the prompt's last human turn is empty: there is nothing to answer"})
	}
	if n := utf8.RuneCountInString(rec.Prompt); n > rd.opts.MaxChars {
		probs = append(probs, Problem{Rule: RuleTooLong, Detail: fmt.Sprintf("prompt has %d characters, over the limit of %d", n, rd.opts.MaxChars)})
	}
	seen := map[string]int{}
	for i, resp := range rec.Responses {
		name := responseName(rd.format, i)
		if strings.TrimSpace(resp) == "" {
			probs = append(probs, Problem{Rule: RuleEmptyResponse, Detail: name + " is empty"})
		}
		if n := utf8.RuneCountInString(resp); n > rd.opts.MaxChars {
			probs = append(probs, Problem{Rule: RuleTooLong, Detail: fmt.Sprintf("%s has %d characters, over the limit of %d", name, n, rd.opts.MaxChars)})
		}
		if j, dup := seen[resp]; dup {
			rule := RuleDuplicateResponses
			if rd.format != FormatRanking {
				rule = RuleIdenticalPair
			}
			probs = append(probs, Problem{Rule: rule, Detail: fmt.Sprintf("%s is identical to %s", name, responseName(rd.format, j))})
		}
		seen[resp] = i
	}
	return probs
}

func responseName(f Format, i int) string {
	if f == FormatRanking {
		return fmt.Sprintf("response %d", i)
	}
	return [2]string{"chosen", "rejected"}[i]
}
