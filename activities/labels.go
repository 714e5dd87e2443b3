package activities

import (
	"context"
	"errors"
	"time"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/sampling"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage/postgres"
)

// CollectLabels samples K responses per prompt from the SFT policy, stores
// them as the run's labeling batch, and waits until the batch has its
// comparisons or the deadline passes. A retried attempt finds the batch
// and only waits.
func (a *Activities) CollectLabels(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, runstate.Labels, func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		name := s.ID + "-labels"
		res := StageResult{Batch: name}
		b, err := a.DB.GetBatch(ctx, name)
		if errors.Is(err, errkind.NotFound) {
			err = t.timed(ctx, func() error {
				b, err = a.createBatch(ctx, s, name, in.SFT, in.Deadline)
				return err
			})
		}
		if errors.Is(err, errkind.Conflict) {
			return res, errkind.BadInputf("labels: %v; start a new run to sample again", err)
		}
		if err != nil {
			return res, err
		}
		stopWaiting := t.waiting()
		defer stopWaiting()
		reported := -1
		for {
			if b.Labeled != reported { // a report (metrics row, step counter) only when labels came
				_ = t.progress(stage.Report{Step: int64(b.Labeled), Total: int64(b.Items),
					Metrics: map[string]float64{"labeled": float64(b.Labeled), "items": float64(b.Items)}})
				reported = b.Labeled
			}
			if b.Labeled >= b.Items {
				break
			}
			if !time.Now().Before(in.Deadline) {
				if float64(b.Labeled) < s.Labels.MinLabeled*float64(b.Items) {
					return res, errkind.BadInputf("labels: %d of %d items of batch %s labeled by the deadline %s, below labels.min_labeled %.2f; add labels (e.g. `instructflow labels simulate --batch %s`) and `instructflow run resume %s`",
						b.Labeled, b.Items, name, in.Deadline.Format(time.RFC3339), s.Labels.MinLabeled, name, s.ID)
				}
				break
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(a.poll()):
			}
			if b, err = a.DB.GetBatch(ctx, name); err != nil {
				return res, err
			}
		}
		res.Metrics = map[string]float64{"items": float64(b.Items), "labeled": float64(b.Labeled)}
		return res, nil
	})
}

func (a *Activities) poll() time.Duration {
	if a.LabelPoll > 0 {
		return a.LabelPoll
	}
	return 2 * time.Second
}

// createBatch samples the batch's items from the SFT policy: Rounds passes
// over the first Prompts train prompts and one over the first
// HeldoutPrompts held-out prompts, K samples each, distinct ones kept.
func (a *Activities) createBatch(ctx context.Context, s runspec.Spec, name string, sftCP *Checkpoint, deadline time.Time) (postgres.Batch, error) {
	files, err := a.load(ctx, sftCP)
	if err != nil {
		return postgres.Batch{}, err
	}
	policy, err := stage.LoadModel(files, "")
	if err != nil {
		return postgres.Batch{}, err
	}
	policy.SetThreads(s.Threads)
	train, err := a.DB.Prompts(ctx, s.Data.Source, "train")
	if err != nil {
		return postgres.Batch{}, err
	}
	heldout, err := a.DB.Prompts(ctx, s.Data.Source, "heldout")
	if err != nil {
		return postgres.Batch{}, err
	}
	if s.Labels.Prompts > 0 {
		train = train[:min(len(train), s.Labels.Prompts)]
	}
	heldout = heldout[:min(len(heldout), s.Labels.HeldoutPrompts)]
	if len(train) == 0 || len(heldout) == 0 {
		return postgres.Batch{}, errkind.BadInputf("labels: source %q has %d train and %d held-out prompts; both are needed", s.Data.Source, len(train), len(heldout))
	}
	tok, err := a.tokenizerOf(ctx, s)
	if err != nil {
		return postgres.Batch{}, err
	}
	sc := model.SampleConfig{MaxTokens: s.Labels.MaxNewTokens, Temperature: s.Labels.Temperature}
	var items []postgres.BatchItem
	add := func(prompts []string, seed uint64) error {
		resps, err := sampling.Responses(policy, tok, prompts, s.Labels.K, sc, model.NewRNG(seed))
		if err != nil {
			return err
		}
		for i, p := range prompts {
			if len(resps[i]) >= 2 {
				items = append(items, postgres.BatchItem{Item: len(items), Prompt: p, Responses: resps[i]})
			}
		}
		return nil
	}
	for round := range s.Labels.Rounds {
		if err := add(train, s.Seed+100+uint64(round)); err != nil {
			return postgres.Batch{}, err
		}
	}
	if err := add(heldout, s.Seed+3); err != nil {
		return postgres.Batch{}, err
	}
	if len(items) == 0 {
		return postgres.Batch{}, errkind.BadInputf("labels: the SFT policy gave fewer than 2 distinct responses for every prompt; raise labels.temperature or labels.k")
	}
	return a.DB.CreateBatch(ctx, name, s.ID, deadline, items)
}
