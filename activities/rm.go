package activities

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tokenizer"
)

// TrainRM trains the reward model on the snapshot's train-split comparisons
// and evaluates it on the held-out ones.
func (a *Activities) TrainRM(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.RM, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		if err := a.DB.SetStageSnapshot(ctx, s.ID, string(runstate.RM), in.Snapshot); err != nil {
			return StageResult{}, err
		}
		var train, heldout []rewardmodel.Comparison
		responses := map[int64]stage.Example{} // every response of the snapshot, for the audit's scores
		err := a.DB.ExportSnapshot(ctx, in.Snapshot, func(r postgres.ExportRow) error {
			for i, id := range r.ResponseIDs {
				responses[id] = stage.Example{Prompt: r.Prompt, Response: r.Responses[i]}
			}
			c := rewardmodel.Comparison{Prompt: r.Prompt, Responses: r.Responses, Ranks: make([]int, len(r.Ranks)), Labeler: r.Labeler}
			for i, rk := range r.Ranks {
				c.Ranks[i] = int(rk)
			}
			if r.Split == "train" {
				train = append(train, c)
			} else {
				heldout = append(heldout, c)
			}
			return nil
		})
		if err != nil {
			return StageResult{}, err
		}
		if len(train) == 0 || len(heldout) == 0 {
			return StageResult{}, errkind.BadInputf("rm: snapshot %s has %d comparisons of train prompts and %d of held-out ones; both are needed", in.Snapshot, len(train), len(heldout))
		}
		files, err := a.load(ctx, in.SFT)
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
		cfg := s.RM
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		var res rewardmodel.Result
		var ids []int64
		var scores []float64
		var rmKey string
		err = t.timed(ctx, func() error {
			if res, err = rewardmodel.Train(ctx, rewardmodel.Input{Config: cfg, SFT: files, Tokenizer: tok,
				Train: train, Heldout: heldout, Demonstrations: demos}, t.sink, t.progress); err != nil {
				return err
			}
			rmKey, ids, scores, err = a.scoreResponses(ctx, t, s, tok, responses)
			return err
		})
		if err != nil {
			return StageResult{}, err
		}
		// The audit lists the labels the trained model most confidently
		// disagrees with from these scores (`labels audit --snapshot`).
		if err := a.DB.RecordRewardScores(ctx, in.Snapshot, rmKey, ids, scores); err != nil {
			return StageResult{}, err
		}
		return StageResult{Snapshot: in.Snapshot, Checkpoint: t.checkpoint(res.Step, res.Checkpoint), Metrics: map[string]float64{
			"steps": float64(res.Step), "train_loss": res.TrainLoss, "accuracy": res.Heldout.Accuracy,
			"heldout_pairs": float64(res.Heldout.Pairs), "heldout_loss": res.Heldout.Loss,
			"length_correlation": res.Heldout.LengthCorr, "train_comparisons": float64(len(train)),
		}}, err
	})
}

// scoreResponses scores every response with the stage's final reward
// model, in id order, and returns the model's checkpoint key. It reports
// no steps, so it tells the tracker it is alive after each chunk.
func (a *Activities) scoreResponses(ctx context.Context, t *tracker, s runspec.Spec, tok tokenizer.Tokenizer, responses map[int64]stage.Example) (string, []int64, []float64, error) {
	cp, ok, err := t.sink.Latest(ctx)
	if err != nil {
		return "", nil, nil, fmt.Errorf("rm: final checkpoint: %w", err)
	}
	if !ok {
		return "", nil, nil, errors.New("rm: no final checkpoint after training")
	}
	rm, err := stage.LoadModel(cp.Files, "")
	if err != nil {
		return "", nil, nil, err
	}
	rm.SetThreads(s.Threads)
	key := Checkpoint{Run: s.ID, Stage: runstate.RM, Step: cp.Step}.Key()
	ids := slices.Sorted(maps.Keys(responses))
	exs := make([]stage.Example, len(ids))
	for i, id := range ids {
		exs[i] = responses[id]
	}
	// Chunks of whole batches of 256: the same batches, so the same scores,
	// as one call.
	const batch, chunk = 256, 16 * 256
	scores := make([]float64, 0, len(exs))
	for start := 0; start < len(exs); start += chunk {
		got, err := rewardmodel.ScoreExamples(rm, tok, exs[start:min(len(exs), start+chunk)], batch)
		if err != nil {
			return "", nil, nil, err
		}
		for _, v := range got {
			scores = append(scores, float64(v))
		}
		t.alive()
		if err := ctx.Err(); err != nil {
			return "", nil, nil, err
		}
	}
	return key, ids, scores, nil
}
