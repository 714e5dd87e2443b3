package activities

import (
	"context"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/sft"
)

// TrainSFT runs supervised fine-tuning on the source's demonstrations.
func (a *Activities) TrainSFT(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.SFT, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		tok, err := a.tokenizerOf(ctx, s)
		if err != nil {
			return StageResult{}, err
		}
		var base map[string][]byte
		if s.Model.Base != "" {
			if base, err = a.baseModel(ctx, s.Model, nil); err != nil {
				return StageResult{}, err
			}
		}
		train, err := a.demonstrations(ctx, s.Data.Source, "train")
		if err != nil {
			return StageResult{}, err
		}
		if len(train) == 0 {
			return StageResult{}, errkind.BadInputf("sft: no demonstrations of train prompts with source %q in Postgres; load the demo task with `instructflow data load-demo`, or fix data.source", s.Data.Source)
		}
		heldout, err := a.demonstrations(ctx, s.Data.Source, "heldout")
		if err != nil {
			return StageResult{}, err
		}
		cfg := s.SFT
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		m := s.Model.Config
		if base == nil {
			m.Vocab = tok.VocabSize()
		}
		var res sft.Result
		err = t.timed(ctx, func() error {
			res, err = sft.Train(ctx, sft.Input{Config: cfg, Model: m, Base: base, Tokenizer: tok, Train: train, Heldout: heldout},
				t.sink, t.progress)
			return err
		})
		return StageResult{Checkpoint: t.checkpoint(res.Step, res.Checkpoint), Metrics: map[string]float64{
			"steps": float64(res.Step), "tokens": float64(res.Tokens), "train_loss": res.TrainLoss, "heldout_loss": res.HeldoutLoss,
		}}, err
	})
}
