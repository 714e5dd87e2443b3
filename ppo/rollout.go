package ppo

import (
	"math"
	"time"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/stage"
)

// rollout is one sampled response with everything PPO computes for it; the
// per-token slices have one entry per response token.
type rollout struct {
	seq     stage.Seq // prompt + response (with end-of-text if one was drawn)
	n       int       // response tokens
	score   float64   // reward-model score (raw)
	oldLogp []float32
	refLogp []float32
	values  []float32
	rewards []float32
	adv     []float32
	returns []float32
}

// layout lays rollouts out as a (B,T) batch: tokens, next-token targets (-1
// where none) and, per rollout, the offset of its first response token's
// position (where the model predicts it).
func layout(rs []*rollout, pad int32) (model.Batch, []int) {
	B, T := len(rs), 0
	for _, r := range rs {
		T = max(T, len(r.seq.Tokens)-1)
	}
	b := model.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	offs := make([]int, B)
	for i, r := range rs {
		for t := range T {
			k := i*T + t
			b.Tokens[k], b.Targets[k] = pad, -1
			if t < len(r.seq.Tokens)-1 {
				b.Tokens[k], b.Targets[k] = r.seq.Tokens[t], r.seq.Tokens[t+1]
			}
		}
		offs[i] = i*T + r.seq.PromptLen - 1
	}
	return b, offs
}

// iterate runs one PPO iteration: rollout, rewards, advantages, updates. It
// returns the iteration's metrics and, apart (they are not reproducible),
// the seconds spent sampling, scoring (reward, reference, value and policy
// forwards) and updating.
func (tr *trainer) iterate(st *state) (metrics, seconds map[string]float64, err error) {
	cfg, pad := tr.cfg, tr.tok.EOT()
	t0 := time.Now()
	idx := st.Cursor.Next(cfg.Seed, len(tr.prompts), cfg.RolloutBatch)
	prompts := make([][]int32, len(idx))
	for i, j := range idx {
		prompts[i] = tr.prompts[j]
	}
	samples, err := tr.policy.Sample(prompts, model.SampleConfig{MaxTokens: cfg.MaxNewTokens, Temperature: 1, StopToken: pad}, tr.rng)
	if err != nil {
		return nil, nil, err
	}
	t1 := time.Now()
	rs := make([]*rollout, len(samples))
	scoreSeqs := make([]stage.Seq, len(samples))
	var length float64
	for i, s := range samples {
		toks := append(append([]int32{}, prompts[i]...), s.Tokens...)
		rs[i] = &rollout{seq: stage.Seq{Tokens: toks, PromptLen: len(prompts[i])}, n: len(s.Tokens)}
		scoreSeqs[i] = rs[i].seq
		if s.Tokens[len(s.Tokens)-1] != pad { // cut at max_new_tokens: score it as ended
			scoreSeqs[i] = stage.Seq{Tokens: append(append([]int32{}, toks...), pad), PromptLen: len(prompts[i])}
		}
		length += float64(len(s.Tokens))
	}
	scores, err := rewardmodel.Scores(tr.reward, scoreSeqs, pad)
	if err != nil {
		return nil, nil, err
	}

	// Log-probabilities under the policy (the "old" ones) and the frozen
	// reference, and the value model's estimates, from full forwards.
	batch, offs := layout(rs, pad)
	for _, f := range []struct {
		m   *model.Model
		dst func(*rollout) *[]float32
		val bool
	}{
		{tr.policy, func(r *rollout) *[]float32 { return &r.oldLogp }, false},
		{tr.reference, func(r *rollout) *[]float32 { return &r.refLogp }, false},
		{tr.value, func(r *rollout) *[]float32 { return &r.values }, true},
	} {
		b := batch
		if f.val {
			b.Targets = nil
		}
		out, err := f.m.Forward(b)
		if err != nil {
			return nil, nil, err
		}
		src := out.LogProbs
		if f.val {
			src = out.Values
		}
		for i, r := range rs {
			*f.dst(r) = append([]float32{}, src[offs[i]:offs[i]+r.n]...)
		}
	}

	// Rewards: -beta * KL per token, plus the (normalised) score at the end.
	var scoreSum, klSum float64
	for i, r := range rs {
		r.score = float64(scores[i])
		scoreSum += r.score
		st.ScoreCount++
		d := r.score - st.ScoreMean
		st.ScoreMean += d / st.ScoreCount
		st.ScoreM2 += d * (r.score - st.ScoreMean)
	}
	scale := 1.0
	if cfg.NormalizeReward && st.ScoreCount > 1 {
		if sd := math.Sqrt(st.ScoreM2 / (st.ScoreCount - 1)); sd > 1e-6 {
			scale = 1 / sd
		}
	}
	for _, r := range rs {
		r.rewards = make([]float32, r.n)
		for j := range r.n {
			kl := float64(r.oldLogp[j] - r.refLogp[j])
			klSum += kl
			r.rewards[j] = float32(-st.Beta * kl)
		}
		r.rewards[r.n-1] += float32(r.score * scale)
	}
	meanKL := klSum / float64(len(rs))
	tr.advantages(rs)
	t2 := time.Now()

	metrics = map[string]float64{
		"score_mean":      scoreSum / float64(len(rs)),
		"kl":              meanKL,
		"beta":            st.Beta,
		"response_length": length / float64(len(rs)),
	}
	upd, err := tr.update(rs, st)
	if err != nil {
		return nil, nil, err
	}
	seconds = map[string]float64{
		"seconds_sample": t1.Sub(t0).Seconds(),
		"seconds_score":  t2.Sub(t1).Seconds(),
		"seconds_update": time.Since(t2).Seconds(),
	}
	for k, v := range upd {
		metrics[k] = v
	}
	if cfg.AdaptiveKL {
		// Ziegler et al.: beta *= 1 + clip((KL - target) / target, +-0.2) * n / horizon.
		e := math.Max(-0.2, math.Min(0.2, (meanKL-float64(cfg.TargetKL))/float64(cfg.TargetKL)))
		st.Beta *= 1 + e*float64(len(rs))/float64(cfg.KLHorizon)
	}
	return metrics, seconds, nil
}

// advantages computes GAE advantages and returns per token, then whitens
// the advantages over the batch.
func (tr *trainer) advantages(rs []*rollout) {
	g, l := float64(tr.cfg.Gamma), float64(tr.cfg.Lambda)
	var sum, sq, n float64
	for _, r := range rs {
		r.adv, r.returns = make([]float32, r.n), make([]float32, r.n)
		var next, gae float64
		for j := r.n - 1; j >= 0; j-- {
			delta := float64(r.rewards[j]) + g*next - float64(r.values[j])
			gae = delta + g*l*gae
			r.adv[j] = float32(gae)
			r.returns[j] = float32(gae + float64(r.values[j]))
			next = float64(r.values[j])
			sum += gae
			sq += gae * gae
			n++
		}
	}
	mean := sum / n
	sd := math.Sqrt(math.Max(sq/n-mean*mean, 0)) + 1e-8
	for _, r := range rs {
		for j := range r.adv {
			r.adv[j] = float32((float64(r.adv[j]) - mean) / sd)
		}
	}
}

// update runs the PPO epochs over the rollout batch in shuffled minibatches.
func (tr *trainer) update(rs []*rollout, st *state) (map[string]float64, error) {
	cfg, pad := tr.cfg, tr.tok.EOT()
	var clipped, tokens, approxKL, entropy, vloss, ptxLoss, updates float64
	for range cfg.Epochs {
		perm := make([]int, len(rs))
		for i := range perm {
			perm[i] = i
		}
		for i := len(perm) - 1; i > 0; i-- { // Fisher-Yates with the run's RNG
			j := tr.rng.IntN(i + 1)
			perm[i], perm[j] = perm[j], perm[i]
		}
		for start := 0; start < len(perm); start += cfg.MiniBatch {
			mb := make([]*rollout, 0, cfg.MiniBatch)
			for _, k := range perm[start:min(len(perm), start+cfg.MiniBatch)] {
				mb = append(mb, rs[k])
			}
			batch, offs := layout(mb, pad)
			ntok := 0
			for _, r := range mb {
				ntok += r.n
			}

			// Policy: clipped surrogate + entropy bonus (+ ptx).
			tr.policy.ZeroGrad()
			out, err := tr.policy.Forward(batch)
			if err != nil {
				return nil, err
			}
			dlogp := make([]float32, batch.B*batch.T)
			dent := make([]float32, batch.B*batch.T)
			for i, r := range mb {
				for j := range r.n {
					k := offs[i] + j
					logRatio := float64(out.LogProbs[k] - r.oldLogp[j])
					ratio := math.Exp(logRatio)
					a := float64(r.adv[j])
					lo, hi := 1-float64(cfg.ClipRange), 1+float64(cfg.ClipRange)
					// loss = max(-a*ratio, -a*clip(ratio)); the gradient flows
					// only where the unclipped term is the larger.
					if -a*ratio >= -a*math.Min(math.Max(ratio, lo), hi) {
						dlogp[k] = float32(-a * ratio / float64(ntok))
					}
					if ratio < lo || ratio > hi {
						clipped++
					}
					approxKL += (ratio - 1) - logRatio
					entropy += float64(out.Entropy[k])
					dent[k] = -cfg.EntropyCoef / float32(ntok)
				}
			}
			tokens += float64(ntok)
			tr.policy.Backward(model.Grad{LogProbs: dlogp, Entropy: dent})
			if cfg.PtxCoef > 0 {
				l, err := tr.ptxStep(st)
				if err != nil {
					return nil, err
				}
				ptxLoss += l
			}
			if cfg.ClipNorm > 0 {
				tr.policy.ClipGradNorm(cfg.ClipNorm)
			}
			tr.popt.Update(cfg.PolicyLR)

			// Value model: clipped value loss.
			tr.value.ZeroGrad()
			vb := batch
			vb.Targets = nil
			vout, err := tr.value.Forward(vb)
			if err != nil {
				return nil, err
			}
			dv := make([]float32, batch.B*batch.T)
			for i, r := range mb {
				for j := range r.n {
					k := offs[i] + j
					v, old, ret := float64(vout.Values[k]), float64(r.values[j]), float64(r.returns[j])
					vc := old + math.Max(-float64(cfg.ValueClip), math.Min(float64(cfg.ValueClip), v-old))
					l1, l2 := (v-ret)*(v-ret), (vc-ret)*(vc-ret)
					if l1 >= l2 {
						vloss += 0.5 * l1
						dv[k] = float32((v - ret) / float64(ntok))
					} else {
						vloss += 0.5 * l2
						if vc == v { // inside the clip range the clipped term moves with v
							dv[k] = float32((v - ret) / float64(ntok))
						}
					}
				}
			}
			tr.value.Backward(model.Grad{Values: dv})
			if cfg.ClipNorm > 0 {
				tr.value.ClipGradNorm(cfg.ClipNorm)
			}
			tr.vopt.Update(cfg.ValueLR)
			updates++
		}
	}
	m := map[string]float64{
		"clip_fraction": clipped / tokens,
		"approx_kl":     approxKL / tokens,
		"entropy":       entropy / tokens,
		"value_loss":    vloss / tokens,
	}
	if cfg.PtxCoef > 0 {
		m["ptx_loss"] = ptxLoss / updates
	}
	return m, nil
}

// ptxStep adds PtxCoef times the SFT loss on a batch of demonstrations to
// the policy's gradients.
func (tr *trainer) ptxStep(st *state) (float64, error) {
	idx := st.PtxCursor.Next(tr.cfg.Seed+1, len(tr.ptx), tr.cfg.PtxBatch)
	seqs := make([]stage.Seq, len(idx))
	for i, j := range idx {
		seqs[i] = tr.ptx[j]
	}
	B, T, tokens, targets, mask := stage.Padded(seqs, tr.tok.EOT())
	out, err := tr.policy.Forward(model.Batch{B: B, T: T, Tokens: tokens, Targets: targets})
	if err != nil {
		return 0, err
	}
	dlogp := make([]float32, B*T)
	loss := model.CrossEntropy(dlogp, out.LogProbs, mask)
	for i := range dlogp {
		dlogp[i] *= tr.cfg.PtxCoef
	}
	tr.policy.Backward(model.Grad{LogProbs: dlogp})
	return float64(loss), nil
}
