package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/workflows"
)

func newCheckCmd(a *app) *cobra.Command {
	var withWorker bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Run the Preflight workflow: Temporal, a worker, Postgres and S3 must all answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			if withWorker {
				w, closeAll, err := startWorker(cmd.Context(), cfg, nil, slog.LevelError)
				if err != nil {
					return err
				}
				defer closeAll()
				defer w.Stop()
			}
			res, err := preflight(cmd.Context(), cfg, timeout)
			if err != nil {
				return err
			}
			return a.printer(cmd).Print(res, func(w io.Writer) error { return writePreflight(w, cfg, res) })
		},
	}
	cmd.Flags().BoolVar(&withWorker, "with-worker", false, "run a worker in this process for the check")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for a worker to answer")
	return cmd
}

// preflight runs the Preflight workflow through Temporal and waits for it.
func preflight(ctx context.Context, cfg config.Config, timeout time.Duration) (workflows.PreflightResult, error) {
	var res workflows.PreflightResult
	c, err := control.DialTemporal(ctx, cfg.Temporal, nil)
	if err != nil {
		return res, err
	}
	defer c.Close()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       "preflight-" + uuid.NewString(),
		TaskQueue:                cfg.Temporal.TaskQueue,
		WorkflowExecutionTimeout: timeout,
	}, workflows.Preflight, workflows.PreflightInput{})
	if err != nil {
		return res, fmt.Errorf("check: start preflight workflow: %w", err)
	}
	if err := run.Get(ctx, &res); err != nil {
		var te *temporal.TimeoutError
		if errors.As(err, &te) {
			return res, fmt.Errorf("check: no worker finished the preflight on task queue %q within %s; start one with `instructflow worker` (or use --with-worker)", cfg.Temporal.TaskQueue, timeout)
		}
		return res, fmt.Errorf("check: preflight workflow %s: %w", run.GetID(), err)
	}
	return res, nil
}

func writePreflight(w io.Writer, cfg config.Config, res workflows.PreflightResult) error {
	fmt.Fprintf(w, "temporal  ok  %s namespace %s, task queue %s (worker on %s)\n", cfg.Temporal.Address, cfg.Temporal.Namespace, res.TaskQueue, res.Worker)
	fmt.Fprintf(w, "postgres  ok  schema version %d\n", res.SchemaVersion)
	fmt.Fprintf(w, "s3        ok  %s bucket %s: wrote, read back and deleted %d bytes\n", cfg.S3.Endpoint, cfg.S3.Bucket, res.ObjectBytes)
	return nil
}
