package control

import (
	"context"
	"fmt"
	"time"

	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tasks"
)

// The demo task's simulated labelers: what `labels simulate`, the
// quickstart and the pipeline tests use to answer a run waiting for labels.

// The simulated labelers' defaults: the seed of their draws and the share
// of items that go to the unreliable ones.
const (
	SimulateSeed       = 1
	SimulateUnreliable = 0.1
)

// LabelOpenBatches labels, in one pass, every unlabeled item of the named
// batch, or else of the open batches (of run, if given), and returns how
// many items of each batch it labeled.
func LabelOpenBatches(ctx context.Context, db *postgres.DB, batch, run string, seed uint64, unreliable float64) (map[string]int, error) {
	names := []string{batch}
	if batch == "" {
		var err error
		if names, err = db.OpenBatches(ctx, run); err != nil {
			return nil, err
		}
	}
	done := map[string]int{}
	for _, name := range names {
		n, err := simulateLabels(ctx, db, name, seed, unreliable)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			done[name] = n
		}
	}
	return done, nil
}

// LabelUntilDone plays the simulated labelers, with their defaults, for the
// open batches of run (of every run when empty) until ctx ends.
func LabelUntilDone(ctx context.Context, db *postgres.DB, run string) error {
	for {
		if _, err := LabelOpenBatches(ctx, db, "", run, SimulateSeed, SimulateUnreliable); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// simulateLabels labels a batch's unlabeled items with the demo task's
// simulated labelers and returns how many it labeled.
func simulateLabels(ctx context.Context, db *postgres.DB, batch string, seed uint64, unreliable float64) (int, error) {
	items, err := db.UnlabeledItems(ctx, batch)
	if err != nil {
		return 0, err
	}
	const chunk = 2000
	for start := 0; start < len(items); start += chunk {
		part := items[start:min(len(items), start+chunk)]
		labels := make([]postgres.BatchLabel, len(part))
		for i, it := range part {
			if _, err := tasks.Judge(it.Prompt, ""); err != nil {
				return 0, fmt.Errorf("labels simulate: batch %s item %d: %w; the simulated labelers only know the demo task", batch, it.Item, err)
			}
			labels[i].Item = it.Item
			labels[i].Labeler, labels[i].Ranks = tasks.LabelItem(seed, it.Item, it.Prompt, it.Responses, unreliable)
		}
		if _, err := db.AddLabels(ctx, batch, "simulated", labels); err != nil {
			return 0, err
		}
	}
	return len(items), nil
}

// LoadDemoTask stores the demo task's prompts (train and held-out) with the
// labelers' demonstrations under source "strops", as the demo run makes
// them. It is idempotent and returns how many prompts it added.
func LoadDemoTask(ctx context.Context, db *postgres.DB) (int64, error) {
	return LoadDemoPrompts(ctx, db, tasks.DataPrompts)
}

// LoadDemoPrompts is LoadDemoTask with n prompts instead of
// tasks.DataPrompts (one in five held out). The first n prompts are the
// same for every n, so loading more later adds only the new ones.
func LoadDemoPrompts(ctx context.Context, db *postgres.DB, n int) (int64, error) {
	src := tasks.Source(tasks.DataSeed, n, tasks.DemoSlips)
	ps := make([]postgres.SourcePrompt, len(src))
	for i, p := range src {
		ps[i] = postgres.SourcePrompt(p)
	}
	return db.LoadSource(ctx, "strops", "demo-writers", ps)
}
