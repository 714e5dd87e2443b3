package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
)

func newRunCancelCmd(a *app) *cobra.Command {
	return runCmd(a, "cancel", "Cancel a run: the running stage stops after its last checkpoint; `run resume` continues it later",
		func(cmd *cobra.Command, c *control.Client, run string) error {
			rec, err := c.Cancel(cmd.Context(), run)
			if err != nil {
				return err
			}
			v := map[string]string{"run": rec.ID, "status": rec.Status}
			return a.printer(cmd).Print(v, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "run %s: %s\n", rec.ID, rec.Status)
				return err
			})
		})
}

// newRunUpdateCmd builds pause, unpause and approve: each sends its
// workflow update and prints the run's status as the workflow answers.
func newRunUpdateCmd(a *app, use, update, short string) *cobra.Command {
	return runCmd(a, use, short, func(cmd *cobra.Command, c *control.Client, run string) error {
		p, err := c.Update(cmd.Context(), run, update)
		if err != nil {
			return err
		}
		return a.printer(cmd).Print(p, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "run %s: %s\n", p.Run, p.Status)
			return err
		})
	})
}
