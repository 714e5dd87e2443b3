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

// SourcePrompt is a prompt of the task as stored for the pipeline: its
// split and, for every train prompt and the first 200 held-out ones, a
// labeler's demonstration.
type SourcePrompt struct {
	Text, Split, Demonstration string
}

// Source is the task's data as the demo run uses it: n examples (one in
// five held out), train demonstrations with slips at rate errRate, clean
// held-out demonstrations for the SFT held-out loss.
func Source(seed uint64, n int, errRate float64) []SourcePrompt {
	train, heldout := Split(Examples(seed, n))
	var out []SourcePrompt
	for _, ex := range Demonstrations(seed, train, errRate) {
		out = append(out, SourcePrompt{Text: ex.Prompt, Split: "train", Demonstration: ex.Response})
	}
	demos := Demonstrations(seed+1, heldout[:min(200, len(heldout))], 0)
	for i, ex := range heldout {
		p := SourcePrompt{Text: ex.Prompt, Split: "heldout"}
		if i < len(demos) {
			p.Demonstration = demos[i].Response
		}
		out = append(out, p)
	}
	return out
}
