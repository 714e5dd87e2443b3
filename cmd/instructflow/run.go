package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/workflows"
)

func newRunCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Launch, follow, pause, approve, cancel, resume and report pipeline runs",
	}
	cmd.AddCommand(newRunStartCmd(a), newRunResumeCmd(a), newRunStatusCmd(a), newRunWatchCmd(a),
		newRunListCmd(a), newRunReportCmd(a), newRunCancelCmd(a),
		newRunUpdateCmd(a, "pause", workflows.PauseUpdate, "Pause a run: the running stage stops now and continues from its last checkpoint on unpause"),
		newRunUpdateCmd(a, "unpause", workflows.UnpauseUpdate, "Continue a paused run"),
		newRunUpdateCmd(a, "approve", workflows.ApproveUpdate, "Let a run waiting at its gate start PPO"))
	return cmd
}

// session is what the run commands use: the config, Postgres and Temporal.
type session struct {
	cfg config.Config
	db  *postgres.DB
	tc  client.Client
}

func (a *app) session(ctx context.Context) (*session, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	return newSession(ctx, cfg)
}

// newSession connects to the configuration's Postgres and Temporal.
func newSession(ctx context.Context, cfg config.Config) (*session, error) {
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		return nil, err
	}
	tc, err := dialTemporal(ctx, cfg.Temporal)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &session{cfg: cfg, db: db, tc: tc}, nil
}

func (s *session) close() { s.tc.Close(); s.db.Close() }

func newRunStartCmd(a *app) *cobra.Command {
	var file string
	var sets []string
	var wait, asJSON bool
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
			if spec.ID == "" {
				spec.ID = "run-" + time.Now().UTC().Format("20060102-150405")
			}
			if err := spec.Validate(); err != nil {
				return err
			}
			s, err := a.session(cmd.Context())
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.start(cmd.Context(), workflows.PipelineInput{Spec: spec}, false); err != nil {
				return err
			}
			return s.followOrPrint(cmd, spec.ID, wait, asJSON)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "run spec (YAML)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a setting, key=value (repeatable), e.g. ppo.policy_lr=1e-4")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run with live progress until it ends")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// start records the run (new, or with its spec updated for a resume) and
// starts a workflow execution with the run's id. A resume writes Postgres
// only once the new execution started (postgres.DB.ResumeRun).
func (s *session) start(ctx context.Context, in workflows.PipelineInput, resume bool) error {
	spec := in.Spec
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	execute := func(ctx context.Context) error {
		_, err := s.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID:                    spec.ID,
			TaskQueue:             s.cfg.Temporal.TaskQueue,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		}, workflows.Pipeline, in)
		if err != nil {
			return fmt.Errorf("run %s: start workflow: %w", spec.ID, err)
		}
		return nil
	}
	if resume {
		return s.db.ResumeRun(ctx, spec.ID, data, execute)
	}
	if _, err := s.db.GetRun(ctx, spec.ID); err == nil {
		return fmt.Errorf("run start: run %s exists; resume it with `instructflow run resume %s` or choose another id", spec.ID, spec.ID)
	}
	if err := s.db.CreateRun(ctx, spec.ID, data); err != nil {
		return err
	}
	if err := s.db.SetRunStatus(ctx, spec.ID, "pending", nil, ""); err != nil {
		return err
	}
	return execute(ctx)
}

func (s *session) followOrPrint(cmd *cobra.Command, run string, wait, asJSON bool) error {
	out := cmd.OutOrStdout()
	if !wait {
		if asJSON {
			return printJSON(out, map[string]string{"run": run, "status": "started", "ui": s.uiLink(run)})
		}
		fmt.Fprintf(out, "run %s started; follow it with `instructflow run watch %s` or in the Temporal UI: %s\n", run, run, s.uiLink(run))
		return nil
	}
	return s.watchAndReport(cmd.Context(), run, out, cmd.ErrOrStderr(), asJSON)
}

// watchAndReport shows progress until the run's execution ends, then the
// report; a failed or cancelled run is an error.
func (s *session) watchAndReport(ctx context.Context, run string, out, progress io.Writer, asJSON bool) error {
	if err := s.watch(ctx, run, progress); err != nil {
		return err
	}
	rec, err := s.db.GetRun(ctx, run)
	if err != nil {
		return err
	}
	if err := s.printReport(ctx, out, rec, asJSON); err != nil {
		return err
	}
	if rec.Status != "succeeded" {
		return fmt.Errorf("run %s %s: %s; fix it and `instructflow run resume %s [--set key=value]`", run, rec.Status, rec.Error, run)
	}
	return nil
}

func newRunResumeCmd(a *app) *cobra.Command {
	var sets []string
	var wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "resume RUN_ID",
		Short: "Start a new execution of a failed or cancelled run: finished stages are reused, the unfinished one continues from its last checkpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.session(cmd.Context())
			if err != nil {
				return err
			}
			defer s.close()
			spec, err := s.resume(cmd.Context(), args[0], sets)
			if err != nil {
				return err
			}
			return s.followOrPrint(cmd, spec.ID, wait, asJSON)
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "change a setting of an unfinished stage, key=value (repeatable)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run with live progress until it ends")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// resume starts a new execution of a run that does not run, with sets
// applied to its stored spec: finished stages are reused, the unfinished
// one continues from its last checkpoint. It refuses when it cannot tell
// whether the run still runs.
func (s *session) resume(ctx context.Context, id string, sets []string) (runspec.Spec, error) {
	rec, err := s.db.GetRun(ctx, id)
	if errors.Is(err, errkind.NotFound) {
		return runspec.Spec{}, fmt.Errorf("run resume: no run %s (list them with `instructflow run list`)", id)
	}
	if err != nil {
		return runspec.Spec{}, err
	}
	st, err := s.executionStatus(ctx, rec.ID)
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf): // no execution Temporal knows of (its history expired): none runs
	case err != nil:
		return runspec.Spec{}, fmt.Errorf("run resume: cannot tell whether run %s still runs, so it was not started again: %w", rec.ID, err)
	case st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return runspec.Spec{}, fmt.Errorf("run resume: run %s is still running; cancel it first or watch it", rec.ID)
	}
	var old runspec.Spec
	if err := json.Unmarshal(rec.Spec, &old); err != nil {
		return runspec.Spec{}, fmt.Errorf("run resume: stored spec of %s: %w", rec.ID, err)
	}
	spec := old
	if err := spec.Set(sets); err != nil {
		return runspec.Spec{}, err
	}
	if spec.ID != old.ID {
		return runspec.Spec{}, errors.New("run resume: the run id cannot change; start a new run instead")
	}
	if err := spec.Validate(); err != nil {
		return runspec.Spec{}, err
	}
	stages, err := s.db.Stages(ctx, rec.ID)
	if err != nil {
		return runspec.Spec{}, err
	}
	approved := false
	for _, key := range runspec.Changed(old, spec) {
		first := runspec.FirstAffected(key)
		for _, st := range stages {
			if first != "" && st.Status == "succeeded" && slices.Index(runspec.Stages, st.Name) >= slices.Index(runspec.Stages, first) {
				return runspec.Spec{}, fmt.Errorf("run resume: %s changes the result of stage %s, which already finished; start a new run (`run start`) to change it", key, st.Name)
			}
			if st.Name == "labels" && slices.Contains(runspec.SamplingKeys, key) {
				return runspec.Spec{}, fmt.Errorf("run resume: the labeling batch was already sampled with the old %s; start a new run to sample again", key)
			}
		}
	}
	for _, st := range stages {
		approved = approved || st.Name == "gate" && st.Status == "succeeded"
	}
	if err := s.start(ctx, workflows.PipelineInput{Spec: spec, GateApproved: approved}, true); err != nil {
		return runspec.Spec{}, err
	}
	return spec, nil
}

func (s *session) executionStatus(ctx context.Context, run string) (enumspb.WorkflowExecutionStatus, error) {
	d, err := s.tc.DescribeWorkflowExecution(ctx, run, "")
	if err != nil {
		return 0, err
	}
	return d.GetWorkflowExecutionInfo().GetStatus(), nil
}

// progress asks a running run for its progress, with the running stage's
// step, metrics, attempt and ETA from its latest heartbeat (the workflow
// itself gets no progress: that would grow its history); live=false when
// no execution of the run is running. An error with live=true means the run
// runs but no worker answered the query.
func (s *session) progress(ctx context.Context, run string) (workflows.Progress, bool, error) {
	var p workflows.Progress
	d, err := s.tc.DescribeWorkflowExecution(ctx, run, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("run %s: %w", run, err)
	}
	if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return p, false, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := s.tc.QueryWorkflow(qctx, run, "", workflows.ProgressQuery)
	if err == nil {
		err = v.Get(&p)
	}
	if err != nil {
		return p, true, fmt.Errorf("run %s: no worker answered the progress query (is `instructflow worker` running on task queue %q?): %w", run, s.cfg.Temporal.TaskQueue, err)
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityId() != run+"/"+p.Stage || pa.GetHeartbeatDetails() == nil {
			continue
		}
		var hb activities.Heartbeat
		if converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &hb) == nil && hb.Step >= p.Step {
			p.Step, p.Total, p.Metrics, p.Attempt = hb.Step, hb.Total, hb.Metrics, pa.GetAttempt()
			if p.Status == "running" {
				p.ETASeconds = hb.ETASeconds()
			}
		}
	}
	return p, true, nil
}

func newRunStatusCmd(a *app) *cobra.Command {
	return runCmd(a, "status", "Show a run's stages, the running one's step, metrics and ETA",
		func(cmd *cobra.Command, s *session, run string, asJSON bool) error {
			ctx := cmd.Context()
			rec, err := s.db.GetRun(ctx, run)
			if err != nil {
				return fmt.Errorf("run status: %w", err)
			}
			p, live, perr := s.progress(ctx, rec.ID)
			if perr != nil && !live {
				return perr
			}
			if perr != nil { // the run runs, but its workflow did not answer: show the records
				live = false
				fmt.Fprintln(cmd.ErrOrStderr(), perr)
			}
			stages, err := s.db.Stages(ctx, rec.ID)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"run": rec, "live": live, "progress": p, "stages": stages})
			}
			out := cmd.OutOrStdout()
			status := rec.Status
			if live {
				status = p.Status
			}
			fmt.Fprintf(out, "run %s: %s\n", rec.ID, status)
			if p.Gate != "" {
				fmt.Fprintf(out, "gate: %s\n", p.Gate)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STAGE\tSTATUS\tATTEMPTS\tPROGRESS\tDETAIL")
			for _, st := range stages {
				prog := ""
				if live && p.Stage == st.Name && p.Total > 0 {
					prog = fmt.Sprintf("%d/%d eta %s", p.Step, p.Total, eta(p.ETASeconds))
				}
				detail := st.Error
				if detail == "" && live && p.Stage == st.Name {
					detail = metricsLine(p.Metrics)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", st.Name, st.Status, st.Attempts, prog, detail)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if rec.Error != "" {
				fmt.Fprintf(out, "error: %s\n", rec.Error)
			}
			return nil
		})
}

func newRunWatchCmd(a *app) *cobra.Command {
	return runCmd(a, "watch", "Show live progress bars per stage until the run ends, then its report",
		func(cmd *cobra.Command, s *session, run string, asJSON bool) error {
			return s.watchAndReport(cmd.Context(), run, cmd.OutOrStdout(), cmd.ErrOrStderr(), asJSON)
		})
}

// runCmd builds `run <use> RUN_ID [--json]`; do gets a session.
func runCmd(a *app, use, short string, do func(cmd *cobra.Command, s *session, run string, asJSON bool) error) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use + " RUN_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.session(cmd.Context())
			if err != nil {
				return err
			}
			defer s.close()
			return do(cmd, s, args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// watch draws the progress of every stage until no execution of the run is
// running: redrawn in place on a terminal, a line per change otherwise.
func (s *session) watch(ctx context.Context, run string, w io.Writer) error {
	tty := isTerminal(w)
	drawn, last := 0, ""
	var lastLine time.Time
	for {
		p, live, err := s.progress(ctx, run)
		if !live {
			return err
		}
		lines := progressLines(p)
		if err != nil {
			lines = []string{err.Error()}
		}
		if tty {
			if drawn > 0 {
				fmt.Fprintf(w, "\033[%dA", drawn)
			}
			for _, l := range lines {
				fmt.Fprintf(w, "\033[2K%s\n", l)
			}
			drawn = len(lines)
		} else if cur := strings.Join(lines, "\n"); p.Stage+p.Status != last || time.Since(lastLine) >= 15*time.Second {
			fmt.Fprintln(w, cur)
			last, lastLine = p.Stage+p.Status, time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func progressLines(p workflows.Progress) []string {
	lines := []string{fmt.Sprintf("run %s: %s", p.Run, p.Status)}
	for _, st := range p.Stages {
		line := fmt.Sprintf("  %-9s %-10s", st.Name, st.Status)
		switch {
		case st.Name == p.Stage && st.Status == "running" && p.Total > 0:
			line += fmt.Sprintf(" %s %d/%d eta %s %s", bar(p.Step, p.Total, 24), p.Step, p.Total, eta(p.ETASeconds), metricsLine(p.Metrics))
		case st.Result != nil:
			line += fmt.Sprintf(" %s %s", bar(1, 1, 24), metricsLine(st.Result.Metrics))
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

func bar(step, total int64, width int) string {
	n := 0
	if total > 0 {
		n = int(min(step, total) * int64(width) / total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

func eta(seconds float64) string {
	if seconds <= 0 {
		return "?"
	}
	return (time.Duration(seconds) * time.Second).String()
}

// metricsLine shows the metrics users read first, in a fixed order.
func metricsLine(m map[string]float64) string {
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

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newRunListCmd(a *app) *cobra.Command {
	var asJSON bool
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
			if asJSON {
				for i := range runs {
					runs[i].Spec, runs[i].Result = nil, nil
				}
				return printJSON(cmd.OutOrStdout(), runs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tSTATUS\tCREATED\tUPDATED\tERROR")
			for _, r := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.CreatedAt.Local().Format(time.DateTime),
					r.UpdatedAt.Local().Format(time.DateTime), r.Error)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().IntVar(&limit, "limit", 50, "show at most this many runs")
	return cmd
}

func newRunReportCmd(a *app) *cobra.Command {
	return runCmd(a, "report", "Show a run's report: per-stage time and results, checkpoints, orchestration overhead",
		func(cmd *cobra.Command, s *session, run string, asJSON bool) error {
			rec, err := s.db.GetRun(cmd.Context(), run)
			if err != nil {
				return fmt.Errorf("run report: %w", err)
			}
			return s.printReport(cmd.Context(), cmd.OutOrStdout(), rec, asJSON)
		})
}

// RunReport is what `run report --json` prints.
type RunReport struct {
	Run      string                            `json:"run"`
	Status   string                            `json:"status"`
	Error    string                            `json:"error,omitempty"`
	Pipeline *workflows.Report                 `json:"pipeline,omitempty"`
	Stages   []postgres.Stage                  `json:"stages"`
	Summary  map[string]float64                `json:"summary"`
	UI       string                            `json:"temporal_ui"`
	Bucket   string                            `json:"bucket"`
	results  map[string]activities.StageResult // decoded Stages[].Result, by stage
}

func (s *session) report(ctx context.Context, rec postgres.Run) (RunReport, error) {
	r := RunReport{Run: rec.ID, Status: rec.Status, Error: rec.Error, UI: s.uiLink(rec.ID), Bucket: s.cfg.S3.Endpoint + "/" + s.cfg.S3.Bucket,
		Summary: map[string]float64{}, results: map[string]activities.StageResult{}}
	if len(rec.Result) > 0 {
		r.Pipeline = &workflows.Report{}
		if err := json.Unmarshal(rec.Result, r.Pipeline); err != nil {
			return r, fmt.Errorf("run %s: stored report: %w", rec.ID, err)
		}
		r.Summary["overhead_share"] = r.Pipeline.OverheadShare
		r.Summary["wall_seconds"] = r.Pipeline.WallSeconds
	}
	var err error
	if r.Stages, err = s.db.Stages(ctx, rec.ID); err != nil {
		return r, err
	}
	for _, st := range r.Stages {
		var res activities.StageResult
		if len(st.Result) > 0 && json.Unmarshal(st.Result, &res) == nil {
			r.results[st.Name] = res
			switch st.Name {
			case "rm":
				r.Summary["rm_accuracy"] = res.Metrics["accuracy"]
			case "eval":
				for _, k := range []string{"win_rate", "kl", "sft_gold", "ppo_gold"} {
					r.Summary[k] = res.Metrics[k]
				}
			}
		}
	}
	return r, nil
}

func (s *session) printReport(ctx context.Context, out io.Writer, rec postgres.Run, asJSON bool) error {
	r, err := s.report(ctx, rec)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(out, r)
	}
	fmt.Fprintf(out, "run %s: %s\n", r.Run, r.Status)
	if r.Error != "" {
		fmt.Fprintf(out, "error: %s\n", r.Error)
	}
	started := map[string]workflows.StageState{}
	if p := r.Pipeline; p != nil {
		for _, st := range p.Stages {
			started[st.Name] = st
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tSTATUS\tTIME\tTRAINER\tATTEMPTS\tRESULT\tCHECKPOINT")
	for _, st := range r.Stages {
		res := r.results[st.Name]
		took := "-"
		if ws, ok := started[st.Name]; ok && !ws.Finished.IsZero() && !ws.Started.IsZero() {
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
	fmt.Fprintf(out, "checkpoints: %s/runs/%s/\nTemporal UI: %s\n", r.Bucket, r.Run, r.UI)
	return nil
}

func (s *session) uiLink(run string) string {
	host := s.cfg.Temporal.Address
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	return fmt.Sprintf("http://%s:%d/namespaces/%s/workflows/%s", host, s.cfg.Temporal.UIPort, s.cfg.Temporal.Namespace, run)
}

func newRunCancelCmd(a *app) *cobra.Command {
	return runCmd(a, "cancel", "Cancel a run: the running stage stops after its last checkpoint; `run resume` continues it later",
		func(cmd *cobra.Command, s *session, run string, asJSON bool) error {
			if err := s.tc.CancelWorkflow(cmd.Context(), run, ""); err != nil {
				return fmt.Errorf("run cancel %s: %w", run, err)
			}
			if err := s.watch(cmd.Context(), run, io.Discard); err != nil {
				return err
			}
			rec, err := s.db.GetRun(cmd.Context(), run)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]string{"run": rec.ID, "status": rec.Status})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "run %s: %s\n", rec.ID, rec.Status)
			return nil
		})
}

func newRunUpdateCmd(a *app, use, update, short string) *cobra.Command {
	return runCmd(a, use, short, func(cmd *cobra.Command, s *session, run string, asJSON bool) error {
		h, err := s.tc.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
			WorkflowID: run, UpdateName: update, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err != nil {
			return fmt.Errorf("run %s %s: %w", use, run, err)
		}
		var p workflows.Progress
		if err := h.Get(cmd.Context(), &p); err != nil {
			return fmt.Errorf("run %s %s: %w", use, run, err)
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), p)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "run %s: %s\n", p.Run, p.Status)
		return nil
	})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
