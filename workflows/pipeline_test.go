package workflows

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/runstate"
)

// fakeStages stands in for the stage activities: each returns a result
// with a checkpoint named after its stage, records the order, and checks
// that it got its inputs from the stages before it.
type fakeStages struct {
	t        *testing.T
	order    []runstate.Stage
	accuracy float64
	fail     map[runstate.Stage]error
	ended    activities.EndRunInput
	recorded []activities.StageStatusInput
}

func (f *fakeStages) register(env *testsuite.TestWorkflowEnvironment) {
	var a *activities.Activities
	env.OnActivity(a.BeginRun, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.EndRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.EndRunInput) error {
		if in.Report != nil || in.Status != "waiting" && in.Status != "running" {
			f.ended = in
		}
		return nil
	})
	env.OnActivity(a.RecordStage, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StageStatusInput) error {
		f.recorded = append(f.recorded, in)
		return nil
	})
	stage := func(name runstate.Stage, need func(activities.StageInput) bool) func(context.Context, activities.StageInput) (activities.StageResult, error) {
		return func(_ context.Context, in activities.StageInput) (activities.StageResult, error) {
			f.order = append(f.order, name)
			if !need(in) {
				f.t.Errorf("%s got incomplete input %+v", name, in)
			}
			if err := f.fail[name]; err != nil {
				return activities.StageResult{}, err
			}
			res := activities.StageResult{Stage: name, Seconds: 1, Metrics: map[string]float64{}}
			switch name {
			case "sft", "rm", "ppo":
				res.Checkpoint = &activities.Checkpoint{Run: in.Spec.ID, Stage: name, Step: 10, SHA256: string(name) + "-sha"}
			case "labels":
				res.Batch, res.WaitSeconds = in.Spec.ID+"-labels", 5
			case "snapshot":
				res.Snapshot = in.Spec.ID + "-rm"
			}
			if name == "rm" {
				res.Metrics["accuracy"] = f.accuracy
			}
			return res, nil
		}
	}
	env.OnActivity(a.TrainSFT, mock.Anything, mock.Anything).Return(stage("sft", func(activities.StageInput) bool { return true }))
	env.OnActivity(a.CollectLabels, mock.Anything, mock.Anything).Return(stage("labels", func(in activities.StageInput) bool {
		return in.SFT != nil && in.SFT.SHA256 == "sft-sha" && !in.Deadline.IsZero()
	}))
	env.OnActivity(a.SnapshotLabels, mock.Anything, mock.Anything).Return(stage("snapshot", func(in activities.StageInput) bool {
		return in.Batch != ""
	}))
	env.OnActivity(a.TrainRM, mock.Anything, mock.Anything).Return(stage("rm", func(in activities.StageInput) bool {
		return in.SFT != nil && in.Snapshot != ""
	}))
	env.OnActivity(a.TrainPPO, mock.Anything, mock.Anything).Return(stage("ppo", func(in activities.StageInput) bool {
		return in.SFT != nil && in.RM != nil && in.RM.SHA256 == "rm-sha"
	}))
	env.OnActivity(a.Evaluate, mock.Anything, mock.Anything).Return(stage("eval", func(in activities.StageInput) bool {
		return in.SFT != nil && in.PPO != nil && in.PPO.SHA256 == "ppo-sha"
	}))
}

func testSpec(t *testing.T) runspec.Spec {
	s, err := runspec.Preset("micro")
	if err != nil {
		t.Fatal(err)
	}
	s.ID = "wf-test"
	return s
}

func TestPipelineRunsTheStagesInOrder(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f := &fakeStages{t: t, accuracy: 0.9}
	f.register(env)
	env.ExecuteWorkflow(Pipeline, PipelineInput{Spec: testSpec(t)})
	var rep Report
	if err := env.GetWorkflowResult(&rep); err != nil {
		t.Fatal(err)
	}
	if want := []runstate.Stage{"sft", "labels", "snapshot", "rm", "ppo", "eval"}; !slices.Equal(f.order, want) {
		t.Errorf("stages ran %v, want %v", f.order, want)
	}
	if rep.Status != "succeeded" || f.ended.Status != "succeeded" || len(f.ended.Report) == 0 {
		t.Errorf("report status %q, recorded %+v", rep.Status, f.ended)
	}
	if got := stageNames(rep); !slices.Equal(got, []runstate.Stage{"sft", "labels", "snapshot", "rm", "gate", "ppo", "eval"}) {
		t.Errorf("report lists stages %v", got)
	}
	for _, st := range rep.Stages {
		if st.Status != "succeeded" {
			t.Errorf("stage %s is %s", st.Name, st.Status)
		}
	}
	if rep.TrainerSeconds != 6 || rep.WaitSeconds != 5 {
		t.Errorf("trainer %.0fs wait %.0fs, want 6s and 5s", rep.TrainerSeconds, rep.WaitSeconds)
	}
}

func stageNames(rep Report) []runstate.Stage {
	var names []runstate.Stage
	for _, st := range rep.Stages {
		names = append(names, st.Name)
	}
	return names
}

// TestNoEvalSamplesSkipsEval: with eval.samples 0 the run ends after PPO
// and its report has no eval stage.
func TestNoEvalSamplesSkipsEval(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f := &fakeStages{t: t, accuracy: 0.9}
	f.register(env)
	spec := testSpec(t)
	spec.Eval.Samples = 0
	env.ExecuteWorkflow(Pipeline, PipelineInput{Spec: spec})
	var rep Report
	if err := env.GetWorkflowResult(&rep); err != nil {
		t.Fatal(err)
	}
	if got := stageNames(rep); !slices.Equal(got, []runstate.Stage{"sft", "labels", "snapshot", "rm", "gate", "ppo"}) || slices.Contains(f.order, "eval") {
		t.Errorf("report lists stages %v, ran %v", got, f.order)
	}
}

// TestGateWaitsForApproval: a reward model below the gate holds PPO until
// the approve update; the progress query says why it waits.
func TestGateWaitsForApproval(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f := &fakeStages{t: t, accuracy: 0.4}
	f.register(env)
	spec := testSpec(t)
	spec.Gate.MinRMAccuracy = 0.6
	var waiting Progress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(ProgressQuery)
		if err != nil {
			t.Error(err)
			return
		}
		if err := v.Get(&waiting); err != nil {
			t.Error(err)
		}
		if slices.Contains(f.order, "ppo") {
			t.Error("PPO ran before the approval")
		}
		env.UpdateWorkflow(ApproveUpdate, "approve-1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("approve rejected: %v", err) },
		})
	}, 48*time.Hour)
	env.ExecuteWorkflow(Pipeline, PipelineInput{Spec: spec})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if waiting.Status != "waiting for approval" || waiting.Stage != "gate" || waiting.Gate == "" {
		t.Errorf("progress while waiting: %+v", waiting)
	}
	if !slices.Contains(f.order, "ppo") {
		t.Error("PPO did not run after the approval")
	}
}

func TestApproveIsRejectedWhenNotWaiting(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f := &fakeStages{t: t, accuracy: 0.9}
	f.register(env)
	rejected := false
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(ApproveUpdate, "approve-1", &testsuite.TestUpdateCallback{
			OnReject: func(error) { rejected = true },
		})
	}, 0)
	env.ExecuteWorkflow(Pipeline, PipelineInput{Spec: testSpec(t)})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if !rejected {
		t.Error("approve was accepted although the run was not waiting at its gate")
	}
}

// TestBadInputFailsTheRun: a non-retryable stage error ends the run as
// failed with the stage's message, without running later stages.
func TestBadInputFailsTheRun(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	msg := "ppo: prompts of 12 tokens plus max_new_tokens 28 exceed the context 32"
	f := &fakeStages{t: t, accuracy: 0.9, fail: map[runstate.Stage]error{
		"ppo": temporal.NewNonRetryableApplicationError(msg, activities.ErrTypeBadInput, errors.New("bad input")),
	}}
	f.register(env)
	env.ExecuteWorkflow(Pipeline, PipelineInput{Spec: testSpec(t)})
	if env.GetWorkflowError() == nil {
		t.Fatal("the run succeeded although PPO failed")
	}
	if f.ended.Status != "failed" || f.ended.Error != msg {
		t.Errorf("run recorded as %q with error %q, want failed with %q", f.ended.Status, f.ended.Error, msg)
	}
	if len(f.recorded) == 0 || f.recorded[len(f.recorded)-1] != (activities.StageStatusInput{Run: "wf-test", Stage: "ppo", Status: "failed", Error: msg}) {
		t.Errorf("stage records %+v", f.recorded)
	}
	if slices.Contains(f.order, "eval") {
		t.Error("eval ran after PPO failed")
	}
}

// TestRetryableErrorsAreRetried: a stage that fails with an ordinary error
// (a dead worker, a service down) is retried and the run completes.
func TestRetryableErrorsAreRetried(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f := &fakeStages{t: t, accuracy: 0.9}
	var a *activities.Activities
	calls := 0
	env.OnActivity(a.TrainRM, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StageInput) (activities.StageResult, error) {
		calls++
		if calls < 3 {
			return activities.StageResult{}, errors.New("postgres: connection refused")
		}
		return activities.StageResult{Stage: "rm", Checkpoint: &activities.Checkpoint{Run: in.Spec.ID, Stage: "rm", Step: 10, SHA256: "rm-sha"},
			Metrics: map[string]float64{"accuracy": 0.9}}, nil
	})
	f.register(env) // after the override: the first matching mock wins
	env.ExecuteWorkflow(Pipeline, PipelineInput{Spec: testSpec(t)})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Errorf("rm ran %d times, want 3", calls)
	}
}

// TestCancelEndsTheRunAsCancelled records the cancellation.
func TestCancelEndsTheRunAsCancelled(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	f := &fakeStages{t: t, accuracy: 0.4}
	f.register(env)
	spec := testSpec(t)
	spec.Gate.MinRMAccuracy = 0.6 // waits at the gate until cancelled
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Hour)
	env.ExecuteWorkflow(Pipeline, PipelineInput{Spec: spec})
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("workflow error %v, want cancelled", err)
	}
	if f.ended.Status != "cancelled" {
		t.Errorf("run recorded as %q, want cancelled", f.ended.Status)
	}
}
