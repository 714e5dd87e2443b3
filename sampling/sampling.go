// Package sampling samples policies for what the pipeline needs beyond
// training: K responses per prompt for labelers to rank, and the side-by-
// side evaluation of a tuned policy against its reference with a judge,
// with the KL between them. The activities and the in-process demo run
// share it.
package sampling

import (
	"fmt"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// Policy is what sampling needs of a model (*model.Model is one).
type Policy interface {
	Sample(prompts [][]int32, sc model.SampleConfig, rng *model.RNG) ([]model.Sequence, error)
	Forward(b model.Batch) (model.Output, error)
}

// promptsPerCall is how many prompts of n sequences each go into one
// Sample call of at most batch sequences: at least one, all when batch is
// 0 (one call for everything, what runs did before the setting existed).
func promptsPerCall(batch, n, prompts int) int {
	if batch <= 0 {
		return max(1, prompts)
	}
	return max(1, batch/max(1, n))
}

// Responses samples k responses per prompt from the policy (sc's stop
// token is the tokenizer's end of text), at most batch sequences per Sample
// call (batch/k prompts; 0 = all in one call) with rng carried through the
// calls in order, so that memory is bounded by the batch, not by the
// prompts: the results depend on batch, and are the same for the same
// batch and rng. It calls each after every call with the index of the
// chunk's first prompt and, per prompt of the chunk, the distinct
// non-empty responses in the order sampled; an error from each stops it.
func Responses(policy Policy, tok tokenizer.Tokenizer, prompts []string, k int, sc model.SampleConfig, batch int, rng *model.RNG, each func(first int, responses [][]string) error) error {
	sc.StopToken = tok.EOT()
	per := promptsPerCall(batch, k, len(prompts))
	for first := 0; first < len(prompts); first += per {
		part := prompts[first:min(len(prompts), first+per)]
		ids := make([][]int32, 0, len(part)*k)
		for _, p := range part {
			enc, err := tok.Encode(p)
			if err != nil {
				return fmt.Errorf("sampling: prompt %d: %w", first+len(ids)/k, err)
			}
			for range k {
				ids = append(ids, enc)
			}
		}
		seqs, err := policy.Sample(ids, sc, rng)
		if err != nil {
			return fmt.Errorf("sampling: prompts %d-%d: %w", first, first+len(part)-1, err)
		}
		out := make([][]string, len(part))
		for i := range part {
			seen := map[string]bool{}
			for _, s := range seqs[i*k : (i+1)*k] {
				text, err := Decode(tok, s.Tokens)
				if err != nil || seen[text] || text == "" {
					continue
				}
				seen[text] = true
				out[i] = append(out[i], text)
			}
		}
		if err := each(first, out); err != nil {
			return err
		}
	}
	return nil
}

// Decode turns sampled tokens into text, without the end-of-text token.
func Decode(tok tokenizer.Tokenizer, toks []int32) (string, error) {
	if n := len(toks); n > 0 && toks[n-1] == tok.EOT() {
		toks = toks[:n-1]
	}
	return tok.Decode(toks)
}

// Eval is a judge's verdict on a tuned policy against its reference.
type Eval struct {
	WinRate float64 `json:"win_rate"` // tuned over reference, ties split
	RefGold float64 `json:"ref_gold"` // mean gold score of the reference's samples
	Gold    float64 `json:"gold"`     // of the tuned policy's
	KL      float64 `json:"kl"`       // per response, tuned vs reference, on the tuned policy's samples
	Samples int     `json:"samples"`
}

// Judge scores a response to a prompt (a task's gold judge).
type Judge func(prompt, response string) (float64, error)

// Evaluate samples n responses per prompt from the reference (SFT) and the
// tuned (PPO) policy with the same seeds (see Compare), scores them with
// judge, and measures the tuned policy's KL to the reference on its
// samples. done, when not nil, is called after each chunk with the prompts
// evaluated so far; an error from it stops the evaluation.
func Evaluate(ref, tuned Policy, tok tokenizer.Tokenizer, judge Judge, prompts []string, n, maxTokens, batch int, seed uint64, done func(prompts int) error) (Eval, error) {
	var ev Eval
	var wins float64
	c, err := Compare(ref, tuned, tok, prompts, n, maxTokens, batch, seed, func(first int, a, b []string) error {
		for i := range a {
			ga, _ := judge(prompts[first+i/n], a[i])
			gb, _ := judge(prompts[first+i/n], b[i])
			ev.RefGold, ev.Gold = ev.RefGold+ga, ev.Gold+gb
			switch {
			case gb > ga:
				wins++
			case gb == ga:
				wins += 0.5
			}
		}
		if done != nil {
			return done(first + len(a)/n)
		}
		return nil
	})
	if err != nil || c.Samples == 0 {
		return ev, err
	}
	cnt := float64(c.Samples)
	ev.Samples, ev.KL = c.Samples, c.KL
	ev.WinRate, ev.RefGold, ev.Gold = wins/cnt, ev.RefGold/cnt, ev.Gold/cnt
	return ev, nil
}

// Comparison is what Compare measured.
type Comparison struct {
	Samples int     `json:"samples"` // per policy
	KL      float64 `json:"kl"`      // per response, tuned vs reference, on the tuned policy's samples
	// Mean response lengths in tokens (the end of text not counted).
	RefTokens   float64 `json:"ref_tokens"`
	TunedTokens float64 `json:"tuned_tokens"`
}

// Compare samples n responses per prompt from the reference and the tuned
// policy with the same seeds, at most batch sequences (batch/n prompts;
// 0 = all) per Sample call, each policy's RNG carried through the calls in
// order, so that memory is bounded by the batch: the results depend on
// batch, and are the same for the same batch and seed. It calls each after
// every chunk with the index of its first prompt and both policies'
// responses, n per prompt in prompt order (response i answers prompt
// first+i/n), and measures the tuned policy's KL to the reference on its
// samples; an error from each stops it.
func Compare(ref, tuned Policy, tok tokenizer.Tokenizer, prompts []string, n, maxTokens, batch int, seed uint64, each func(first int, ref, tuned []string) error) (Comparison, error) {
	sc := model.SampleConfig{MaxTokens: maxTokens, Temperature: 1, StopToken: tok.EOT()}
	rngRef, rngTuned := model.NewRNG(seed), model.NewRNG(seed)
	per := promptsPerCall(batch, n, len(prompts))
	var c Comparison
	var kl float64
	var lens [2]int
	for first := 0; first < len(prompts) && n > 0; first += per {
		part := prompts[first:min(len(prompts), first+per)]
		ids := make([][]int32, 0, len(part)*n) // n copies of each prompt: ids[i] is part[i/n]
		for _, p := range part {
			enc, err := tok.Encode(p)
			if err != nil {
				return Comparison{}, fmt.Errorf("sampling: compare: prompt %d: %w", first+len(ids)/n, err)
			}
			for range n {
				ids = append(ids, enc)
			}
		}
		a, err := ref.Sample(ids, sc, rngRef)
		if err != nil {
			return Comparison{}, fmt.Errorf("sampling: compare: reference: %w", err)
		}
		b, err := tuned.Sample(ids, sc, rngTuned)
		if err != nil {
			return Comparison{}, fmt.Errorf("sampling: compare: tuned: %w", err)
		}
		ta, tb := make([]string, len(ids)), make([]string, len(ids))
		for i := range ids {
			ta[i], _ = Decode(tok, a[i].Tokens)
			tb[i], _ = Decode(tok, b[i].Tokens)
			lens[0] += responseLen(a[i].Tokens, tok.EOT())
			lens[1] += responseLen(b[i].Tokens, tok.EOT())
		}
		c.Samples += len(ids)
		sum, err := klOnSamples(tuned, ref, ids, b, tok.EOT())
		if err != nil {
			return Comparison{}, fmt.Errorf("sampling: compare: KL: %w", err)
		}
		kl += sum
		if err := each(first, ta, tb); err != nil {
			return Comparison{}, err
		}
	}
	if c.Samples > 0 {
		cnt := float64(c.Samples)
		c.KL, c.RefTokens, c.TunedTokens = kl/cnt, float64(lens[0])/cnt, float64(lens[1])/cnt
	}
	return c, nil
}

// responseLen is a sample's length without its end of text.
func responseLen(toks []int32, eot int32) int {
	if n := len(toks); n > 0 && toks[n-1] == eot {
		return n - 1
	}
	return len(toks)
}

// klOnSamples is the sum over samples of sum_t log pi(y_t) - log ref(y_t):
// over the number of samples, a Monte-Carlo estimate of KL(pi || ref) per
// response. It runs 64 samples per forward.
func klOnSamples(pi, ref Policy, prompts [][]int32, samples []model.Sequence, pad int32) (float64, error) {
	var total float64
	for start := 0; start < len(prompts); start += 64 {
		end := min(len(prompts), start+64)
		seqs := make([]stage.Seq, 0, end-start)
		for i := start; i < end; i++ {
			seqs = append(seqs, stage.Seq{Tokens: append(append([]int32{}, prompts[i]...), samples[i].Tokens...), PromptLen: len(prompts[i])})
		}
		B, T, tokens, targets, _ := stage.Padded(seqs, pad)
		var lp [2][]float32
		for k, m := range []Policy{pi, ref} {
			out, err := m.Forward(model.Batch{B: B, T: T, Tokens: tokens, Targets: targets})
			if err != nil {
				return 0, err
			}
			lp[k] = append([]float32{}, out.LogProbs...)
		}
		for b, s := range seqs {
			for t := s.PromptLen - 1; t < len(s.Tokens)-1; t++ {
				total += float64(lp[0][b*T+t] - lp[1][b*T+t])
			}
		}
	}
	return total, nil
}
