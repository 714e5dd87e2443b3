package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/instructflow/instructflow/demo"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/ppo"
	"github.com/instructflow/instructflow/rewardmodel"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/sft"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/storage/postgres"
	"github.com/instructflow/instructflow/tasks"
)

// ErrTypeBadInput is the application-error type of a user's mistake (bad
// setting, missing data): workflows do not retry it.
const ErrTypeBadInput = "BadInput"

// ErrTypeStalled is the application-error type of an attempt whose trainer
// reported no new step for the worker's stall timeout: it is retried.
const ErrTypeStalled = "Stalled"

// StageInput is the input of every stage activity: the spec and the
// results of earlier stages, as names and hashes.
type StageInput struct {
	Spec     runspec.Spec `json:"spec"`
	SFT      *Checkpoint  `json:"sft,omitempty"`
	RM       *Checkpoint  `json:"rm,omitempty"`
	PPO      *Checkpoint  `json:"ppo,omitempty"`
	Batch    string       `json:"batch,omitempty"`
	Snapshot string       `json:"snapshot,omitempty"`
	// Deadline is when label collection stops waiting.
	Deadline time.Time `json:"deadline,omitzero"`
}

// StageResult is what a stage produced; it is stored with the stage, so a
// resumed run reuses it instead of running the stage again.
type StageResult struct {
	Stage      string             `json:"stage"`
	Checkpoint *Checkpoint        `json:"checkpoint,omitempty"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	Batch      string             `json:"batch,omitempty"`
	Snapshot   string             `json:"snapshot,omitempty"`
	// Seconds is the time spent computing (training, sampling, judging)
	// and WaitSeconds waiting for labels, over all attempts (an attempt
	// that died counts up to its last heartbeat).
	Seconds     float64 `json:"seconds"`
	WaitSeconds float64 `json:"wait_seconds,omitempty"`
	// ResumedFrom is the step of the committed checkpoint the finishing
	// attempt continued from (0: it started from scratch).
	ResumedFrom int64 `json:"resumed_from"`
	// Reused: the stage had finished in an earlier execution of the run
	// with the same settings; nothing was done now.
	Reused bool `json:"reused,omitempty"`
	// Execution is the workflow execution (run id) that finished it.
	Execution string `json:"execution,omitempty"`
}

// RunInput is the input of BeginRun.
type RunInput struct {
	Spec runspec.Spec `json:"spec"`
}

// BeginRun records the run (or checks that the stored spec is this one)
// and marks it running.
func (a *Activities) BeginRun(ctx context.Context, in RunInput) error {
	spec, err := json.Marshal(in.Spec)
	if err != nil {
		return err
	}
	if err := a.DB.CreateRun(ctx, in.Spec.ID, spec); errors.Is(err, errkind.Conflict) {
		return badInput(err)
	} else if err != nil {
		return err
	}
	return a.DB.SetRunStatus(ctx, in.Spec.ID, "running", nil, "")
}

// EndRunInput is the input of EndRun.
type EndRunInput struct {
	Run    string          `json:"run"`
	Status string          `json:"status"`
	Report json.RawMessage `json:"report,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// EndRun records how the run ended, with its report.
func (a *Activities) EndRun(ctx context.Context, in EndRunInput) error {
	return a.DB.SetRunStatus(ctx, in.Run, in.Status, in.Report, in.Error)
}

// StageStatusInput is the input of RecordStage.
type StageStatusInput struct {
	Run, Stage, Status, Error string
}

// RecordStage records a stage's status set by the workflow: waiting at a
// gate, failed after its retries, cancelled.
func (a *Activities) RecordStage(ctx context.Context, in StageStatusInput) error {
	return a.DB.EndStage(ctx, in.Run, in.Stage, in.Status, in.Error)
}

// TrainSFT runs supervised fine-tuning on the source's demonstrations.
func (a *Activities) TrainSFT(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, "sft", func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		tok := tasks.Tokenizer()
		train, err := a.demonstrations(ctx, s.Data.Source, "train")
		if err != nil {
			return StageResult{}, err
		}
		if len(train) == 0 {
			return StageResult{}, errkind.BadInputf("sft: no demonstrations of train prompts with source %q in Postgres; load the demo task with `instructflow data load-demo`, or fix data.source", s.Data.Source)
		}
		heldout, err := a.demonstrations(ctx, s.Data.Source, "heldout")
		if err != nil {
			return StageResult{}, err
		}
		cfg := s.SFT
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		m := s.Model
		m.Vocab = tok.VocabSize()
		var res sft.Result
		err = t.timed(func() error {
			res, err = sft.Train(ctx, sft.Input{Config: cfg, Model: m, Tokenizer: tok, Train: train, Heldout: heldout},
				t.sink, t.progress)
			return err
		})
		return StageResult{Checkpoint: t.checkpoint(res.Step, res.Checkpoint), Metrics: map[string]float64{
			"steps": float64(res.Step), "tokens": float64(res.Tokens), "train_loss": res.TrainLoss, "heldout_loss": res.HeldoutLoss,
		}}, err
	})
}

// CollectLabels samples K responses per prompt from the SFT policy, stores
// them as the run's labeling batch, and waits until the batch has its
// comparisons or the deadline passes. A retried attempt finds the batch
// and only waits.
func (a *Activities) CollectLabels(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, "labels", func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		name := s.ID + "-labels"
		res := StageResult{Batch: name}
		b, err := a.DB.GetBatch(ctx, name)
		if errors.Is(err, errkind.NotFound) {
			err = t.timed(func() error {
				b, err = a.createBatch(ctx, s, name, in.SFT, in.Deadline)
				return err
			})
		}
		if errors.Is(err, errkind.Conflict) {
			return res, errkind.BadInputf("labels: %v; start a new run to sample again", err)
		}
		if err != nil {
			return res, err
		}
		stopWaiting := t.waiting()
		defer stopWaiting()
		reported := -1
		for {
			if b.Labeled != reported { // a report (metrics row, step counter) only when labels came
				_ = t.progress(stage.Report{Step: int64(b.Labeled), Total: int64(b.Items),
					Metrics: map[string]float64{"labeled": float64(b.Labeled), "items": float64(b.Items)}})
				reported = b.Labeled
			}
			if b.Labeled >= b.Items {
				break
			}
			if !time.Now().Before(in.Deadline) {
				if float64(b.Labeled) < s.Labels.MinLabeled*float64(b.Items) {
					return res, errkind.BadInputf("labels: %d of %d items of batch %s labeled by the deadline %s, below labels.min_labeled %.2f; add labels (e.g. `instructflow labels simulate --batch %s`) and `instructflow run resume %s`",
						b.Labeled, b.Items, name, in.Deadline.Format(time.RFC3339), s.Labels.MinLabeled, name, s.ID)
				}
				break
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(a.poll()):
			}
			if b, err = a.DB.GetBatch(ctx, name); err != nil {
				return res, err
			}
		}
		res.Metrics = map[string]float64{"items": float64(b.Items), "labeled": float64(b.Labeled)}
		return res, nil
	})
}

func (a *Activities) poll() time.Duration {
	if a.LabelPoll > 0 {
		return a.LabelPoll
	}
	return 2 * time.Second
}

// createBatch samples the batch's items from the SFT policy: Rounds passes
// over the first Prompts train prompts and one over the first
// HeldoutPrompts held-out prompts, K samples each, distinct ones kept.
func (a *Activities) createBatch(ctx context.Context, s runspec.Spec, name string, sftCP *Checkpoint, deadline time.Time) (postgres.Batch, error) {
	files, err := a.load(ctx, sftCP)
	if err != nil {
		return postgres.Batch{}, err
	}
	policy, err := stage.LoadModel(files, "")
	if err != nil {
		return postgres.Batch{}, err
	}
	policy.SetThreads(s.Threads)
	train, err := a.DB.Prompts(ctx, s.Data.Source, "train")
	if err != nil {
		return postgres.Batch{}, err
	}
	heldout, err := a.DB.Prompts(ctx, s.Data.Source, "heldout")
	if err != nil {
		return postgres.Batch{}, err
	}
	if s.Labels.Prompts > 0 {
		train = train[:min(len(train), s.Labels.Prompts)]
	}
	heldout = heldout[:min(len(heldout), s.Labels.HeldoutPrompts)]
	if len(train) == 0 || len(heldout) == 0 {
		return postgres.Batch{}, errkind.BadInputf("labels: source %q has %d train and %d held-out prompts; both are needed", s.Data.Source, len(train), len(heldout))
	}
	tok := tasks.Tokenizer()
	sc := model.SampleConfig{MaxTokens: s.Labels.MaxNewTokens, Temperature: s.Labels.Temperature}
	var items []postgres.BatchItem
	add := func(prompts []string, seed uint64) error {
		resps, err := demo.SampleResponses(policy, tok, prompts, s.Labels.K, sc, model.NewRNG(seed))
		if err != nil {
			return err
		}
		for i, p := range prompts {
			if len(resps[i]) >= 2 {
				items = append(items, postgres.BatchItem{Item: len(items), Prompt: p, Responses: resps[i]})
			}
		}
		return nil
	}
	for round := range s.Labels.Rounds {
		if err := add(train, s.Seed+100+uint64(round)); err != nil {
			return postgres.Batch{}, err
		}
	}
	if err := add(heldout, s.Seed+3); err != nil {
		return postgres.Batch{}, err
	}
	if len(items) == 0 {
		return postgres.Batch{}, errkind.BadInputf("labels: the SFT policy gave fewer than 2 distinct responses for every prompt; raise labels.temperature or labels.k")
	}
	return a.DB.CreateBatch(ctx, name, s.ID, deadline, items)
}

// SnapshotLabels freezes the reward model's comparisons: the named
// snapshot, or the run's batch (with the spec's filters) as <run>-rm.
func (a *Activities) SnapshotLabels(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, "snapshot", func(ctx context.Context, _ *tracker) (StageResult, error) {
		s := in.Spec
		name := s.Labels.Snapshot
		if name == "" {
			name = s.ID + "-rm"
		}
		want := postgres.SnapshotFilter{Batch: in.Batch, ExcludeLabelers: s.Labels.ExcludeLabelers, ExcludeFlagged: s.Labels.ExcludeFlagged}
		snap, err := a.DB.Snapshot(ctx, name)
		if errors.Is(err, errkind.NotFound) && s.Labels.Snapshot == "" {
			snap, err = a.DB.SnapshotWhere(ctx, name, want)
		} else if err == nil && s.Labels.Snapshot == "" && !snap.Filter.Equal(want) {
			// <run>-rm exists (a retried attempt, a resumed run) but is reused
			// only if it froze this run's batch with this run's filters.
			got, _ := json.Marshal(snap.Filter)
			exp, _ := json.Marshal(want)
			return StageResult{}, errkind.BadInputf("snapshot: %s exists but was not made from this run's labels: it selects %s, this run needs %s; name the snapshot to use in labels.snapshot, or start a new run id",
				name, got, exp)
		}
		if errors.Is(err, errkind.NotFound) {
			return StageResult{}, errkind.BadInputf("snapshot: %v; fix labels.snapshot or labels.exclude_labelers", err)
		}
		if errors.Is(err, errkind.Corrupt) {
			return StageResult{}, errkind.BadInputf("snapshot: %v", err)
		}
		if err != nil {
			return StageResult{}, err
		}
		return StageResult{Snapshot: name, Metrics: map[string]float64{"comparisons": float64(len(snap.ComparisonIDs))}}, nil
	})
}

// TrainRM trains the reward model on the snapshot's train-split comparisons
// and evaluates it on the held-out ones.
func (a *Activities) TrainRM(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, "rm", func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		if err := a.DB.SetStageSnapshot(ctx, s.ID, "rm", in.Snapshot); err != nil {
			return StageResult{}, err
		}
		var train, heldout []rewardmodel.Comparison
		responses := map[int64]stage.Example{} // every response of the snapshot, for the audit's scores
		err := a.DB.ExportSnapshot(ctx, in.Snapshot, func(r postgres.ExportRow) error {
			for i, id := range r.ResponseIDs {
				responses[id] = stage.Example{Prompt: r.Prompt, Response: r.Responses[i]}
			}
			c := rewardmodel.Comparison{Prompt: r.Prompt, Responses: r.Responses, Ranks: make([]int, len(r.Ranks)), Labeler: r.Labeler}
			for i, rk := range r.Ranks {
				c.Ranks[i] = int(rk)
			}
			if r.Split == "train" {
				train = append(train, c)
			} else {
				heldout = append(heldout, c)
			}
			return nil
		})
		if err != nil {
			return StageResult{}, err
		}
		if len(train) == 0 || len(heldout) == 0 {
			return StageResult{}, errkind.BadInputf("rm: snapshot %s has %d comparisons of train prompts and %d of held-out ones; both are needed", in.Snapshot, len(train), len(heldout))
		}
		files, err := a.load(ctx, in.SFT)
		if err != nil {
			return StageResult{}, err
		}
		demos, err := a.demonstrations(ctx, s.Data.Source, "train")
		if err != nil {
			return StageResult{}, err
		}
		cfg := s.RM
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		var res rewardmodel.Result
		var ids []int64
		var scores []float64
		var rmKey string
		err = t.timed(func() error {
			if res, err = rewardmodel.Train(ctx, rewardmodel.Input{Config: cfg, SFT: files, Tokenizer: tasks.Tokenizer(),
				Train: train, Heldout: heldout, Demonstrations: demos}, t.sink, t.progress); err != nil {
				return err
			}
			rmKey, ids, scores, err = a.scoreResponses(ctx, t.sink, s, responses)
			return err
		})
		if err != nil {
			return StageResult{}, err
		}
		// The audit lists the labels the trained model most confidently
		// disagrees with from these scores (`labels audit --snapshot`).
		if err := a.DB.RecordRewardScores(ctx, in.Snapshot, rmKey, ids, scores); err != nil {
			return StageResult{}, err
		}
		return StageResult{Snapshot: in.Snapshot, Checkpoint: t.checkpoint(res.Step, res.Checkpoint), Metrics: map[string]float64{
			"steps": float64(res.Step), "train_loss": res.TrainLoss, "accuracy": res.Heldout.Accuracy,
			"heldout_pairs": float64(res.Heldout.Pairs), "heldout_loss": res.Heldout.Loss,
			"length_correlation": res.Heldout.LengthCorr, "train_comparisons": float64(len(train)),
		}}, err
	})
}

// scoreResponses scores every response with the stage's final reward
// model, in id order, and returns the model's checkpoint key.
func (a *Activities) scoreResponses(ctx context.Context, sink stage.Sink, s runspec.Spec, responses map[int64]stage.Example) (string, []int64, []float64, error) {
	cp, ok, err := sink.Latest(ctx)
	if err != nil {
		return "", nil, nil, fmt.Errorf("rm: final checkpoint: %w", err)
	}
	if !ok {
		return "", nil, nil, errors.New("rm: no final checkpoint after training")
	}
	rm, err := stage.LoadModel(cp.Files, "")
	if err != nil {
		return "", nil, nil, err
	}
	rm.SetThreads(s.Threads)
	key := Checkpoint{Run: s.ID, Stage: "rm", Step: cp.Step}.Key()
	ids := slices.Sorted(maps.Keys(responses))
	exs := make([]stage.Example, len(ids))
	for i, id := range ids {
		exs[i] = responses[id]
	}
	got, err := rewardmodel.ScoreExamples(rm, tasks.Tokenizer(), exs, 256)
	if err != nil {
		return "", nil, nil, err
	}
	scores := make([]float64, len(got))
	for i, v := range got {
		scores[i] = float64(v)
	}
	return key, ids, scores, nil
}

// TrainPPO optimises the SFT policy against the reward model.
func (a *Activities) TrainPPO(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, "ppo", func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		sftFiles, err := a.load(ctx, in.SFT)
		if err != nil {
			return StageResult{}, err
		}
		rmFiles, err := a.load(ctx, in.RM)
		if err != nil {
			return StageResult{}, err
		}
		prompts, err := a.DB.Prompts(ctx, s.Data.Source, "train")
		if err != nil {
			return StageResult{}, err
		}
		demos, err := a.demonstrations(ctx, s.Data.Source, "train")
		if err != nil {
			return StageResult{}, err
		}
		cfg := s.PPO
		cfg.Seed, cfg.Threads = s.Seed, s.Threads
		var res ppo.Result
		err = t.timed(func() error {
			res, err = ppo.Train(ctx, ppo.Input{Config: cfg, SFT: sftFiles, RM: rmFiles, Tokenizer: tasks.Tokenizer(),
				Prompts: prompts, Pretrain: demos}, t.sink, t.progress)
			return err
		})
		return StageResult{Checkpoint: t.checkpoint(res.Iteration, res.Checkpoint), Metrics: res.Metrics}, err
	})
}

// Evaluate judges the PPO policy against the SFT policy on held-out prompts
// with the task's gold judge, which no stage saw.
func (a *Activities) Evaluate(ctx context.Context, in StageInput) (StageResult, error) {
	return a.runStage(ctx, in.Spec, "eval", func(ctx context.Context, t *tracker) (StageResult, error) {
		s := in.Spec
		var ms [2]*model.Model
		for i, cp := range []*Checkpoint{in.SFT, in.PPO} {
			files, err := a.load(ctx, cp)
			if err != nil {
				return StageResult{}, err
			}
			if ms[i], err = stage.LoadModel(files, ""); err != nil {
				return StageResult{}, err
			}
			ms[i].SetThreads(s.Threads)
		}
		prompts, err := a.DB.Prompts(ctx, s.Data.Source, "heldout")
		if err != nil {
			return StageResult{}, err
		}
		var ev demo.Eval
		err = t.timed(func() error {
			ev, err = demo.Evaluate(ms[0], ms[1], tasks.Tokenizer(), prompts, s.Eval.Samples, s.PPO.MaxNewTokens, s.Seed+10)
			return err
		})
		return StageResult{Metrics: map[string]float64{
			"win_rate": ev.WinRate, "sft_gold": ev.RefGold, "ppo_gold": ev.Gold, "kl": ev.KL, "samples": float64(ev.Samples),
		}}, err
	})
}

// runStage is the frame of every stage activity: reuse the stored result
// of a stage that finished with the same settings; otherwise record the
// start, run work with a tracker (heartbeats, metrics, the checkpoint sink),
// and store the result. A user's mistake becomes a non-retryable error.
func (a *Activities) runStage(ctx context.Context, spec runspec.Spec, name string,
	work func(context.Context, *tracker) (StageResult, error),
) (StageResult, error) {
	run, hash := spec.ID, spec.StageHash(name)
	rec, err := a.DB.GetStage(ctx, run, name)
	switch {
	case err == nil && rec.Status == "succeeded" && rec.Result != nil:
		if rec.ConfigSHA256 != hash {
			return StageResult{}, badInput(fmt.Errorf("%s: the stage finished with other settings; start a new run to change them", name))
		}
		var res StageResult
		if err := json.Unmarshal(rec.Result, &res); err != nil {
			return StageResult{}, fmt.Errorf("%s: stored result: %w", name, err)
		}
		// A retry whose first completion was lost is not a reuse: the
		// work was done in this execution.
		res.Reused = res.Execution != activity.GetInfo(ctx).WorkflowExecution.RunID
		a.Metrics.ended(name, "reused")
		return res, nil
	case err != nil && !errors.Is(err, errkind.NotFound):
		return StageResult{}, err
	}
	if err := a.DB.BeginStage(ctx, run, name, hash); err != nil {
		return StageResult{}, err
	}
	sink, err := a.stageSink(ctx, run, name)
	if err != nil {
		return StageResult{}, badInput(err)
	}
	t := a.newTracker(ctx, run, name, sink)
	defer func() { // best effort on the way out; done already on success
		t.close()
		t.flush(ctx)
	}()
	a.Metrics.started(name, 1)
	defer a.Metrics.started(name, -1)
	res, err := a.watched(ctx, t, work)
	if errors.Is(err, errStalled) {
		a.Metrics.ended(name, "stalled")
		return StageResult{}, t.stallErr
	}
	if err != nil {
		if errors.Is(err, errkind.BadInput) {
			a.Metrics.ended(name, "bad_input")
			_ = a.DB.EndStage(ctx, run, name, "failed", err.Error())
			return StageResult{}, badInput(err)
		}
		a.Metrics.ended(name, "error")
		return StageResult{}, fmt.Errorf("%s: %w", name, err)
	}
	t.close() // no heartbeat or metrics write after this point but the final flush
	res.Stage, res.ResumedFrom = name, t.sink.resumedFrom()
	res.Seconds, res.WaitSeconds = t.totals()
	res.Execution = activity.GetInfo(ctx).WorkflowExecution.RunID
	t.flush(ctx)
	data, err := json.Marshal(res)
	if err != nil {
		return StageResult{}, err
	}
	key, sha := "", ""
	if res.Checkpoint != nil {
		key, sha = res.Checkpoint.Key(), res.Checkpoint.SHA256
	}
	if err := a.DB.FinishStage(ctx, run, name, data, key, sha); err != nil {
		return StageResult{}, err
	}
	a.Metrics.ended(name, "succeeded")
	return res, nil
}

// errStalled is what watched returns when the tracker's watchdog fired.
var errStalled = errors.New("stalled")

// watched runs work on a goroutine of its own and returns its result, or
// errStalled once the tracker sees no progress for the stall timeout. A
// stalled work's context is cancelled and it gets a short grace to return
// (shorter than the heartbeat timeout, so that the attempt fails with the
// stall's message, not as a heartbeat timeout); one that ignores its
// context is left behind, and the worker logs it.
func (a *Activities) watched(ctx context.Context, t *tracker, work func(context.Context, *tracker) (StageResult, error)) (StageResult, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		res      StageResult
		err      error
		panicked any
		ok       bool // work returned
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if !o.ok {
				o.panicked = recover()
			}
			done <- o
		}()
		o.res, o.err = work(wctx, t)
		o.ok = true
	}()
	select {
	case o := <-done:
		if !o.ok { // on the activity's goroutine, where the SDK fails the attempt with it
			panic(o.panicked)
		}
		return o.res, o.err
	case <-t.stalled:
	}
	cancel()
	grace := min(a.stallTimeout()/10, 5*time.Second)
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 {
		grace = min(grace, hb/2)
	}
	select {
	case <-done:
	case <-time.After(grace):
		t.log.Error("stalled stage did not stop when cancelled; it is left running (restart the worker to free its memory and CPU)",
			"run", t.run, "stage", t.stage)
	}
	return StageResult{}, errStalled
}

// badInput makes err a non-retryable application error with its message.
func badInput(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
}

func (a *Activities) demonstrations(ctx context.Context, source, split string) ([]stage.Example, error) {
	ps, err := a.DB.Demonstrations(ctx, source, split)
	if err != nil {
		return nil, err
	}
	out := make([]stage.Example, len(ps))
	for i, p := range ps {
		out[i] = stage.Example{Prompt: p.Prompt, Response: p.Response}
	}
	return out, nil
}
