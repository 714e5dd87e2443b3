// Package tasks holds the demo task that proves the pipeline works: short
// string instructions (reverse, upper, sort, double of a short word) that a
// character-level model can learn, a gold judge that scores any response, and
// simulated labelers, some of them unreliable on purpose, so that the label
// audit has something real to find. The reward model never sees the gold
// judge; the judge measures whether PPO improved the policy over SFT.
package tasks

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/instructflow/instructflow/internal/editdist"
)

// Ops are the instructions of the demo task.
var Ops = []string{"reverse", "upper", "sort", "double"}

// Alphabet is every character a prompt or answer of the task can contain.
const Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ="

// Example is one prompt of the task with its gold answer.
type Example struct {
	Op, Word string
	Prompt   string // "reverse abc="
	Gold     string // "cba"
	Split    string // "train" or "heldout"
}

// NewExample builds the example for op applied to word.
func NewExample(op, word string) Example {
	return Example{Op: op, Word: word, Prompt: op + " " + word + "=", Gold: apply(op, word)}
}

func apply(op, word string) string {
	switch op {
	case "reverse":
		r := []rune(word)
		slices.Reverse(r)
		return string(r)
	case "upper":
		return strings.ToUpper(word)
	case "sort":
		r := []rune(word)
		slices.Sort(r)
		return string(r)
	case "double":
		return word + word
	}
	panic("tasks: unknown op " + op)
}

// Examples returns n distinct examples drawn with seed; one in five is
// held out. The same seed always gives the same examples.
func Examples(seed uint64, n int) []Example {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	seen := map[string]bool{}
	var out []Example
	for len(out) < n {
		word := make([]byte, 3+rng.IntN(3))
		for i := range word {
			word[i] = byte('a' + rng.IntN(26))
		}
		ex := NewExample(Ops[rng.IntN(len(Ops))], string(word))
		if seen[ex.Prompt] {
			continue
		}
		seen[ex.Prompt] = true
		ex.Split = "train"
		if len(out)%5 == 4 {
			ex.Split = "heldout"
		}
		out = append(out, ex)
	}
	return out
}

// Judge scores response as an answer to prompt, in [0, 1]: 1 for the gold
// answer, less the more edits it is away from it. It returns an error for a
// prompt that is not of the task.
func Judge(prompt, response string) (float64, error) {
	op, word, ok := strings.Cut(strings.TrimSuffix(prompt, "="), " ")
	if !ok || !strings.HasSuffix(prompt, "=") || !slices.Contains(Ops, op) || word == "" {
		return 0, fmt.Errorf("tasks: %q is not a demo-task prompt (want \"OP word=\" with OP one of %v)", prompt, Ops)
	}
	gold := apply(op, word)
	if response == gold {
		return 1, nil
	}
	d := editdist.Distance(response, gold)
	sim := 1 - float64(d)/float64(max(len(response), len(gold)))
	return 0.9 * sim * sim, nil
}

// Demonstration is the labelers' answer to an example: the gold answer,
// except that with probability errRate a labeler slipped (one edit).
func Demonstration(rng *rand.Rand, ex Example, errRate float64) string {
	if rng.Float64() < errRate {
		return Perturb(rng, ex.Gold)
	}
	return ex.Gold
}

// Perturb returns s with one random mistake: a dropped, repeated, swapped
// or wrong letter, a wrong case, extra letters or a truncation. The result
// differs from s.
func Perturb(rng *rand.Rand, s string) string {
	for {
		b := []byte(s)
		i := rng.IntN(len(b))
		switch rng.IntN(7) {
		case 0: // drop
			b = slices.Delete(b, i, i+1)
		case 1: // repeat
			b = slices.Insert(b, i, b[i])
		case 2: // swap with the next
			if i+1 < len(b) {
				b[i], b[i+1] = b[i+1], b[i]
			}
		case 3: // wrong letter
			b[i] = byte('a' + rng.IntN(26))
		case 4: // wrong case
			if b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			} else if b[i] >= 'A' && b[i] <= 'Z' {
				b[i] += 'a' - 'A'
			}
		case 5: // extra letters
			for range 1 + rng.IntN(4) {
				b = append(b, byte('a'+rng.IntN(26)))
			}
		case 6: // truncated
			b = b[:i]
		}
		if out := string(b); out != s && out != "" {
			return out
		}
	}
}

// Candidates returns k distinct responses to ex of mixed quality: the gold
// answer (with probability pGold) and mistakes of one or two edits.
func Candidates(rng *rand.Rand, ex Example, k int, pGold float64) []string {
	seen := map[string]bool{}
	var out []string
	if rng.Float64() < pGold {
		out = append(out, ex.Gold)
		seen[ex.Gold] = true
	}
	for len(out) < k {
		c := Perturb(rng, ex.Gold)
		if rng.IntN(2) == 0 {
			c = Perturb(rng, c)
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
