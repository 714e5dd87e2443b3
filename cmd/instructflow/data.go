package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/tasks"
)

func newDataCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "data", Short: "Import, list, show and export datasets of demonstrations and prompts"}
	var prompts int
	load := &cobra.Command{
		Use:   "load-demo",
		Short: "Store the demo task's prompts (train and held-out) and demonstrations under source \"strops\"",
		Long: `load-demo stores the demo task (string operations on short words, with a gold
judge) in Postgres as runs read it: prompts with their split and a labeler's
demonstration for each train prompt and 200 held-out ones, under the source
"strops" (data.source in a run spec). Loading again adds nothing.

--prompts loads more (or fewer) than the 5,000 the presets are made for, one
in five held out, e.g. for the memory benchmark (scripts/bench_memory.sh).
The first N prompts are the same for every N, so a larger N later adds only
the new ones; prompts are never removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prompts < 5 {
				return fmt.Errorf("data load-demo: --prompts %d: load at least 5 (one in five is held out)", prompts)
			}
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			added, err := control.LoadDemoPrompts(cmd.Context(), db, prompts)
			if err != nil {
				return err
			}
			v := map[string]any{"source": "strops", "prompts_added": added}
			return a.printer(cmd).Print(v, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "source strops: %d prompts added\n", added)
				return err
			})
		},
	}
	load.Flags().IntVar(&prompts, "prompts", tasks.DataPrompts, "how many prompts to load (one in five held out)")
	cmd.AddCommand(load, newDataImportCmd(a), newDataListCmd(a), newDataShowCmd(a), newDataExportCmd(a))
	return cmd
}
