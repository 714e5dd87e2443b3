package control

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/instructflow/instructflow/internal/printable"
	"github.com/instructflow/instructflow/preference"
	"github.com/instructflow/instructflow/runstate"
	"github.com/instructflow/instructflow/workflows"
)

// WriteText writes the report as `run report` prints it.
func (r Report) WriteText(out io.Writer) error {
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
		detail := MetricsLine(res.Metrics)
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
	for _, st := range r.Stages {
		if share, ok := sum[st.Name+"_overhead_share"]; ok {
			wall, _ := r.stageWall(runstate.Stage(st.Name))
			fmt.Fprintf(out, "%s ran on an external trainer: %.1fs wall, %.1fs in its processes (all attempts); orchestration overhead %.2fs = %.2f%% of the stage\n",
				st.Name, wall, r.Results[st.Name].Seconds, sum[st.Name+"_overhead_seconds"], 100*share)
		}
	}
	if p := r.Pipeline; p != nil {
		fmt.Fprintf(out, "time: %.1fs wall, %.1fs in trainers, %.1fs waiting for people; orchestration overhead %.1fs = %.1f%% of the run\n",
			p.WallSeconds, p.TrainerSeconds, p.WaitSeconds, p.OverheadSeconds, 100*p.OverheadShare)
	}
	_, err := fmt.Fprintf(out, "checkpoints: %s/runs/%s/\nTemporal UI: %s\n", r.Bucket, r.Run, r.UI)
	return err
}

// MetricsLine shows the metrics users read first, in a fixed order.
func MetricsLine(m map[string]float64) string {
	var parts []string
	for _, k := range []string{"loss", "heldout_loss", "accuracy", "score_mean", "kl", "beta", "labeled", "items", "comparisons", "win_rate"} {
		v, ok := m[k]
		switch {
		case !ok:
		case v == math.Trunc(v) && math.Abs(v) < 1e12:
			parts = append(parts, fmt.Sprintf("%s %d", k, int64(v)))
		default:
			parts = append(parts, fmt.Sprintf("%s %.4g", k, v))
		}
	}
	return strings.Join(parts, "  ")
}

// ProgressLines are a run's live progress as `run watch` draws it: one
// line per stage, with a bar for the running one.
func ProgressLines(p workflows.Progress) []string {
	lines := []string{fmt.Sprintf("run %s: %s", p.Run, p.Status)}
	for _, st := range p.Stages {
		line := fmt.Sprintf("  %-9s %-10s", st.Name, st.Status)
		switch {
		case st.Name == p.Stage && st.Status == runstate.Running && p.Total > 0:
			line += fmt.Sprintf(" %s %d/%d eta %s %s", bar(p.Step, p.Total, 24), p.Step, p.Total, ETA(p.ETASeconds), MetricsLine(p.Metrics))
		case st.Result != nil:
			line += fmt.Sprintf(" %s %s", bar(1, 1, 24), MetricsLine(st.Result.Metrics))
		case st.Error != "":
			line += " " + st.Error
		}
		lines = append(lines, line)
	}
	if p.Gate != "" {
		lines = append(lines, "  "+p.Gate)
	}
	return lines
}

// bar draws step of total in width characters.
func bar(step, total int64, width int) string {
	n := 0
	if total > 0 {
		n = int(min(step, total) * int64(width) / total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

// ETA says how long seconds is, for people.
func ETA(seconds float64) string {
	if seconds <= 0 {
		return "?"
	}
	return (time.Duration(seconds) * time.Second).String()
}
