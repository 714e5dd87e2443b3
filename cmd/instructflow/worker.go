package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/devstack"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
)

func newWorkerCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run a Temporal worker for InstructFlow's workflows and activities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			w, closeAll, err := startWorker(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			fmt.Fprintf(cmd.ErrOrStderr(), "instructflow worker: polling task queue %q on %s\n", cfg.Temporal.TaskQueue, cfg.Temporal.Address)
			<-cmd.Context().Done()
			w.Stop() // waits for running activities up to WorkerStopTimeout
			return nil
		},
	}
}

// startWorker connects to everything an activity needs and starts a worker.
// closeAll releases the connections after the worker stopped.
func startWorker(ctx context.Context, cfg config.Config) (worker.Worker, func(), error) {
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		return nil, nil, err
	}
	store, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	c, err := dialTemporal(ctx, cfg.Temporal)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{WorkerStopTimeout: time.Minute})
	w.RegisterWorkflow(workflows.Preflight)
	w.RegisterActivity(&activities.Activities{DB: db, Objects: store})
	if err := w.Start(); err != nil {
		c.Close()
		db.Close()
		return nil, nil, fmt.Errorf("worker: start: %w", err)
	}
	return w, func() { c.Close(); db.Close() }, nil
}

// dialTemporal connects to the Temporal frontend or says how to start one.
func dialTemporal(ctx context.Context, cfg config.Temporal) (client.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.DialContext(dctx, client.Options{
		HostPort:  cfg.Address,
		Namespace: cfg.Namespace,
		Logger:    devstack.QuietTemporalLogger(),
	})
	if err != nil {
		hint := ""
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "Unavailable") {
			hint = " (is Temporal running? start the local stack with `instructflow dev`, or fix temporal.address)"
		}
		return nil, fmt.Errorf("temporal: connect to %s: %w%s", cfg.Address, err, hint)
	}
	return c, nil
}
