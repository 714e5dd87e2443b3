package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
)

func newRunReportCmd(a *app) *cobra.Command {
	var samples int
	cmd := runCmd(a, "report", "Show a run's report: per-stage time and results, win rates with intervals, samples, checkpoints, overhead",
		func(cmd *cobra.Command, c *control.Client, run string) error {
			if samples < 0 {
				return errkind.BadInputf("run report: --samples %d: use 0 or more", samples)
			}
			r, err := c.Report(cmd.Context(), run)
			if err != nil {
				return err
			}
			out := struct {
				control.Report
				Samples []activities.SideBySide `json:"samples,omitempty"`
			}{Report: r}
			if samples > 0 {
				if out.Samples, err = a.evalSamples(cmd.Context(), run, samples); err != nil {
					return err
				}
			}
			return a.printer(cmd).Print(out, func(w io.Writer) error {
				if err := r.WriteText(w); err != nil {
					return err
				}
				return writeSamples(w, out.Samples)
			})
		})
	cmd.Flags().IntVar(&samples, "samples", 0, "also show the first N side-by-side samples of the evaluation (prompt, SFT and PPO responses, scores)")
	return cmd
}

// evalSamples reads the first n side-by-side samples the run's evaluation
// stored.
func (a *app) evalSamples(ctx context.Context, run string, n int) ([]activities.SideBySide, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	objects, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	key, err := activities.SamplesKey(run)
	if err != nil {
		return nil, errkind.BadInputf("run report: %v", err)
	}
	rc, err := objects.Open(ctx, key)
	if errors.Is(err, errkind.NotFound) {
		return nil, errkind.BadInputf("run report: run %s has no evaluation samples (its eval stage has not finished, or eval.samples is 0)", run)
	}
	if err != nil {
		return nil, fmt.Errorf("run report: samples: %w", err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	var out []activities.SideBySide
	for len(out) < n {
		var r activities.SideBySide
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("run report: samples %s: %w", key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// writeSamples prints side-by-side samples.
func writeSamples(w io.Writer, rows []activities.SideBySide) error {
	for i, r := range rows {
		fmt.Fprintf(w, "sample %d\n  prompt: %s\n  sft:    %s\n  ppo:    %s\n", i+1, clip(r.Prompt), clip(r.SFT), clip(r.PPO))
		for _, j := range slices.Sorted(maps.Keys(r.Scores)) {
			fmt.Fprintf(w, "  %-6s  sft %.3f  ppo %.3f\n", j+":", r.Scores[j][0], r.Scores[j][1])
		}
	}
	return nil
}

func newRunListCmd(a *app) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			runs, err := db.Runs(cmd.Context(), limit)
			if err != nil {
				return err
			}
			for i := range runs {
				runs[i].Spec, runs[i].Result = nil, nil
			}
			return a.printer(cmd).Print(runs, func(w io.Writer) error { return writeRuns(w, runs) })
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "show at most this many runs")
	return cmd
}

func writeRuns(w io.Writer, runs []postgres.Run) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATUS\tCREATED\tUPDATED\tERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.CreatedAt.Local().Format(time.DateTime),
			r.UpdatedAt.Local().Format(time.DateTime), r.Error)
	}
	return tw.Flush()
}
