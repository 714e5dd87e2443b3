package activities

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/instructflow/instructflow/dataset"
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
		data, err := a.runData(ctx, s)
		if err != nil {
			return res, err
		}
		b, err := a.DB.GetBatch(ctx, name)
		switch {
		case errors.Is(err, errkind.NotFound):
			err = t.timed(ctx, func() error {
				b, err = a.createBatch(ctx, t, s, data, name, in.SFT, in.Deadline)
				return err
			})
		case err == nil:
			// A retried attempt finds the batch; it reads the prompts again
			// (no sampling) only to report the counts of the rows cut and
			// dropped, as the attempt that sampled them did.
			for _, split := range []dataset.Split{dataset.Train, dataset.Heldout} {
				if _, err = data.prompts(ctx, split, s.Labels.MaxNewTokens); err != nil {
					break
				}
			}
		}
		if errors.Is(err, errkind.Conflict) {
			return res, errkind.BadInputf("labels: %v; start a new run to sample again", err)
		}
		if err != nil {
			return res, err
		}
		if b, err = a.awaitLabels(ctx, t, s, b, in.Deadline); err != nil {
			return res, err
		}
		res.Metrics = data.counts(map[string]float64{"items": float64(b.Items), "labeled": float64(b.Labeled)})
		return res, nil
	})
}

// awaitLabels waits until every item of batch b has a comparison, or the
// deadline passes with at least labels.min_labeled of them labeled (else it
// fails: more labels and `run resume` continue the run), reporting the
// count as the stage's progress.
func (a *Activities) awaitLabels(ctx context.Context, t *tracker, s runspec.Spec, b postgres.Batch, deadline time.Time) (postgres.Batch, error) {
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
			return b, nil
		}
		if !time.Now().Before(deadline) {
			if float64(b.Labeled) < s.Labels.MinLabeled*float64(b.Items) {
				return b, errkind.BadInputf("%s: %d of %d items of batch %s labeled by the deadline %s, below labels.min_labeled %.2f; add labels (e.g. `instructflow labels simulate --batch %s`) and `instructflow run resume %s`",
					t.stage, b.Labeled, b.Items, b.Name, deadline.Format(time.RFC3339), s.Labels.MinLabeled, b.Name, s.ID)
			}
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(a.poll()):
		}
		var err error
		if b, err = a.DB.GetBatch(ctx, b.Name); err != nil {
			return b, err
		}
	}
}

func (a *Activities) poll() time.Duration {
	if a.LabelPoll > 0 {
		return a.LabelPoll
	}
	return 2 * time.Second
}

// createBatch samples the batch's items from the SFT policy: Rounds passes
// over the first Prompts train prompts and one over the first
// HeldoutPrompts held-out prompts, K samples each, distinct ones kept. The
// policy samples labels.sample_batch sequences at a time, and the items go
// to a spool file as they come, then from it to Postgres a part at a time:
// memory holds one sampling call and one part, not the batch.
func (a *Activities) createBatch(ctx context.Context, t *tracker, s runspec.Spec, data *runData, name string, sftCP *Checkpoint, deadline time.Time) (postgres.Batch, error) {
	files, err := a.load(ctx, sftCP)
	if err != nil {
		return postgres.Batch{}, err
	}
	policy, err := stage.LoadModel(files, "")
	if err != nil {
		return postgres.Batch{}, err
	}
	policy.SetThreads(s.Threads)
	train, err := data.prompts(ctx, dataset.Train, s.Labels.MaxNewTokens)
	if err != nil {
		return postgres.Batch{}, err
	}
	heldout, err := data.prompts(ctx, dataset.Heldout, s.Labels.MaxNewTokens)
	if err != nil {
		return postgres.Batch{}, err
	}
	if s.Labels.Prompts > 0 {
		train = train[:min(len(train), s.Labels.Prompts)]
	}
	heldout = heldout[:min(len(heldout), s.Labels.HeldoutPrompts)]
	if len(train) == 0 || len(heldout) == 0 {
		return postgres.Batch{}, errkind.BadInputf("labels: %s has %d train and %d held-out prompts that fit the model (%d cut, %d dropped); both are needed", data.promptsWhat(), len(train), len(heldout), data.Cut, data.Dropped)
	}
	tok := data.tok
	spool, err := newItemSpool()
	if err != nil {
		return postgres.Batch{}, err
	}
	defer spool.close()
	sc := model.SampleConfig{MaxTokens: s.Labels.MaxNewTokens, Temperature: s.Labels.Temperature}
	add := func(what string, prompts []prompt, seed uint64) error {
		err := sampling.Responses(policy, tok, renderedOf(prompts), s.Labels.K, sc, s.Labels.SampleBatch, model.NewRNG(seed),
			func(first int, resps [][]string) error {
				for i, rs := range resps {
					if rs = data.replies(rs); len(rs) >= 2 {
						if err := spool.add(postgres.BatchItem{Prompt: prompts[first+i].Text, Responses: rs}); err != nil {
							return err
						}
					}
				}
				t.alive() // sampling reports no steps
				return ctx.Err()
			})
		if err != nil {
			return fmt.Errorf("labels: sample %s: %w", what, err)
		}
		return nil
	}
	for round := range s.Labels.Rounds {
		if err := add(fmt.Sprintf("round %d", round+1), train, s.Seed+100+uint64(round)); err != nil {
			return postgres.Batch{}, err
		}
	}
	if err := add("held-out prompts", heldout, s.Seed+3); err != nil {
		return postgres.Batch{}, err
	}
	if spool.items == 0 {
		return postgres.Batch{}, errkind.BadInputf("labels: the SFT policy gave fewer than 2 distinct responses for every prompt; raise labels.temperature or labels.k")
	}
	return a.DB.CreateBatchFrom(ctx, name, s.ID, deadline, spool.items, labeling(s), spool.replay)
}

// itemSpool holds a labeling batch's items in a temporary file while they
// are sampled, numbering them in order, and gives them back a part at a
// time.
type itemSpool struct {
	f     *os.File
	w     *bufio.Writer
	enc   *json.Encoder
	items int
}

func newItemSpool() (*itemSpool, error) {
	f, err := os.CreateTemp("", "instructflow-batch-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("labels: spool file: %w", err)
	}
	w := bufio.NewWriter(f)
	return &itemSpool{f: f, w: w, enc: json.NewEncoder(w)}, nil
}

func (s *itemSpool) add(it postgres.BatchItem) error {
	it.Item = s.items
	if err := s.enc.Encode(it); err != nil {
		return fmt.Errorf("labels: spool file: %w", err)
	}
	s.items++
	return nil
}

// spoolPart is how many items replay passes on at a time.
const spoolPart = 2000

// replay reads the items back from the start and passes them to add,
// spoolPart at a time.
func (s *itemSpool) replay(add func([]postgres.BatchItem) error) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("labels: spool file: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("labels: spool file: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReader(s.f))
	part := make([]postgres.BatchItem, 0, spoolPart)
	for {
		var it postgres.BatchItem
		err := dec.Decode(&it)
		if err == nil {
			part = append(part, it)
		}
		if len(part) == spoolPart || err == io.EOF && len(part) > 0 {
			if err := add(part); err != nil {
				return err
			}
			part = part[:0]
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("labels: spool file: %w", err)
		}
	}
}

// close removes the spool file.
func (s *itemSpool) close() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// labeling is how people label the run's batches in the labeling app.
func labeling(s runspec.Spec) postgres.Labeling {
	l := postgres.Labeling{Overlap: s.Labels.Overlap, Lease: s.Labels.Lease, Guidelines: s.Labels.Guidelines}
	if len(s.Labels.Flags) > 0 {
		l.Flags = s.Labels.Flags
	}
	return l
}
