// Package ppo is the reinforcement-learning stage of InstructGPT (after
// Ziegler et al., 2019): the policy starts from the SFT model and is
// optimised against the reward model with PPO. Each iteration samples
// responses with the KV-cache sampler, scores them with the frozen reward
// model, and rewards each response with the reward model's score at its end
// minus beta * the per-token KL(policy || frozen SFT reference). A separate
// value model, initialised from the reward model, gives the baseline; GAE
// gives advantages; the policy takes clipped PPO steps with an entropy bonus
// and, optionally, the SFT loss mixed in (PPO-ptx); the value model takes
// clipped value steps. Beta follows an adaptive controller toward a target
// KL, or stays fixed. Everything a resumed run needs is in its checkpoint.
package ppo

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/tokenizer"
)

// Config holds PPO's hyperparameters.
type Config struct {
	Iterations   int     `json:"iterations"`    // rollout + update rounds
	RolloutBatch int     `json:"rollout_batch"` // prompts sampled per iteration
	MaxNewTokens int     `json:"max_new_tokens"`
	Epochs       int     `json:"epochs"`     // passes over each rollout batch
	MiniBatch    int     `json:"mini_batch"` // sequences per update
	PolicyLR     float32 `json:"policy_lr"`
	ValueLR      float32 `json:"value_lr"`
	ClipRange    float32 `json:"clip_range"` // policy ratio clip, e.g. 0.2
	ValueClip    float32 `json:"value_clip"` // value change clip, e.g. 0.2
	EntropyCoef  float32 `json:"entropy_coef"`
	Gamma        float32 `json:"gamma"`
	Lambda       float32 `json:"lambda"`
	KLCoef       float32 `json:"kl_coef"`     // initial (or fixed) beta
	AdaptiveKL   bool    `json:"adaptive_kl"` // steer beta toward TargetKL
	TargetKL     float32 `json:"target_kl"`   // per sequence, in nats
	KLHorizon    int     `json:"kl_horizon"`  // sequences over which the controller adapts
	// NormalizeReward divides reward-model scores by their running
	// standard deviation.
	NormalizeReward bool    `json:"normalize_reward"`
	PtxCoef         float32 `json:"ptx_coef"` // PPO-ptx: weight of the SFT loss; 0 = off
	PtxBatch        int     `json:"ptx_batch"`
	ClipNorm        float32 `json:"clip_norm"`
	CheckpointEvery int     `json:"checkpoint_every"`
	Seed            uint64  `json:"seed"`
	Threads         int     `json:"threads"`
}

// Validate reports a hyperparameter that cannot work.
func (c Config) Validate() error {
	pos := []struct {
		name string
		v    float64
	}{
		{"iterations", float64(c.Iterations)}, {"rollout_batch", float64(c.RolloutBatch)}, {"max_new_tokens", float64(c.MaxNewTokens)},
		{"epochs", float64(c.Epochs)}, {"mini_batch", float64(c.MiniBatch)}, {"policy_lr", float64(c.PolicyLR)},
		{"value_lr", float64(c.ValueLR)}, {"clip_range", float64(c.ClipRange)}, {"value_clip", float64(c.ValueClip)},
		{"checkpoint_every", float64(c.CheckpointEvery)},
	}
	for _, p := range pos {
		if !(p.v > 0) || math.IsInf(p.v, 0) {
			return errkind.BadInputf("ppo: %s is %v; give a positive number", p.name, p.v)
		}
	}
	switch {
	case c.Gamma < 0 || c.Gamma > 1 || c.Lambda < 0 || c.Lambda > 1:
		return errkind.BadInputf("ppo: gamma %v and lambda %v must lie in [0, 1]", c.Gamma, c.Lambda)
	case c.KLCoef < 0 || c.EntropyCoef < 0 || c.PtxCoef < 0 || c.ClipNorm < 0:
		return errkind.BadInputf("ppo: kl_coef, entropy_coef, ptx_coef and clip_norm must not be negative")
	case c.AdaptiveKL && (!(c.TargetKL > 0) || c.KLHorizon <= 0):
		return errkind.BadInputf("ppo: adaptive_kl needs target_kl > 0 and kl_horizon > 0")
	case c.PtxCoef > 0 && c.PtxBatch <= 0:
		return errkind.BadInputf("ppo: ptx_coef > 0 needs ptx_batch > 0")
	case c.MiniBatch > c.RolloutBatch:
		return errkind.BadInputf("ppo: mini_batch %d is larger than rollout_batch %d", c.MiniBatch, c.RolloutBatch)
	}
	return nil
}

// Input is everything a run of the stage needs.
type Input struct {
	Config    Config
	SFT       map[string][]byte // policy and reference initialisation
	RM        map[string][]byte // the reward model, and the value model's initialisation
	Tokenizer tokenizer.Tokenizer
	Prompts   []string
	// Pretrain is the PPO-ptx data (demonstrations), used when PtxCoef > 0.
	Pretrain []stage.Example
}

// Result is what the stage produced.
type Result struct {
	Iteration  int64              `json:"iteration"`
	Metrics    map[string]float64 `json:"metrics"` // of the last iteration
	Checkpoint string             `json:"checkpoint"`
}

// state is state.json.
type state struct {
	Stage      string             `json:"stage"`
	Iteration  int64              `json:"iteration"`
	Cursor     stage.Cursor       `json:"cursor"`
	PtxCursor  stage.Cursor       `json:"ptx_cursor"`
	RNG        string             `json:"rng"`
	Beta       float64            `json:"beta"`
	ScoreCount float64            `json:"score_count"` // running statistics of reward-model scores
	ScoreMean  float64            `json:"score_mean"`
	ScoreM2    float64            `json:"score_m2"`
	Metrics    map[string]float64 `json:"metrics"`
}

// trainer holds the four models of PPO.
type trainer struct {
	cfg       Config
	tok       tokenizer.Tokenizer
	policy    *model.Model
	reference *model.Model
	reward    *model.Model
	value     *model.Model
	popt      *model.AdamW
	vopt      *model.AdamW
	rng       *model.RNG
	prompts   [][]int32
	ptx       []stage.Seq
}

// Train runs PPO, continuing from the sink's latest checkpoint.
func Train(ctx context.Context, in Input, sink stage.Sink, progress stage.Progress) (Result, error) {
	cfg := in.Config
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	tr := &trainer{cfg: cfg, tok: in.Tokenizer}
	if err := tr.encode(in); err != nil {
		return Result{}, err
	}
	var err error
	if tr.reference, err = stage.LoadModel(in.SFT, ""); err != nil {
		return Result{}, errkind.BadInputf("ppo: SFT checkpoint: %v", err)
	}
	if tr.reward, err = stage.LoadModel(in.RM, ""); err != nil {
		return Result{}, errkind.BadInputf("ppo: reward-model checkpoint: %v", err)
	}
	if !tr.reward.Config.ValueHead {
		return Result{}, errkind.BadInputf("ppo: the reward-model checkpoint has no value head")
	}
	if tr.reference.Config.ValueHead {
		return Result{}, errkind.BadInputf("ppo: the SFT checkpoint has a value head: it is a reward or value model, not an SFT policy")
	}
	if err := stage.CheckShape(tr.reward.Config, tr.reference.Config, "ppo: the reward model"); err != nil {
		return Result{}, err
	}
	st := state{Stage: "ppo"}
	cp, ok, err := sink.Latest(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("ppo: find latest checkpoint: %w", err)
	}
	if ok {
		err = tr.resume(cp.Files, &st)
	} else {
		err = tr.start(in, &st)
	}
	if err != nil {
		return Result{}, err
	}
	maxLen := 0
	for _, p := range tr.prompts {
		maxLen = max(maxLen, len(p))
	}
	if ctxLen := tr.policy.Config.Context; maxLen+cfg.MaxNewTokens+1 > ctxLen {
		return Result{}, errkind.BadInputf("ppo: prompts of %d tokens plus max_new_tokens %d exceed the context %d", maxLen, cfg.MaxNewTokens, ctxLen)
	}
	if cfg.Threads > 0 {
		for _, m := range []*model.Model{tr.policy, tr.reference, tr.reward, tr.value} {
			m.SetThreads(cfg.Threads)
		}
	}
	res := Result{Iteration: st.Iteration, Metrics: st.Metrics, Checkpoint: cp.ID}
	for st.Iteration < int64(cfg.Iterations) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		metrics, seconds, err := tr.iterate(&st)
		if err != nil {
			return res, fmt.Errorf("ppo: iteration %d: %w", st.Iteration+1, err)
		}
		if err := finite(metrics); err != nil {
			// Deterministic: a retry would diverge the same way. The last
			// committed checkpoint predates it.
			return res, errkind.BadInputf("ppo: iteration %d: %v: the update diverged; lower ppo.policy_lr (now %g) or ppo.clip_norm and resume",
				st.Iteration+1, err, cfg.PolicyLR)
		}
		st.Iteration++
		st.Metrics = metrics
		reported := maps.Clone(metrics)
		maps.Copy(reported, seconds)
		rep := stage.Report{Step: st.Iteration, Total: int64(cfg.Iterations), Metrics: reported}
		if st.Iteration == int64(cfg.Iterations) || st.Iteration%int64(cfg.CheckpointEvery) == 0 {
			if rep.Checkpoint, err = tr.save(ctx, sink, st); err != nil {
				return res, err
			}
			res.Checkpoint = rep.Checkpoint
		}
		res.Iteration, res.Metrics = st.Iteration, metrics
		if progress != nil {
			if err := progress(rep); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// finite reports the first metric (by name) that is NaN or infinite.
func finite(metrics map[string]float64) error {
	names := slices.Sorted(maps.Keys(metrics))
	for _, n := range names {
		if v := metrics[n]; math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s is %v", n, v)
		}
	}
	return nil
}

func (tr *trainer) encode(in Input) error {
	if len(in.Prompts) == 0 {
		return errkind.BadInputf("ppo: no prompts")
	}
	for i, p := range in.Prompts {
		ids, err := in.Tokenizer.Encode(p)
		if err != nil || len(ids) == 0 {
			return errkind.BadInputf("ppo: prompt %d: empty or not encodable (%v)", i, err)
		}
		tr.prompts = append(tr.prompts, ids)
	}
	if in.Config.PtxCoef > 0 {
		for i, ex := range in.Pretrain {
			p, err1 := in.Tokenizer.Encode(ex.Prompt)
			r, err2 := in.Tokenizer.Encode(ex.Response)
			if err1 != nil || err2 != nil {
				return errkind.BadInputf("ppo: ptx example %d is not encodable", i)
			}
			tr.ptx = append(tr.ptx, stage.Seq{Tokens: append(append(p, r...), in.Tokenizer.EOT()), PromptLen: len(p)})
		}
		if len(tr.ptx) == 0 {
			return errkind.BadInputf("ppo: ptx_coef > 0 but no pretraining examples")
		}
	}
	return nil
}

// start builds the policy from SFT and the value model from the reward
// model.
func (tr *trainer) start(in Input, st *state) error {
	var err error
	if tr.policy, err = stage.LoadModel(in.SFT, ""); err != nil {
		return errkind.BadInputf("ppo: SFT checkpoint: %v", err)
	}
	if tr.value, err = stage.LoadModel(in.RM, ""); err != nil {
		return errkind.BadInputf("ppo: reward-model checkpoint: %v", err)
	}
	tr.newOptimizers()
	tr.rng = model.NewRNG(tr.cfg.Seed)
	st.Beta = float64(tr.cfg.KLCoef)
	return nil
}

// resume continues from a committed checkpoint, refusing one that another
// stage wrote or whose policy is not the reference's shape.
func (tr *trainer) resume(files map[string][]byte, st *state) error {
	*st = state{} // a state.json without "stage" is not this stage's
	if err := stage.ReadState(files, st); err != nil {
		return fmt.Errorf("ppo: resume: %w", err)
	}
	if err := stage.CheckStage(st.Stage, "ppo"); err != nil {
		return err
	}
	var err error
	if tr.policy, err = stage.LoadModel(files, ""); err != nil {
		return fmt.Errorf("ppo: resume: %w", err)
	}
	if err := stage.CheckShape(tr.policy.Config, tr.reference.Config, "ppo: the latest checkpoint"); err != nil {
		return err
	}
	if tr.value, err = stage.LoadModel(files, "value_"); err != nil {
		return fmt.Errorf("ppo: resume: %w", err)
	}
	tr.newOptimizers()
	if err := stage.LoadOptimizer(files, "", tr.popt); err != nil {
		return fmt.Errorf("ppo: resume: %w", err)
	}
	if err := stage.LoadOptimizer(files, "value_", tr.vopt); err != nil {
		return fmt.Errorf("ppo: resume: %w", err)
	}
	tr.rng = model.NewRNG(0)
	if err := tr.rng.UnmarshalText([]byte(st.RNG)); err != nil {
		return fmt.Errorf("ppo: resume: %w", err)
	}
	return nil
}

func (tr *trainer) newOptimizers() {
	ac := model.DefaultAdamW
	ac.WeightDecay = 0
	tr.popt = model.NewAdamW(tr.policy, ac)
	tr.vopt = model.NewAdamW(tr.value, ac)
}

func (tr *trainer) save(ctx context.Context, sink stage.Sink, st state) (string, error) {
	rng, err := tr.rng.MarshalText()
	if err != nil {
		return "", err
	}
	st.RNG = string(rng)
	files, err := stage.ModelFiles("", tr.policy, tr.popt)
	if err != nil {
		return "", fmt.Errorf("ppo: checkpoint: %w", err)
	}
	vf, err := stage.ModelFiles("value_", tr.value, tr.vopt)
	if err != nil {
		return "", fmt.Errorf("ppo: checkpoint: %w", err)
	}
	sf, err := stage.StateFile(st)
	if err != nil {
		return "", err
	}
	id, err := sink.Save(ctx, st.Iteration, append(append(files, vf...), sf))
	if err != nil {
		return "", fmt.Errorf("ppo: save checkpoint at iteration %d: %w", st.Iteration, err)
	}
	return id, nil
}
