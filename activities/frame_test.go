package activities

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/instructflow/instructflow/storage/postgres"
)

// TestFinishedStagesAreReused: a stage that finished is not run again with
// the same settings, and is refused with other ones.
func TestFinishedStagesAreReused(t *testing.T) {
	a, db, spec := setup(t, "reuse")
	if _, err := db.AddLabels(context.Background(), spec.ID+"-labels", "human",
		[]postgres.BatchLabel{{Item: 0, Labeler: "ada", Ranks: []int{1, 2}}, {Item: 1, Labeler: "bo", Ranks: []int{2, 1}}}); err != nil {
		t.Fatal(err)
	}
	in := StageInput{Spec: spec, Batch: spec.ID + "-labels"}
	var first, second StageResult
	for _, res := range []*StageResult{&first, &second} {
		v, err := activityEnv(a).ExecuteActivity(a.SnapshotLabels, in)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Get(res); err != nil {
			t.Fatal(err)
		}
	}
	// Both calls come from one workflow execution (the test environment's),
	// as a retry after a lost completion does: the second returns the
	// stored result without running again, and is not called a reuse
	// (the work was done in this execution).
	if first.Reused || second.Reused || second.Snapshot != first.Snapshot || first.Metrics["comparisons"] != 2 ||
		second.Execution != first.Execution || first.Execution == "" {
		t.Errorf("first %+v, second %+v", first, second)
	}
	if st, _ := db.GetStage(context.Background(), spec.ID, "snapshot"); st.Attempts != 1 {
		t.Errorf("snapshot stage began %d times, want 1", st.Attempts)
	}
	in.Spec.Labels.ExcludeLabelers = []string{"bo"}
	_, err := activityEnv(a).ExecuteActivity(a.SnapshotLabels, in)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), "finished with other settings") {
		t.Errorf("changed settings on a finished stage: %v", err)
	}
}
