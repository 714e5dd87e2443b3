package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/instructflow/instructflow/preference"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/control"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/internal/printable"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
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
				if err := writeReport(w, r); err != nil {
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
		if n := sum["rm_heldout_pairs"]; n > 0 {
			lo, hi := preference.Wilson95(v, int64(n))
			fmt.Fprintf(out, "reward model: held-out accuracy %.1f%% (95%% CI %.1f-%.1f%%, %.0f pairs ordered as labeled)\n", 100*v, 100*lo, 100*hi, n)
		} else {
			fmt.Fprintf(out, "reward model: held-out accuracy %.1f%% (pairs ordered as labeled)\n", 100*v)
		}
	}
	for _, j := range []struct{ prefix, name, score string }{
		{"rm_", "the run's reward model", "rm"}, {"judge_", "the independent judge (eval.judge)", "judge"}, {"", "the task's gold judge", "gold"},
	} {
		v, ok := sum[j.prefix+"win_rate"]
		if !ok {
			continue
		}
		fmt.Fprintf(out, "PPO vs SFT under %s: win rate %.1f%% (95%% CI %.1f-%.1f%%, %.0f ties of %.0f samples), mean score %.3f -> %.3f\n",
			j.name, 100*v, 100*sum[j.prefix+"win_low"], 100*sum[j.prefix+"win_high"], sum[j.prefix+"ties"], sum["samples"], sum["sft_"+j.score], sum["ppo_"+j.score])
	}
	if v, ok := sum["human_win_rate"]; ok {
		fmt.Fprintf(out, "PPO vs SFT by people (eval.human): win rate %.1f%% (95%% CI %.1f-%.1f%%) from %.0f labels of %.0f items, %.0f ties, %.0f identical pairs counted as ties\n",
			100*v, 100*sum["human_win_low"], 100*sum["human_win_high"], sum["human_labels"], sum["human_items"], sum["human_ties"], sum["human_identical"])
	}
	if v, ok := sum["kl"]; ok {
		fmt.Fprintf(out, "PPO vs SFT: KL to SFT %.2f nats per response; mean response length %.1f -> %.1f tokens\n", v, sum["sft_tokens"], sum["ppo_tokens"])
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
