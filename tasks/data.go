package tasks

import (
	"math/rand/v2"

	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// Tokenizer is the character tokenizer of the demo task.
func Tokenizer() *tokenizer.Char {
	t, err := tokenizer.NewChar(Alphabet)
	if err != nil {
		panic(err) // Alphabet is a constant without repeats
	}
	return t
}

// Demonstrations returns one labeler demonstration per example (the gold
// answer, with a slip at rate errRate), deterministic in seed.
func Demonstrations(seed uint64, exs []Example, errRate float64) []stage.Example {
	rng := rand.New(rand.NewPCG(seed, 0xde70))
	out := make([]stage.Example, len(exs))
	for i, ex := range exs {
		out[i] = stage.Example{Prompt: ex.Prompt, Response: Demonstration(rng, ex, errRate)}
	}
	return out
}

// Split separates training and held-out examples.
func Split(exs []Example) (train, heldout []Example) {
	for _, ex := range exs {
		if ex.Split == "heldout" {
			heldout = append(heldout, ex)
		} else {
			train = append(train, ex)
		}
	}
	return train, heldout
}
