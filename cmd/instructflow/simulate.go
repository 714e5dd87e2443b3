package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
)

func newLabelsSimulateCmd(a *app) *cobra.Command {
	var (
		batch, run string
		seed       uint64
		unreliable float64
		wait       time.Duration
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
				done, err := control.LabelOpenBatches(ctx, db, batch, run, seed, unreliable)
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
			return a.printer(cmd).Print(map[string]any{"labeled": total}, func(w io.Writer) error {
				if len(total) == 0 {
					fmt.Fprintln(w, "labels simulate: no unlabeled items")
				}
				for _, name := range slices.Sorted(maps.Keys(total)) {
					fmt.Fprintf(w, "batch %s: labeled %d items\n", name, total[name])
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&batch, "batch", "", "label this batch only")
	cmd.Flags().StringVar(&run, "run", "", "label the open batches of this run only")
	cmd.Flags().Uint64Var(&seed, "seed", control.SimulateSeed, "seed of the labelers' draws")
	cmd.Flags().Float64Var(&unreliable, "unreliable", control.SimulateUnreliable, "share of items that go to the unreliable labelers")
	cmd.Flags().DurationVar(&wait, "wait", 0, "keep polling for open batches until none appeared for this long")
	return cmd
}
