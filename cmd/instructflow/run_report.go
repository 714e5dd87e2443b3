package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/internal/printable"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
)

func newRunReportCmd(a *app) *cobra.Command {
	return runCmd(a, "report", "Show a run's report: per-stage time and results, checkpoints, orchestration overhead",
		func(cmd *cobra.Command, c *control.Client, run string) error {
			r, err := c.Report(cmd.Context(), run)
			if err != nil {
				return err
			}
			return a.printer(cmd).Print(r, func(w io.Writer) error { return writeReport(w, r) })
		})
}

func writeReport(out io.Writer, r control.Report) error {
	fmt.Fprintf(out, "run %s: %s\n", r.Run, r.Status)
	if b := r.Base; b != nil {
		fmt.Fprintf(out, "base model: %s (manifest sha256 %s, imported from %s)\n", b.Name, b.ManifestSHA, printable.String(b.Source))
	}
	if r.Error != "" {
		fmt.Fprintf(out, "error: %s\n", r.Error)
	}
	started := map[runstate.Stage]workflows.StageState{}
	if p := r.Pipeline; p != nil {
		for _, st := range p.Stages {
			started[st.Name] = st
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tSTATUS\tTIME\tTRAINER\tATTEMPTS\tRESULT\tCHECKPOINT")
	for _, st := range r.Stages {
		res := r.Results[st.Name]
		took := "-"
		if ws, ok := started[runstate.Stage(st.Name)]; ok && !ws.Finished.IsZero() && !ws.Started.IsZero() {
			took = fmt.Sprintf("%.1fs", ws.Finished.Sub(ws.Started).Seconds())
			if ws.Result != nil && ws.Result.Reused {
				took = "reused"
			}
		}
		cp := st.CheckpointKey
		if cp != "" && len(st.CheckpointSHA) >= 12 {
			cp += " (" + st.CheckpointSHA[:12] + ")"
		}
		detail := metricsLine(res.Metrics)
		if st.Error != "" {
			detail = st.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fs\t%d\t%s\t%s\n", st.Name, st.Status, took, res.Seconds, st.Attempts, detail, cp)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	sum := r.Summary
	if v, ok := sum["rm_accuracy"]; ok {
		fmt.Fprintf(out, "reward model: held-out accuracy %.1f%% (pairs ordered as labeled)\n", 100*v)
	}
	if v, ok := sum["win_rate"]; ok {
		fmt.Fprintf(out, "PPO vs SFT: gold-judge win rate %.1f%% on held-out prompts (mean gold %.3f -> %.3f), KL to SFT %.2f nats\n",
			100*v, sum["sft_gold"], sum["ppo_gold"], sum["kl"])
	}
	if p := r.Pipeline; p != nil {
		fmt.Fprintf(out, "time: %.1fs wall, %.1fs in trainers, %.1fs waiting for people; orchestration overhead %.1fs = %.1f%% of the run\n",
			p.WallSeconds, p.TrainerSeconds, p.WaitSeconds, p.OverheadSeconds, 100*p.OverheadShare)
	}
	_, err := fmt.Fprintf(out, "checkpoints: %s/runs/%s/\nTemporal UI: %s\n", r.Bucket, r.Run, r.UI)
	return err
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
