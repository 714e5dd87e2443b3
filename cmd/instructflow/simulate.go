package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/demo"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tasks"
)

// The simulated labelers' defaults: the seed of their draws and the share
// of items that go to the unreliable ones.
const (
	simulateSeed       = 1
	simulateUnreliable = 0.1
)

func newLabelsSimulateCmd(a *app) *cobra.Command {
	var (
		batch, run string
		seed       uint64
		unreliable float64
		wait       time.Duration
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Play the demo task's labelers: rank every unlabeled item of open labeling batches",
		Long: `simulate labels the items of labeling batches the way the demo task's
simulated labelers would: each item goes to one labeler of the panel (six
reliable ones with growing noise; with probability --unreliable to one of
three unreliable ones: random, always-first, always-longer), who ranks the
responses as shown. Labels depend on --seed and the item alone. Comparisons
are written with the batch and item, like any other labeling tool's.

Without --batch it labels every open batch (of --run, if given). With --wait
it keeps looking for open batches until none has appeared for that long.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if unreliable < 0 || unreliable > 1 {
				return fmt.Errorf("labels simulate: --unreliable %v: give a share in [0, 1]", unreliable)
			}
			ctx := cmd.Context()
			db, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			total := map[string]int{}
			idleSince := time.Now()
			for {
				done, err := labelOpenBatches(ctx, db, batch, run, seed, unreliable)
				if err != nil {
					return err
				}
				for name, n := range done {
					total[name] += n
					idleSince = time.Now()
				}
				if time.Since(idleSince) >= wait {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Second):
				}
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"labeled": total})
			}
			if len(total) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "labels simulate: no unlabeled items")
			}
			for _, name := range slices.Sorted(maps.Keys(total)) {
				fmt.Fprintf(cmd.OutOrStdout(), "batch %s: labeled %d items\n", name, total[name])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "label this batch only")
	cmd.Flags().StringVar(&run, "run", "", "label the open batches of this run only")
	cmd.Flags().Uint64Var(&seed, "seed", simulateSeed, "seed of the labelers' draws")
	cmd.Flags().Float64Var(&unreliable, "unreliable", simulateUnreliable, "share of items that go to the unreliable labelers")
	cmd.Flags().DurationVar(&wait, "wait", 0, "keep polling for open batches until none appeared for this long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// labelOpenBatches labels, in one pass, every unlabeled item of the named
// batch, or else of the open batches (of run, if given), and returns how
// many items of each batch it labeled.
func labelOpenBatches(ctx context.Context, db *postgres.DB, batch, run string, seed uint64, unreliable float64) (map[string]int, error) {
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

// labelUntilDone plays the simulated labelers, with the defaults of `labels
// simulate`, for the open batches of run (of every run when empty) until ctx
// ends.
func labelUntilDone(ctx context.Context, db *postgres.DB, run string) error {
	for {
		if _, err := labelOpenBatches(ctx, db, "", run, simulateSeed, simulateUnreliable); err != nil {
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

// loadDemoTask stores the demo task's prompts (train and held-out) with the
// labelers' demonstrations under source "strops", as the demo run makes
// them. It is idempotent.
func loadDemoTask(ctx context.Context, db *postgres.DB) (int64, error) {
	d := demo.DefaultConfig()
	src := tasks.Source(d.Seed, d.Examples, d.DemoError)
	ps := make([]postgres.SourcePrompt, len(src))
	for i, p := range src {
		ps[i] = postgres.SourcePrompt(p)
	}
	return db.LoadSource(ctx, "strops", "demo-writers", ps)
}
