package activities

import (
	"context"

	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/sft"
)

// TrainSFT runs supervised fine-tuning on the source's demonstrations.
func (a *Activities) TrainSFT(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.SFT, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		data, err := a.stageData(ctx, s, runstate.SFT)
		if err != nil {
			return StageResult{}, err
		}
		tok := data.tok
		var base map[string][]byte
		if s.Model.Base != "" {
			if base, err = a.baseModel(ctx, s.Model, nil); err != nil {
				return StageResult{}, err
			}
		}
		train, err := data.demonstrations(ctx, dataset.Train)
		if err != nil {
			return StageResult{}, err
		}
		if len(train) == 0 {
			return StageResult{}, errkind.BadInputf("sft: no demonstrations of train prompts in %s that fit the model (%d cut, %d dropped); import some with `instructflow data import`, or fix the data settings", data.what(), data.Cut, data.Dropped)
		}
		heldout, err := data.demonstrations(ctx, dataset.Heldout)
		if err != nil {
			return StageResult{}, err
		}
		cfg := s.SFT.Config
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		m := s.Model.Config
		if base == nil {
			m.Vocab = tok.VocabSize()
		}
		input := sft.Input{Config: cfg, Model: m, Base: base, Tokenizer: tok, Train: train, Heldout: heldout}
		if s.SFT.External() {
			return a.externalSFT(ctx, t, s, data, input)
		}
		var res sft.Result
		err = t.timed(ctx, func() error {
			res, err = sft.Train(ctx, input, t.sink, t.progress)
			return err
		})
		return StageResult{Checkpoint: t.checkpoint(res.Step, res.Checkpoint), Metrics: data.counts(map[string]float64{
			"steps": float64(res.Step), "tokens": float64(res.Tokens), "train_loss": res.TrainLoss, "heldout_loss": res.HeldoutLoss,
		})}, err
	})
}
