package activities

import (
	"context"

	"github.com/instructflow/instructflow/ppo"
	"github.com/instructflow/instructflow/runstate"
)

// TrainPPO optimises the SFT policy against the reward model.
func (a *Activities) TrainPPO(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.PPO, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		sftFiles, err := a.load(ctx, in.SFT)
		if err != nil {
			return StageResult{}, err
		}
		rmFiles, err := a.load(ctx, in.RM)
		if err != nil {
			return StageResult{}, err
		}
		prompts, err := a.DB.Prompts(ctx, s.Data.Source, "train")
		if err != nil {
			return StageResult{}, err
		}
		demos, err := a.demonstrations(ctx, s.Data.Source, "train")
		if err != nil {
			return StageResult{}, err
		}
		tok, err := a.tokenizerOf(ctx, s)
		if err != nil {
			return StageResult{}, err
		}
		cfg := s.PPO
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		var res ppo.Result
		err = t.timed(ctx, func() error {
			res, err = ppo.Train(ctx, ppo.Input{Config: cfg, SFT: sftFiles, RM: rmFiles, Tokenizer: tok,
				Prompts: prompts, Pretrain: demos}, t.sink, t.progress)
			return err
		})
		return StageResult{Checkpoint: t.checkpoint(res.Iteration, res.Checkpoint), Metrics: res.Metrics}, err
	})
}
