package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/workflows"
)

func newRunCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Launch, follow, pause, approve, cancel, resume and report pipeline runs",
	}
	cmd.AddCommand(newRunStartCmd(a), newRunResumeCmd(a), newRunStatusCmd(a), newRunWatchCmd(a),
		newRunListCmd(a), newRunReportCmd(a), newRunPlotsCmd(a), newRunCancelCmd(a),
		newRunUpdateCmd(a, "pause", workflows.PauseUpdate, "Pause a run: the running stage stops now and continues from its last checkpoint on unpause"),
		newRunUpdateCmd(a, "unpause", workflows.UnpauseUpdate, "Continue a paused run"),
		newRunUpdateCmd(a, "approve", workflows.ApproveUpdate, "Let a run waiting at its gate start PPO"))
	return cmd
}

// control connects run control to the configured Postgres and Temporal.
func (a *app) control(ctx context.Context) (*control.Client, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	return control.Dial(ctx, cfg)
}

// runCmd builds `run <use> RUN_ID`; do gets run control.
func runCmd(a *app, use, short string, do func(cmd *cobra.Command, c *control.Client, run string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " RUN_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			return do(cmd, c, args[0])
		},
	}
}
