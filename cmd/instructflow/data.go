package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
)

func newDataCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "data", Short: "Load prompts and demonstrations for pipeline runs"}
	load := &cobra.Command{
		Use:   "load-demo",
		Short: "Store the demo task's prompts (train and held-out) and demonstrations under source \"strops\"",
		Long: `load-demo stores the demo task (string operations on short words, with a gold
judge) in Postgres as runs read it: prompts with their split and a labeler's
demonstration for each train prompt and 200 held-out ones, under the source
"strops" (data.source in a run spec). Loading again adds nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			added, err := control.LoadDemoTask(cmd.Context(), db)
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
	cmd.AddCommand(load)
	return cmd
}
