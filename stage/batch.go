package stage

import (
	"math/rand/v2"
)

// Example is a prompt with a response (a demonstration, or a sample).
type Example struct {
	Prompt   string
	Response string
}

// Seq is one tokenised prompt + response + end-of-text.
type Seq struct {
	Tokens    []int32
	PromptLen int // the response starts at Tokens[PromptLen]
}

// Padded lays sequences out as a (B,T) batch padded with pad: tokens,
// next-token targets (-1 where there is none) and a mask that is 1 where the
// target is a response token (the response and its end-of-text).
func Padded(seqs []Seq, pad int32) (B, T int, tokens, targets []int32, mask []float32) {
	B = len(seqs)
	for _, s := range seqs {
		T = max(T, len(s.Tokens)-1)
	}
	tokens, targets, mask = make([]int32, B*T), make([]int32, B*T), make([]float32, B*T)
	for b, s := range seqs {
		for t := range T {
			i := b*T + t
			tokens[i], targets[i] = pad, -1
			if t < len(s.Tokens)-1 {
				tokens[i], targets[i] = s.Tokens[t], s.Tokens[t+1]
				if t+1 >= s.PromptLen {
					mask[i] = 1
				}
			}
		}
	}
	return B, T, tokens, targets, mask
}

// Cursor walks a data set in epochs, each in a fresh order drawn from the
// seed and the epoch number alone, so a resumed run sees the same batches.
type Cursor struct {
	Epoch int `json:"epoch"`
	Pos   int `json:"pos"`
}

// Next returns the indices of the next batch of n items of a set of size.
func (c *Cursor) Next(seed uint64, size, n int) []int {
	out := make([]int, 0, n)
	perm := rand.New(rand.NewPCG(seed, uint64(c.Epoch))).Perm(size)
	for len(out) < n {
		if c.Pos == size {
			c.Epoch, c.Pos = c.Epoch+1, 0
			perm = rand.New(rand.NewPCG(seed, uint64(c.Epoch))).Perm(size)
		}
		out = append(out, perm[c.Pos])
		c.Pos++
	}
	return out
}
