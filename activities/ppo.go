package activities

import (
	"context"

	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/stage"

	"github.com/instructflow/instructflow/ppo"
	"github.com/instructflow/instructflow/runstate"
)

// TrainPPO optimises the SFT policy against the reward model.
func (a *Activities) TrainPPO(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.PPO, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		data, err := a.stageData(ctx, s, runstate.PPO)
		if err != nil {
			return StageResult{}, err
		}
		tok := data.tok
		prompts, err := data.prompts(ctx, dataset.Train, s.PPO.MaxNewTokens+1) // +1: the end of text the reward is read before
		if err != nil {
			return StageResult{}, err
		}
		if len(prompts) == 0 {
			return StageResult{}, errkind.BadInputf("ppo: %s has no train prompts that fit the model with ppo.max_new_tokens after them (%d cut, %d dropped)", data.promptsWhat(), data.Cut, data.Dropped)
		}
		var demos []stage.Example
		if s.PPO.PtxCoef > 0 {
			if demos, err = data.demonstrations(ctx, dataset.Train); err != nil {
				return StageResult{}, err
			}
		}
		cfg := s.PPO.Config
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		if s.PPO.External() { // its trainer fetches the checkpoints itself, by key and hash
			return a.externalPPO(ctx, t, s, in, data, cfg, prompts, demos)
		}
		sftFiles, err := a.load(ctx, in.SFT)
		if err != nil {
			return StageResult{}, err
		}
		rmFiles, err := a.load(ctx, in.RM)
		if err != nil {
			return StageResult{}, err
		}
		var res ppo.Result
		err = t.timed(ctx, func() error {
			res, err = ppo.Train(ctx, ppo.Input{Config: cfg, SFT: sftFiles, RM: rmFiles, Tokenizer: tok,
				Prompts: renderedOf(prompts), Pretrain: demos}, t.sink, t.progress)
			return err
		})
		return StageResult{Checkpoint: t.checkpoint(res.Iteration, res.Checkpoint), Metrics: data.counts(res.Metrics)}, err
	})
}
