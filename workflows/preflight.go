// Package workflows holds InstructFlow's Temporal workflow code. It is
// deterministic only: no I/O, no wall clock, no randomness, no global state;
// everything that touches the world is an activity.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/instructflow/instructflow/activities"
)

// PreflightInput is the input of Preflight.
type PreflightInput struct{}

// PreflightResult is what Preflight found.
type PreflightResult = activities.PreflightResult

// Preflight proves that the whole path works: the client reached Temporal, a
// worker picked the task up, and from that worker Postgres and the object
// store answered.
func Preflight(ctx workflow.Context, _ PreflightInput) (PreflightResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumAttempts: 3,
		},
	})
	in := activities.PreflightInput{ProbeKey: "preflight/" + workflow.GetInfo(ctx).WorkflowExecution.ID}
	var a *activities.Activities
	var res PreflightResult
	err := workflow.ExecuteActivity(ctx, a.Preflight, in).Get(ctx, &res)
	return res, err
}
