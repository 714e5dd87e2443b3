package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/instructflow/instructflow/dataset"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage/postgres"
)

// TrainRM trains the reward model on the snapshot's train-split comparisons
// and evaluates it on the held-out ones.
func (a *Activities) TrainRM(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.RM, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		if err := a.DB.SetStageSnapshot(ctx, s.ID, string(runstate.RM), in.Snapshot); err != nil {
			return StageResult{}, err
		}
		data, err := a.stageData(ctx, s, runstate.RM)
		if err != nil {
			return StageResult{}, err
		}
		tok := data.tok
		ext := s.RM.External()
		rows := map[string][]any{} // the external trainer's, by split
		// The comparisons go to datasets on disk as they are read: memory
		// holds an offset per comparison, not the snapshot.
		var sets [2]*rewardmodel.Dataset // train, held out
		for i := range sets {
			if sets[i], err = rewardmodel.NewDataset(tok); err != nil {
				return StageResult{}, err
			}
			defer sets[i].Close()
		}
		train, heldout := sets[0], sets[1]
		err = a.DB.ExportSnapshot(ctx, in.Snapshot, func(r postgres.ExportRow) error {
			prompt, resps, ok, err := data.comparison(r.Prompt, r.Turns, r.Responses)
			if err != nil || !ok {
				return err
			}
			if ext {
				row, err := rankingRowOf(tok, prompt, resps, r.Ranks, r.Labeler)
				rows[r.Split] = append(rows[r.Split], row)
				return err
			}
			c := rewardmodel.Comparison{Prompt: prompt, Responses: resps, Ranks: make([]int, len(r.Ranks)), Labeler: r.Labeler}
			for i, rk := range r.Ranks {
				c.Ranks[i] = int(rk)
			}
			if r.Split == "train" {
				return train.Add(c)
			}
			return heldout.Add(c)
		})
		if err != nil {
			return StageResult{}, err
		}
		nTrain, nHeldout := train.Len()+train.Skipped, heldout.Len()+heldout.Skipped
		if ext {
			nTrain, nHeldout = len(rows["train"]), len(rows["heldout"])
		}
		if nTrain == 0 || nHeldout == 0 {
			return StageResult{}, errkind.BadInputf("rm: snapshot %s has %d comparisons of train prompts and %d of held-out ones; both are needed", in.Snapshot, nTrain, nHeldout)
		}
		cfg := s.RM.Config
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		if ext {
			return a.externalRM(ctx, t, s, in, data, cfg, rows)
		}
		files, err := a.load(ctx, in.SFT)
		if err != nil {
			return StageResult{}, err
		}
		forDemos := *data // the stage's counts are of its comparisons
		demos, err := forDemos.demonstrations(ctx, dataset.Train)
		if err != nil {
			return StageResult{}, err
		}
		var res rewardmodel.Result
		err = t.timed(ctx, func() error {
			if res, err = rewardmodel.Train(ctx, rewardmodel.Input{Config: cfg, SFT: files, Tokenizer: tok,
				TrainSet: train, HeldoutSet: heldout, Demonstrations: demos}, t.sink, t.progress); err != nil {
				return err
			}
			return a.scoreResponses(ctx, t, s, data, in.Snapshot)
		})
		if err != nil {
			return StageResult{}, err
		}
		return StageResult{Snapshot: in.Snapshot, Checkpoint: t.checkpoint(res.Step, res.Checkpoint), Metrics: data.counts(map[string]float64{
			"steps": float64(res.Step), "train_loss": res.TrainLoss, "accuracy": res.Heldout.Accuracy,
			"heldout_pairs": float64(res.Heldout.Pairs), "heldout_loss": res.Heldout.Loss,
			"length_correlation": res.Heldout.LengthCorr, "train_comparisons": float64(nTrain),
		})}, err
	})
}

// scoreChunk is how many responses scoreResponses scores and stores at a
// time: chunks of whole batches of scoreBatch.
const scoreBatch, scoreChunk = 256, 16 * 256

// scoreResponses scores every response of the snapshot with the stage's
// final reward model and stores the scores, for the audit to list the
// labels the model most confidently disagrees with (`labels audit
// --snapshot`). It reads the snapshot again rather than holding its
// responses, and scores and stores scoreChunk responses at a time, so that
// memory does not grow with the snapshot; a response shown in several
// comparisons is scored each time and stored once. It reports no steps,
// so it tells the tracker it is alive after each chunk.
func (a *Activities) scoreResponses(ctx context.Context, t *tracker, s runspec.Spec, data *runData, snapshot string) error {
	counted := *data // the stage's counts are of the rows it trained on
	data = &counted
	cp, ok, err := t.sink.Latest(ctx)
	if err != nil {
		return fmt.Errorf("rm: final checkpoint: %w", err)
	}
	if !ok {
		return errors.New("rm: no final checkpoint after training")
	}
	rm, err := stage.LoadModel(cp.Files, "")
	if err != nil {
		return err
	}
	rm.SetThreads(s.Threads)
	key := Checkpoint{Run: s.ID, Stage: runstate.RM, Step: cp.Step}.Key()
	ids := make([]int64, 0, scoreChunk)
	exs := make([]stage.Example, 0, scoreChunk)
	scores := make([]float64, 0, scoreChunk)
	flush := func() error {
		got, err := rewardmodel.ScoreExamples(rm, data.tok, exs, scoreBatch)
		if err != nil {
			return err
		}
		scores = scores[:0]
		for _, v := range got {
			scores = append(scores, float64(v))
		}
		if err := a.DB.RecordRewardScores(ctx, snapshot, key, ids, scores); err != nil {
			return err
		}
		ids, exs = ids[:0], exs[:0]
		t.alive()
		return ctx.Err()
	}
	err = a.DB.ExportSnapshot(ctx, snapshot, func(r postgres.ExportRow) error {
		prompt, resps, ok, err := data.comparison(r.Prompt, r.Turns, r.Responses)
		if err != nil || !ok {
			return err // a comparison that does not fit was not trained on either
		}
		for i, id := range r.ResponseIDs {
			ids, exs = append(ids, id), append(exs, stage.Example{Prompt: prompt, Response: resps[i]})
			if len(exs) == scoreChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil && len(exs) > 0 {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("rm: score the snapshot's responses: %w", err)
	}
	return nil
}
