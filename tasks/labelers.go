package tasks

import (
	"math/rand/v2"
	"slices"

	"github.com/instructflow/instructflow/preference"
)

// Kind is how a simulated labeler ranks responses.
type Kind string

const (
	// Reliable ranks by the gold score plus Gaussian noise.
	Reliable Kind = "reliable"
	// Random ranks in a random order.
	Random Kind = "random"
	// FirstShown ranks in the order the responses were shown.
	FirstShown Kind = "always-first"
	// Longer ranks the longest response best.
	Longer Kind = "always-longer"
)

// Labeler is a simulated labeler.
type Labeler struct {
	Name  string
	Kind  Kind
	Noise float64 // standard deviation of the noise on the gold score (Reliable)
}

// Panel is the demo task's labelers: six reliable ones with increasing
// noise and three unreliable ones that the audit must find.
func Panel() []Labeler {
	return []Labeler{
		{Name: "ada", Kind: Reliable, Noise: 0.02},
		{Name: "bo", Kind: Reliable, Noise: 0.04},
		{Name: "cy", Kind: Reliable, Noise: 0.06},
		{Name: "dee", Kind: Reliable, Noise: 0.08},
		{Name: "eli", Kind: Reliable, Noise: 0.10},
		{Name: "fay", Kind: Reliable, Noise: 0.12},
		{Name: "rand", Kind: Random},
		{Name: "first", Kind: FirstShown},
		{Name: "long", Kind: Longer},
	}
}

// Rank returns the rank of each response (1 = best) as this labeler judges
// them; responses are in shown order.
func (l Labeler) Rank(rng *rand.Rand, prompt string, responses []string) []int {
	k := len(responses)
	key := make([]float64, k) // higher is better
	for i, r := range responses {
		switch l.Kind {
		case Reliable:
			s, err := Judge(prompt, r)
			if err != nil {
				panic(err) // the simulation only labels prompts of the task
			}
			key[i] = s + l.Noise*rng.NormFloat64()
		case Random:
			key[i] = rng.Float64()
		case FirstShown:
			key[i] = float64(k - i)
		case Longer:
			key[i] = float64(len(r)) - float64(i)/float64(k+1) // ties go to the first shown
		}
	}
	order := make([]int, k)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case key[a] > key[b]:
			return -1
		case key[a] < key[b]:
			return 1
		}
		return 0
	})
	ranks := make([]int, k)
	for pos, i := range order {
		ranks[i] = pos + 1
	}
	return ranks
}

// Simulate labels examples the way the demo task's labeling batches are
// labeled: for each example, k candidate responses, each set judged by
// perItem labelers drawn from the panel, each labeler shown the responses in
// its own random order. Deterministic in seed.
func Simulate(seed uint64, examples []Example, panel []Labeler, k, perItem int) []preference.Ranking {
	rng := rand.New(rand.NewPCG(seed, 0x1abe1))
	var out []preference.Ranking
	for _, ex := range examples {
		cands := Candidates(rng, ex, k, 0.5)
		for _, li := range rng.Perm(len(panel))[:perItem] {
			l := panel[li]
			shown := slices.Clone(cands)
			rng.Shuffle(len(shown), func(i, j int) { shown[i], shown[j] = shown[j], shown[i] })
			out = append(out, preference.Ranking{
				Prompt:    ex.Prompt,
				Responses: shown,
				Ranks:     l.Rank(rng, ex.Prompt, shown),
				Labeler:   l.Name,
			})
		}
	}
	return out
}

// panelReliable and panelUnreliable are the panel split by kind, in panel
// order, for LabelItem.
var panelReliable, panelUnreliable = splitPanel()

func splitPanel() (good, bad []Labeler) {
	for _, l := range Panel() {
		if l.Kind == Reliable {
			good = append(good, l)
		} else {
			bad = append(bad, l)
		}
	}
	return good, bad
}

// LabelItem is how the demo task's simulated labelers label one item of a
// labeling batch: the item's labeler is drawn from the panel, an
// unreliable one with probability unreliable (spread evenly over them), and
// ranks the responses as shown. The draw depends on seed and item alone, so
// labeling a batch again, in any order or in parts, gives the same labels.
func LabelItem(seed uint64, item int, prompt string, responses []string, unreliable float64) (labeler string, ranks []int) {
	rng := rand.New(rand.NewPCG(seed, 0x1abe1+uint64(item)))
	good, bad := panelReliable, panelUnreliable
	l := good[rng.IntN(len(good))]
	if rng.Float64() < unreliable {
		l = bad[rng.IntN(len(bad))]
	}
	return l.Name, l.Rank(rng, prompt, responses)
}
