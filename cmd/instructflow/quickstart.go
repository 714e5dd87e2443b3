package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/runspec"
)

func newQuickstartCmd(a *app) *cobra.Command {
	var preset, id string
	var sets []string
	var keep bool
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run the whole pipeline on the demo task on a local stack, with simulated labelers, and report",
		Long: `quickstart starts the local stack (as 'instructflow dev') and a worker in
this process, checks that every service answers (the Preflight workflow),
loads the demo task (string operations with a gold judge) into Postgres, and
runs the pipeline: SFT, label collection (the simulated labelers of
'labels simulate' rank the SFT policy's samples as they arrive), label
snapshot, reward model, gate, PPO and the gold-judge evaluation. It ends with
the run's report. Then it stops what it started, unless --keep; the data
stays in data_dir and 'instructflow dev' brings it back.

Presets: ` + strings.Join(runspec.Presets, ", "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			spec, err := runspec.Preset(preset)
			if err != nil {
				return err
			}
			spec.ID = id
			if spec.ID == "" {
				spec.ID = "quickstart-" + time.Now().UTC().Format("20060102-150405")
			}
			if err := spec.Set(sets); err != nil {
				return err
			}
			if err := spec.Validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			log := cmd.ErrOrStderr()
			st, err := startStack(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = st.Stop(stopCtx)
			}()
			_ = writeEndpoints(log, st.Endpoints())
			w, closeAll, err := startWorker(ctx, cfg, nil, slog.LevelError)
			if err != nil {
				return err
			}
			defer closeAll()
			defer w.Stop()
			printEngine(log, "quickstart")
			if _, err := preflight(ctx, cfg, time.Minute); err != nil {
				return err
			}
			c, err := control.Dial(ctx, cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			added, err := control.LoadDemoTask(ctx, c.DB)
			if err != nil {
				return err
			}
			fmt.Fprintf(log, "quickstart: demo task in Postgres (%d prompts added)\n", added)
			if _, err := c.Start(ctx, spec); err != nil {
				return err
			}
			fmt.Fprintf(log, "quickstart: run %s started (preset %s); Temporal UI: %s\n", spec.ID, preset, c.UILink(spec.ID))
			labelCtx, stopLabeling := context.WithCancel(ctx)
			labeling := make(chan error, 1)
			go func() { labeling <- control.LabelUntilDone(labelCtx, c.DB, spec.ID) }()
			err = watchAndReport(ctx, a.printer(cmd), log, c, spec.ID)
			stopLabeling()
			if lerr := <-labeling; lerr != nil && !errors.Is(lerr, context.Canceled) && err == nil {
				err = lerr
			}
			if ctx.Err() != nil {
				return fmt.Errorf("quickstart: interrupted; run %s is durable and goes on from its last checkpoint when a worker is back (`instructflow dev`, `instructflow worker`, then `instructflow labels simulate --run %s --wait 1m` if it waits for labels); `instructflow run cancel %s` stops it for good",
					spec.ID, spec.ID, spec.ID)
			}
			if err != nil {
				return err
			}
			if keep {
				fmt.Fprintf(log, "quickstart: the stack and the worker stay up; Ctrl-C stops them\n")
				<-ctx.Done()
			} else {
				fmt.Fprintf(log, "quickstart: stopping the stack; `instructflow dev` brings it back with every run, label and checkpoint\n")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&preset, "preset", "tiny", "run spec preset")
	cmd.Flags().StringVar(&id, "id", "", "run id (default quickstart-<time>)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a setting, key=value (repeatable)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the stack and worker running after the report")
	return cmd
}
