package activities

import (
	"context"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/sampling"
	"github.com/instructflow/instructflow/stage"
)

// Evaluate judges the PPO policy against the SFT policy on held-out prompts
// with the task's gold judge, which no stage saw.
func (a *Activities) Evaluate(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.Eval, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		var ms [2]*model.Model
		for i, cp := range []*Checkpoint{in.SFT, in.PPO} {
			files, err := a.load(ctx, cp)
			if err != nil {
				return StageResult{}, err
			}
			if ms[i], err = stage.LoadModel(files, ""); err != nil {
				return StageResult{}, err
			}
			ms[i].SetThreads(s.Threads)
		}
		prompts, err := a.DB.Prompts(ctx, s.Data.Source, "heldout")
		if err != nil {
			return StageResult{}, err
		}
		tok, err := a.tokenizerOf(ctx, s)
		if err != nil {
			return StageResult{}, err
		}
		judge, ok := judgeOf(s)
		if !ok {
			return StageResult{}, errkind.BadInputf("eval: task %q has no gold judge; set eval.samples: 0", s.Data.Task)
		}
		var ev sampling.Eval
		err = t.timed(ctx, func() error {
			ev, err = sampling.Evaluate(ms[0], ms[1], tok, judge, prompts, s.Eval.Samples, s.PPO.MaxNewTokens, s.Eval.SampleBatch, s.Seed+10,
				func(int) error { t.alive(); return ctx.Err() }) // evaluation reports no steps
			return err
		})
		return StageResult{Metrics: map[string]float64{
			"win_rate": ev.WinRate, "sft_gold": ev.RefGold, "ppo_gold": ev.Gold, "kl": ev.KL, "samples": float64(ev.Samples),
		}}, err
	})
}
