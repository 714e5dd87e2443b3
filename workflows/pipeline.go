package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
)

// Names of the pipeline's query and updates.
const (
	ProgressQuery = "progress" // -> Progress
	PauseUpdate   = "pause"    // stop the running stage now; on unpause it continues from its last checkpoint
	UnpauseUpdate = "unpause"
	ApproveUpdate = "approve" // let PPO start although the reward model missed the gate
)

// PipelineInput is the input of Pipeline.
type PipelineInput struct {
	Spec runspec.Spec `json:"spec"`
	// GateApproved: a person approved PPO in an earlier execution of the
	// run (a resume does not ask again).
	GateApproved bool `json:"gate_approved,omitempty"`
}

// StageState is one stage as the pipeline sees it.
type StageState struct {
	Name     runstate.Stage          `json:"name"`
	Status   runstate.Status         `json:"status"` // one of runstate.StageStatuses
	Result   *activities.StageResult `json:"result,omitempty"`
	Error    string                  `json:"error,omitempty"`
	Started  time.Time               `json:"started,omitzero"`
	Finished time.Time               `json:"finished,omitzero"`
}

// Report is the pipeline's result: every stage, and where the wall time
// went. Overhead is the wall time outside the trainers (and outside waits
// for people: labels, approval, pause), as a share of the wall time minus
// those waits.
type Report struct {
	Run             string          `json:"run"`
	Status          runstate.Status `json:"status"`
	Stages          []StageState    `json:"stages"`
	Started         time.Time       `json:"started"`
	Finished        time.Time       `json:"finished,omitzero"`
	WallSeconds     float64         `json:"wall_seconds"`
	TrainerSeconds  float64         `json:"trainer_seconds"`
	WaitSeconds     float64         `json:"wait_seconds"`
	OverheadSeconds float64         `json:"overhead_seconds"`
	OverheadShare   float64         `json:"overhead_share"`
}

// Progress is the answer to the progress query. The workflow knows its
// stages; the running stage's step, total, metrics, attempt and ETA live
// in that activity's heartbeat (the workflow gets no progress signals, so a
// stage may run for weeks without growing the history), and the CLI adds
// them from the pending activity.
type Progress struct {
	Run     string             `json:"run"`
	Status  runstate.Status    `json:"status"` // running, paused, waiting for approval, succeeded, failed, cancelled
	Stage   runstate.Stage     `json:"stage,omitempty"`
	Step    int64              `json:"step"`
	Total   int64              `json:"total"`
	Attempt int32              `json:"attempt,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// ETASeconds is the running stage's time left at its recent pace
	// (0 when unknown).
	ETASeconds float64      `json:"eta_seconds"`
	Gate       string       `json:"gate,omitempty"` // why the run waits for approval
	Stages     []StageState `json:"stages"`
}

// pipeline is the workflow's state.
type pipeline struct {
	spec        runspec.Spec
	started     time.Time
	status      runstate.Status
	stages      []StageState
	current     int // index of the running stage, -1 before the first
	paused      bool
	pauses      int // pause updates so far: a cancel caused by one re-runs the stage
	pausedAt    time.Time
	cancelStage workflow.CancelFunc
	gate        string
	approved    bool
	waited      time.Duration // pause and gate
}

// Pipeline runs an InstructGPT run as one durable execution: SFT ->
// (optional) label collection -> label snapshot -> reward model -> gate ->
// PPO -> evaluation. Each stage is an activity with the id <run>/<stage>;
// payloads carry ids, keys and hashes. Stages that finished in an earlier
// execution of the same run are reused, and the unfinished one continues
// from its last committed checkpoint.
func Pipeline(ctx workflow.Context, in PipelineInput) (Report, error) {
	s := in.Spec
	p := &pipeline{spec: s, started: workflow.Now(ctx), status: runstate.Running, current: -1, approved: in.GateApproved}
	for _, name := range runstate.Stages {
		if name == runstate.Labels && !s.Labels.Collect || name == runstate.Eval && s.Eval.Samples == 0 {
			continue
		}
		p.stages = append(p.stages, StageState{Name: name, Status: runstate.Pending})
	}
	if err := p.handlers(ctx); err != nil {
		return Report{}, err
	}
	err := p.run(ctx)
	p.status = runstate.Succeeded
	if err != nil {
		p.status = runstate.Failed
		var canceled *temporal.CanceledError
		if errors.As(err, &canceled) || errors.Is(ctx.Err(), workflow.ErrCanceled) {
			p.status = runstate.Cancelled
		}
	}
	rep := p.report(workflow.Now(ctx))
	data, _ := json.Marshal(rep)
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, bookkeeping(s))
	var a *activities.Activities
	if err != nil && p.current >= 0 && p.stages[p.current].Status != runstate.Succeeded {
		_ = workflow.ExecuteActivity(dctx, a.RecordStage, activities.StageStatusInput{
			Run: s.ID, Stage: p.stages[p.current].Name, Status: p.stages[p.current].Status, Error: p.stages[p.current].Error}).Get(dctx, nil)
	}
	if rerr := workflow.ExecuteActivity(dctx, a.EndRun, activities.EndRunInput{
		Run: s.ID, Status: p.status, Report: data, Error: message(err)}).Get(dctx, nil); rerr != nil && err == nil {
		err = rerr
	}
	return rep, err
}

func (p *pipeline) run(ctx workflow.Context) error {
	s := p.spec
	var a *activities.Activities
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, bookkeeping(s)), a.BeginRun,
		activities.RunInput{Spec: s}).Get(ctx, nil); err != nil {
		return err
	}
	in := activities.StageInput{Spec: s}
	sft, err := p.stage(ctx, runstate.SFT, a.TrainSFT, in, s.Queues.SFT, 0)
	if err != nil {
		return err
	}
	in.SFT = sft.Checkpoint
	if s.Labels.Collect {
		in.Deadline = workflow.Now(ctx).Add(s.Labels.Deadline)
		labels, err := p.stage(ctx, runstate.Labels, a.CollectLabels, in, s.Queues.Labels, s.Labels.Deadline+time.Hour)
		if err != nil {
			return err
		}
		in.Batch = labels.Batch
	}
	snap, err := p.stage(ctx, runstate.Snapshot, a.SnapshotLabels, in, "", 0)
	if err != nil {
		return err
	}
	in.Snapshot = snap.Snapshot
	rm, err := p.stage(ctx, runstate.RM, a.TrainRM, in, s.Queues.RM, 0)
	if err != nil {
		return err
	}
	in.RM = rm.Checkpoint
	if err := p.awaitGate(ctx, rm); err != nil {
		return err
	}
	ppo, err := p.stage(ctx, runstate.PPO, a.TrainPPO, in, s.Queues.PPO, 0)
	if err != nil {
		return err
	}
	in.PPO = ppo.Checkpoint
	if s.Eval.Samples > 0 {
		var timeout time.Duration
		// The evaluation waits for people's labels, as label collection does.
		// (No GetVersion: runs started before eval.human existed have it
		// false and schedule the same commands as before.)
		if s.Eval.Human {
			in.Deadline, timeout = workflow.Now(ctx).Add(s.Labels.Deadline), s.Labels.Deadline+time.Hour
		}
		if _, err := p.stage(ctx, runstate.Eval, a.Evaluate, in, s.Queues.Eval, timeout); err != nil {
			return err
		}
	}
	return nil
}

// stage runs one stage activity. A pause cancels the running attempt (which
// stops after its last committed checkpoint) and runs the stage again once
// unpaused.
func (p *pipeline) stage(ctx workflow.Context, name runstate.Stage, fn any, in activities.StageInput, queue string, timeout time.Duration) (activities.StageResult, error) {
	p.current = p.index(name)
	st := &p.stages[p.current]
	st.Status, st.Started = runstate.Running, workflow.Now(ctx)
	if timeout == 0 {
		timeout = 7 * 24 * time.Hour
	}
	opts := workflow.ActivityOptions{
		ActivityID:          p.spec.ID + "/" + string(name),
		TaskQueue:           queue,
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    p.spec.Retry.HeartbeatTimeout,
		WaitForCancellation: true,
		RetryPolicy:         retryPolicy(p.spec),
	}
	for {
		if err := workflow.Await(ctx, func() bool { return !p.paused }); err != nil {
			st.Status = runstate.Cancelled
			return activities.StageResult{}, err
		}
		actx, cancel := workflow.WithCancel(workflow.WithActivityOptions(ctx, opts))
		p.cancelStage = cancel
		pauses := p.pauses
		var res activities.StageResult
		err := workflow.ExecuteActivity(actx, fn, in).Get(actx, &res)
		p.cancelStage = nil
		cancel()
		var canceled *temporal.CanceledError
		if err != nil && p.pauses != pauses && ctx.Err() == nil && errors.As(err, &canceled) {
			continue // cancelled by a pause (perhaps already unpaused): run it again
		}
		if err != nil {
			st.Status, st.Error = runstate.Failed, message(err)
			if ctx.Err() != nil || errors.As(err, &canceled) {
				st.Status = runstate.Cancelled
			}
			return res, err
		}
		st.Status, st.Result, st.Finished = runstate.Succeeded, &res, workflow.Now(ctx)
		return res, nil
	}
}

// awaitGate lets PPO start when the reward model's held-out accuracy meets
// the gate, or else waits (durably, as long as it takes) for an approval.
func (p *pipeline) awaitGate(ctx workflow.Context, rm activities.StageResult) error {
	p.current = p.index(runstate.Gate)
	st := &p.stages[p.current]
	st.Started = workflow.Now(ctx)
	acc, min := rm.Metrics["accuracy"], p.spec.Gate.MinRMAccuracy
	if acc >= min || p.approved {
		st.Status, st.Finished = runstate.Succeeded, st.Started
		return nil
	}
	p.gate = fmt.Sprintf("reward model held-out accuracy %.3f is below gate.min_rm_accuracy %.3f; approve with `instructflow run approve %s` or cancel",
		acc, min, p.spec.ID)
	st.Status = runstate.Waiting
	p.status = runstate.WaitingForApproval
	bctx := workflow.WithActivityOptions(ctx, bookkeeping(p.spec))
	var a *activities.Activities
	record := func(stage, run runstate.Status) error {
		if err := workflow.ExecuteActivity(bctx, a.RecordStage, activities.StageStatusInput{
			Run: p.spec.ID, Stage: runstate.Gate, Status: stage, Error: p.gate}).Get(bctx, nil); err != nil {
			return err
		}
		return workflow.ExecuteActivity(bctx, a.EndRun, activities.EndRunInput{Run: p.spec.ID, Status: run}).Get(bctx, nil)
	}
	if err := record(runstate.Waiting, runstate.Waiting); err != nil {
		return err
	}
	began := workflow.Now(ctx)
	if err := workflow.Await(ctx, func() bool { return p.approved }); err != nil {
		st.Status = runstate.Cancelled
		return err
	}
	p.waited += workflow.Now(ctx).Sub(began)
	p.status, p.gate = runstate.Running, ""
	st.Status, st.Finished = runstate.Succeeded, workflow.Now(ctx)
	return record(runstate.Succeeded, runstate.Running)
}

// handlers registers the progress query and the updates. Progress signals
// that workers of earlier versions sent stay unhandled: they change no
// state, so histories that hold them still replay.
func (p *pipeline) handlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) {
		return p.view(), nil
	}); err != nil {
		return err
	}
	noArg := func(check func() error) workflow.UpdateHandlerOptions {
		return workflow.UpdateHandlerOptions{Validator: func() error { return check() }}
	}
	running := func() error {
		if p.status != runstate.Running && p.status != runstate.Paused && p.status != runstate.WaitingForApproval {
			return fmt.Errorf("run %s is %s", p.spec.ID, p.status)
		}
		return nil
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, PauseUpdate, func(ctx workflow.Context) (Progress, error) {
		if !p.paused {
			p.paused, p.pausedAt = true, workflow.Now(ctx)
			p.pauses++
			if p.cancelStage != nil {
				p.cancelStage()
			}
		}
		return p.view(), nil
	}, noArg(running)); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UnpauseUpdate, func(ctx workflow.Context) (Progress, error) {
		if p.paused {
			p.paused = false
			if p.gate == "" { // a wait at the gate is counted there
				p.waited += workflow.Now(ctx).Sub(p.pausedAt)
			}
		}
		return p.view(), nil
	}, noArg(running)); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, ApproveUpdate, func(ctx workflow.Context) (Progress, error) {
		p.approved = true
		return p.view(), nil
	}, noArg(func() error {
		if p.gate == "" {
			return fmt.Errorf("run %s is not waiting for approval (it is %s)", p.spec.ID, p.status)
		}
		return nil
	})); err != nil {
		return err
	}
	return nil
}

func (p *pipeline) view() Progress {
	v := Progress{Run: p.spec.ID, Status: p.status, Gate: p.gate, Stages: p.stages}
	if p.paused && p.status == runstate.Running {
		v.Status = runstate.Paused
	}
	if p.current >= 0 {
		v.Stage = p.stages[p.current].Name
	}
	return v
}

func (p *pipeline) report(now time.Time) Report {
	r := Report{Run: p.spec.ID, Status: p.status, Stages: p.stages, Started: p.started, Finished: now,
		WallSeconds: now.Sub(p.started).Seconds(), WaitSeconds: p.waited.Seconds()}
	for _, st := range p.stages {
		if st.Result != nil && !st.Result.Reused {
			r.TrainerSeconds += st.Result.Seconds
			r.WaitSeconds += st.Result.WaitSeconds
		}
	}
	r.OverheadSeconds = max(0, r.WallSeconds-r.TrainerSeconds-r.WaitSeconds)
	if busy := r.WallSeconds - r.WaitSeconds; busy > 0 {
		r.OverheadShare = r.OverheadSeconds / busy
	}
	return r
}

func (p *pipeline) index(name runstate.Stage) int {
	for i, st := range p.stages {
		if st.Name == name {
			return i
		}
	}
	panic("workflows: no stage " + string(name))
}

// bookkeeping are the options of the short activities that record status:
// retried until Postgres answers.
func bookkeeping(s runspec.Spec) workflow.ActivityOptions {
	return workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second, RetryPolicy: retryPolicy(s)}
}

func retryPolicy(s runspec.Spec) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        s.Retry.MaxInterval,
		MaximumAttempts:        int32(s.Retry.MaxAttempts),
		NonRetryableErrorTypes: []string{activities.ErrTypeBadInput},
	}
}

// message is the innermost message of a workflow error: what went wrong,
// without Temporal's wrapping.
func message(err error) string {
	if err == nil {
		return ""
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) {
		return string(runstate.Cancelled)
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
