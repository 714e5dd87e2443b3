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

// Data is the task's data as runs use it: n examples (one in five held
// out), a demonstration of every train example with slips at rate errRate,
// and clean demonstrations of the first 200 held-out examples (the SFT
// held-out loss).
type Data struct {
	Train, Heldout           []Example
	TrainDemos, HeldoutDemos []stage.Example
}

// The demo task's data as the pipeline stores it (`data load-demo`) and the
// in-process demo run makes it: DataPrompts prompts from DataSeed, one in
// five held out, with demonstrations that slip at rate DemoSlips.
const (
	DataSeed    = 1
	DataPrompts = 5000
	DemoSlips   = 0.1
)

// NewData makes the task's data, deterministic in seed.
func NewData(seed uint64, n int, errRate float64) Data {
	train, heldout := Split(Examples(seed, n))
	return Data{Train: train, Heldout: heldout, TrainDemos: Demonstrations(seed, train, errRate),
		HeldoutDemos: Demonstrations(seed+1, heldout[:min(200, len(heldout))], 0)}
}

// SourcePrompt is a prompt of the task as stored for the pipeline: its
// split and, for every train prompt and the first 200 held-out ones, a
// labeler's demonstration.
type SourcePrompt struct {
	Text, Split, Demonstration string
}

// Source is NewData as prompts to store.
func Source(seed uint64, n int, errRate float64) []SourcePrompt {
	d := NewData(seed, n, errRate)
	var out []SourcePrompt
	for _, ex := range d.TrainDemos {
		out = append(out, SourcePrompt{Text: ex.Prompt, Split: "train", Demonstration: ex.Response})
	}
	for i, ex := range d.Heldout {
		p := SourcePrompt{Text: ex.Prompt, Split: "heldout"}
		if i < len(d.HeldoutDemos) {
			p.Demonstration = d.HeldoutDemos[i].Response
		}
		out = append(out, p)
	}
	return out
}
