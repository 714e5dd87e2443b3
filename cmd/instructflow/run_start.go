package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/internal/printer"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
)

func newRunStartCmd(a *app) *cobra.Command {
	var file string
	var sets []string
	var wait bool
	cmd := &cobra.Command{
		Use:   "start -f run.yaml",
		Short: "Start a pipeline run from a run spec",
		Long: `start reads a run spec (YAML; the key "preset" picks the starting point, tiny
by default, and every other key overrides it), applies --set key=value, checks
every setting, records the run in Postgres and starts its workflow. With
--wait it shows live progress per stage until the run ends, then its report.

Keys: ` + strings.Join(runspec.Keys(), ", "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("run start: give the run spec with -f FILE (see examples/run.yaml)")
			}
			f, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("run start: %w", err)
			}
			spec, err := runspec.Read(f, file)
			f.Close()
			if err != nil {
				return err
			}
			if err := spec.Set(sets); err != nil {
				return err
			}
			c, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if spec, err = c.Start(cmd.Context(), spec); err != nil {
				return err
			}
			return followOrPrint(cmd, a.printer(cmd), c, spec.ID, wait)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "run spec (YAML)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a setting, key=value (repeatable), e.g. ppo.policy_lr=1e-4")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run with live progress until it ends")
	return cmd
}

func newRunResumeCmd(a *app) *cobra.Command {
	var sets []string
	var wait bool
	cmd := runCmd(a, "resume", "Start a new execution of a failed or cancelled run: finished stages are reused, the unfinished one continues from its last checkpoint",
		func(cmd *cobra.Command, c *control.Client, run string) error {
			spec, err := c.Resume(cmd.Context(), run, sets)
			if err != nil {
				return err
			}
			return followOrPrint(cmd, a.printer(cmd), c, spec.ID, wait)
		})
	cmd.Flags().StringArrayVar(&sets, "set", nil, "change a setting of an unfinished stage, key=value (repeatable)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run with live progress until it ends")
	return cmd
}

// followOrPrint says where a started run can be followed, or with wait
// follows it to its report.
func followOrPrint(cmd *cobra.Command, p printer.Printer, c *control.Client, run string, wait bool) error {
	if wait {
		return watchAndReport(cmd.Context(), p, cmd.ErrOrStderr(), c, run)
	}
	started := map[string]string{"run": run, "status": "started", "ui": c.UILink(run)}
	return p.Print(started, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "run %s started; follow it with `instructflow run watch %s` or in the Temporal UI: %s\n", run, run, c.UILink(run))
		return err
	})
}

// watchAndReport draws progress on progress until the run's execution
// ends, then prints the report; a failed or cancelled run is an error.
func watchAndReport(ctx context.Context, p printer.Printer, progress io.Writer, c *control.Client, run string) error {
	if err := watch(ctx, c, run, progress); err != nil {
		return err
	}
	r, err := c.Report(ctx, run)
	if err != nil {
		return err
	}
	if err := p.Print(r, func(w io.Writer) error { return r.WriteText(w) }); err != nil {
		return err
	}
	if runstate.Status(r.Status) != runstate.Succeeded {
		return fmt.Errorf("run %s %s: %s; fix it and `instructflow run resume %s [--set key=value]`", run, r.Status, r.Error, run)
	}
	return nil
}
