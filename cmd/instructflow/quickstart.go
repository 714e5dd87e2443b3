package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newQuickstartCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Start the local stack and a worker, and check end to end that all services answer",
		Long: `quickstart starts the local stack (as 'instructflow dev'), a worker in this
process, and runs the Preflight workflow: Temporal schedules it, the worker
runs it, and from the worker Postgres (migrated schema) and the object store
(write, read back, delete) must answer. Then it stops what it started; run
'instructflow dev' to keep the services up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			began := time.Now()
			st, err := startStack(ctx, cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = st.Stop(stopCtx)
			}()
			printEndpoints(out, st.Endpoints(), false)
			w, closeAll, err := startWorker(ctx, cfg)
			if err != nil {
				return err
			}
			defer closeAll()
			defer w.Stop()
			res, err := preflight(ctx, cfg, time.Minute)
			if err != nil {
				return err
			}
			if err := printPreflight(out, cfg, res, false); err != nil {
				return err
			}
			fmt.Fprintf(out, "quickstart: all services answer (%.1fs); Temporal Web UI: http://127.0.0.1:%d\n",
				time.Since(began).Seconds(), cfg.Temporal.UIPort)
			return nil
		},
	}
	return cmd
}
