package activities

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/instructflow/instructflow/storage/postgres"
)

// TestRunSnapshotIsReusedOnlyIfItIsTheRuns: a snapshot named <run>-rm that
// was made from something else than the run's batch and filters (here by a
// person, of every comparison) is refused, not trained on.
func TestRunSnapshotIsReusedOnlyIfItIsTheRuns(t *testing.T) {
	a, db, spec := setup(t, "rmname")
	ctx := context.Background()
	if _, err := db.AddLabels(ctx, spec.ID+"-labels", "human",
		[]postgres.BatchLabel{{Item: 0, Labeler: "ada", Ranks: []int{1, 2}}, {Item: 1, Labeler: "bo", Ranks: []int{2, 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SnapshotWhere(ctx, spec.ID+"-rm", postgres.SnapshotFilter{Labelers: []string{"ada"}}); err != nil {
		t.Fatal(err)
	}
	_, err := activityEnv(a).ExecuteActivity(a.SnapshotLabels, StageInput{Spec: spec, Batch: spec.ID + "-labels"})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), "was not made from this run's labels") ||
		!strings.Contains(err.Error(), "labels.snapshot") {
		t.Fatalf("a foreign %s-rm: %v, want a non-retryable refusal naming labels.snapshot", spec.ID, err)
	}
}

// TestRunSnapshotOfTheRunIsReused: the <run>-rm an earlier execution made
// from the same batch and filters (labeler names in another order) is the
// one a resumed run uses.
func TestRunSnapshotOfTheRunIsReused(t *testing.T) {
	a, db, spec := setup(t, "rmsame")
	ctx := context.Background()
	if _, err := db.AddLabels(ctx, spec.ID+"-labels", "human",
		[]postgres.BatchLabel{{Item: 0, Labeler: "ada", Ranks: []int{1, 2}}, {Item: 1, Labeler: "bo", Ranks: []int{2, 1}},
			{Item: 1, Labeler: "cy", Ranks: []int{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	earlier, err := db.SnapshotWhere(ctx, spec.ID+"-rm", postgres.SnapshotFilter{Batch: spec.ID + "-labels", ExcludeLabelers: []string{"cy", "bo"}})
	if err != nil {
		t.Fatal(err)
	}
	spec.Labels.ExcludeLabelers = []string{"bo", "cy"}
	v, err := activityEnv(a).ExecuteActivity(a.SnapshotLabels, StageInput{Spec: spec, Batch: spec.ID + "-labels"})
	if err != nil {
		t.Fatal(err)
	}
	var res StageResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.Snapshot != spec.ID+"-rm" || res.Metrics["comparisons"] != float64(len(earlier.ComparisonIDs)) {
		t.Errorf("result %+v, want the earlier snapshot of %d comparisons", res, len(earlier.ComparisonIDs))
	}
}
