package preference

import (
	"bytes"
	"encoding/json"
	"slices"
)

type rankingLine struct {
	Prompt    string   `json:"prompt"`
	Responses []string `json:"responses"`
	Ranking   []int    `json:"ranking"`
	Labeler   string   `json:"labeler"`
	Ranks     []int16  `json:"ranks,omitempty"` // only when some responses tie
	// Labeled in the labeling app: a 1-7 rating (null: not rated) and the
	// flags of each response, in the order of responses.
	Ratings []*int16   `json:"ratings,omitempty"`
	Flags   [][]string `json:"flags,omitempty"`
}

// Judged is what a labeler said of each response besides its rank (the
// labeling app's ratings and flags), in the shown order; empty for labels
// from elsewhere.
type Judged struct {
	Ratings []*int16
	Flags   [][]string
}

type pairwiseLine struct {
	Prompt   string `json:"prompt"`
	Chosen   string `json:"chosen"`
	Rejected string `json:"rejected"`
	Labeler  string `json:"labeler"`
}

// Export renders one comparison (responses in shown order, ranks 1 = best)
// as lines of the ranking or pairwise format. The bytes depend only on the
// arguments, so exports are byte-stable. For pairwise, tied pairs are left
// out and counted in ties.
func Export(f Format, prompt string, responses []string, ranks []int16, labeler string) (lines [][]byte, ties int) {
	return ExportJudged(f, prompt, responses, ranks, labeler, Judged{})
}

// ExportJudged is Export with the ratings and flags, which the ranking
// format carries (the pairwise one has no place for them).
func ExportJudged(f Format, prompt string, responses []string, ranks []int16, labeler string, j Judged) (lines [][]byte, ties int) {
	if f == FormatRanking {
		order := make([]int, len(responses))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return int(ranks[a]) - int(ranks[b]) })
		l := rankingLine{Prompt: prompt, Responses: responses, Ranking: order, Labeler: labeler, Ratings: j.Ratings}
		for _, f := range j.Flags {
			if len(f) > 0 { // flags only when some response has one
				l.Flags = j.Flags
				break
			}
		}
		for i := 1; i < len(order); i++ {
			if ranks[order[i]] == ranks[order[i-1]] {
				l.Ranks = ranks
				break
			}
		}
		return [][]byte{encodeLine(l)}, 0
	}
	for i := range responses {
		for j := i + 1; j < len(responses); j++ {
			switch {
			case ranks[i] < ranks[j]:
				lines = append(lines, encodeLine(pairwiseLine{prompt, responses[i], responses[j], labeler}))
			case ranks[j] < ranks[i]:
				lines = append(lines, encodeLine(pairwiseLine{prompt, responses[j], responses[i], labeler}))
			default:
				ties++
			}
		}
	}
	return lines, ties
}

func encodeLine(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("preference: encode export line: " + err.Error()) // strings and ints always encode
	}
	return b.Bytes()
}
