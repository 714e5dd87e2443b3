package control

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/storage/postgres"
)

// fakeTemporal answers Describe with describeErr (or "failed") and counts
// the executions started; everything else is unused.
type fakeTemporal struct {
	client.Client
	describeErr error
	startErr    error
	onStart     func()
	started     int
}

func (f *fakeTemporal) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	if f.describeErr != nil {
		return nil, f.describeErr
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{
		Status: enumspb.WORKFLOW_EXECUTION_STATUS_FAILED}}, nil
}

func (f *fakeTemporal) ExecuteWorkflow(context.Context, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	f.started++
	if f.onStart != nil {
		f.onStart()
	}
	return nil, f.startErr
}

// TestResumeRefusesWhatItCannotCheck: run resume starts nothing and writes
// nothing when Temporal cannot say whether the run still runs, or when the
// new execution does not start; it records the new spec only after the
// execution started.
func TestResumeRefusesWhatItCannotCheck(t *testing.T) {
	cfg := testenv.Config(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.FreshDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	spec, err := runspec.Preset("micro")
	if err != nil {
		t.Fatal(err)
	}
	spec.ID = "resume-me"
	data, _ := json.Marshal(spec)
	if err := db.CreateRun(ctx, spec.ID, data); err != nil {
		t.Fatal(err)
	}
	if err := db.SetRunStatus(ctx, spec.ID, "failed", nil, "rm: bad"); err != nil {
		t.Fatal(err)
	}
	policyLR := func(r postgres.Run) float32 {
		var stored runspec.Spec
		if err := json.Unmarshal(r.Spec, &stored); err != nil {
			t.Fatal(err)
		}
		return stored.PPO.PolicyLR
	}
	unchanged := func(when string) {
		t.Helper()
		r, err := db.GetRun(ctx, spec.ID)
		if err != nil || r.Status != "failed" || r.Error != "rm: bad" || policyLR(r) != spec.PPO.PolicyLR {
			t.Errorf("%s: the run's record changed: %s %s policy_lr %g %v", when, r.Status, r.Error, policyLR(r), err)
		}
	}
	sets := []string{"ppo.policy_lr=0.000123"}

	tc := &fakeTemporal{describeErr: serviceerror.NewUnavailable("frontend is restarting")}
	c := &Client{Config: cfg, DB: db, Temporal: tc}
	_, err = c.Resume(ctx, spec.ID, sets)
	if err == nil || !strings.Contains(err.Error(), "cannot tell whether run resume-me still runs") || tc.started != 0 {
		t.Fatalf("resume while Describe fails: %v, %d executions started; want a refusal and none", err, tc.started)
	}
	unchanged("after a Describe error")

	tc = &fakeTemporal{describeErr: serviceerror.NewNotFound("no such execution"), startErr: serviceerror.NewUnavailable("down")}
	c.Temporal = tc
	if _, err := c.Resume(ctx, spec.ID, sets); err == nil || tc.started != 1 {
		t.Fatalf("resume whose start fails: %v after %d starts", err, tc.started)
	}
	unchanged("after a failed start")

	tc = &fakeTemporal{}
	tc.onStart = func() { unchanged("while the execution starts") }
	c.Temporal = tc
	if _, err := c.Resume(ctx, spec.ID, sets); err != nil || tc.started != 1 {
		t.Fatalf("resume: %v after %d starts", err, tc.started)
	}
	r, _ := db.GetRun(ctx, spec.ID)
	if r.Status != "pending" || policyLR(r) != 0.000123 {
		t.Errorf("after the start: %s policy_lr %g, want pending with the new setting", r.Status, policyLR(r))
	}
}
