// Package sampling samples policies for what the pipeline needs beyond
// training: K responses per prompt for labelers to rank, and the side-by-
// side evaluation of a tuned policy against its reference with a judge,
// with the KL between them. The activities and the in-process demo run
// share it.
package sampling

import (
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// Responses samples k responses per prompt from the policy in one
// batch (sc's stop token is the tokenizer's end of text) and keeps the
// distinct non-empty ones in the order sampled.
func Responses(policy *model.Model, tok tokenizer.Tokenizer, prompts []string, k int, sc model.SampleConfig, rng *model.RNG) ([][]string, error) {
	ids := make([][]int32, 0, len(prompts)*k)
	for _, p := range prompts {
		enc, err := tok.Encode(p)
		if err != nil {
			return nil, err
		}
		for range k {
			ids = append(ids, enc)
		}
	}
	sc.StopToken = tok.EOT()
	seqs, err := policy.Sample(ids, sc, rng)
	if err != nil {
		return nil, err
	}
	out := make([][]string, len(prompts))
	for i := range prompts {
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
	return out, nil
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
// tuned (PPO) policy with the same seeds, scores them with judge, and
// measures the tuned policy's KL to the reference on its samples.
func Evaluate(ref, tuned *model.Model, tok tokenizer.Tokenizer, judge Judge, prompts []string, n, maxTokens int, seed uint64) (Eval, error) {
	var ids [][]int32 // n copies of each prompt: ids[i] is prompts[i/n]
	for _, p := range prompts {
		enc, err := tok.Encode(p)
		if err != nil {
			return Eval{}, err
		}
		for range n {
			ids = append(ids, enc)
		}
	}
	sc := model.SampleConfig{MaxTokens: maxTokens, Temperature: 1, StopToken: tok.EOT()}
	a, err := ref.Sample(ids, sc, model.NewRNG(seed))
	if err != nil {
		return Eval{}, err
	}
	b, err := tuned.Sample(ids, sc, model.NewRNG(seed))
	if err != nil {
		return Eval{}, err
	}
	var ev Eval
	var wins float64
	for i := range ids {
		ta, _ := Decode(tok, a[i].Tokens)
		tb, _ := Decode(tok, b[i].Tokens)
		ga, _ := judge(prompts[i/n], ta)
		gb, _ := judge(prompts[i/n], tb)
		ev.RefGold, ev.Gold = ev.RefGold+ga, ev.Gold+gb
		switch {
		case gb > ga:
			wins++
		case gb == ga:
			wins += 0.5
		}
	}
	ev.Samples = len(ids)
	if ev.Samples == 0 {
		return ev, nil
	}
	cnt := float64(ev.Samples)
	ev.WinRate, ev.RefGold, ev.Gold = wins/cnt, ev.RefGold/cnt, ev.Gold/cnt
	ev.KL, err = klOnSamples(tuned, ref, ids, b, tok.EOT())
	return ev, err
}

// klOnSamples is the mean over samples of sum_t log pi(y_t) - log ref(y_t),
// a Monte-Carlo estimate of KL(pi || ref) per response.
func klOnSamples(pi, ref *model.Model, prompts [][]int32, samples []model.Sequence, pad int32) (float64, error) {
	var total float64
	for start := 0; start < len(prompts); start += 64 {
		end := min(len(prompts), start+64)
		seqs := make([]stage.Seq, 0, end-start)
		for i := start; i < end; i++ {
			seqs = append(seqs, stage.Seq{Tokens: append(append([]int32{}, prompts[i]...), samples[i].Tokens...), PromptLen: len(prompts[i])})
		}
		B, T, tokens, targets, _ := stage.Padded(seqs, pad)
		var lp [2][]float32
		for k, m := range []*model.Model{pi, ref} {
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
	return total / float64(len(prompts)), nil
}
