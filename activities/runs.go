package activities

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/runstate"
)

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
	return a.DB.SetRunStatus(ctx, in.Spec.ID, string(runstate.Running), nil, "")
}

// EndRun records how the run ended, with its report.
func (a *Activities) EndRun(ctx context.Context, in EndRunInput) error {
	return a.DB.SetRunStatus(ctx, in.Run, string(in.Status), in.Report, in.Error)
}

// RecordStage records a stage's status set by the workflow: waiting at a
// gate, failed after its retries, cancelled.
func (a *Activities) RecordStage(ctx context.Context, in StageStatusInput) error {
	return a.DB.EndStage(ctx, in.Run, string(in.Stage), string(in.Status), in.Error)
}
