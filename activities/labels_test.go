package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/instructflow/instructflow/storage/postgres"
)

// TestCollectLabelsWaitsForTheBatch: the stage returns once every item has
// a comparison, written by anyone while it waits.
func TestCollectLabelsWaitsForTheBatch(t *testing.T) {
	a, db, spec := setup(t, "wait")
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = db.AddLabels(context.Background(), spec.ID+"-labels", "human",
			[]postgres.BatchLabel{{Item: 0, Labeler: "ada", Ranks: []int{1, 2}}, {Item: 1, Labeler: "bo", Ranks: []int{1, 2}}})
	}()
	v, err := activityEnv(a).ExecuteActivity(a.CollectLabels, StageInput{Spec: spec, Deadline: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var res StageResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.Batch != spec.ID+"-labels" || res.Metrics["labeled"] != 2 || res.WaitSeconds < 0.2 {
		t.Errorf("result %+v", res)
	}
}

// TestCollectLabelsDeadline: too few labels by the deadline is the user's
// problem, not retried, and the message says what to do.
func TestCollectLabelsDeadline(t *testing.T) {
	a, db, spec := setup(t, "deadline")
	if _, err := db.AddLabels(context.Background(), spec.ID+"-labels", "human", []postgres.BatchLabel{{Item: 0, Labeler: "ada", Ranks: []int{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	_, err := activityEnv(a).ExecuteActivity(a.CollectLabels, StageInput{Spec: spec, Deadline: time.Now().Add(-time.Second)})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), "1 of 2 items") || !strings.Contains(err.Error(), "run resume "+spec.ID) {
		t.Fatalf("got %v, want a non-retryable error naming the count and the resume command", err)
	}
	if st, _ := db.GetStage(context.Background(), spec.ID, "labels"); st.Status != "failed" {
		t.Errorf("stage recorded as %q, want failed", st.Status)
	}
	spec.Labels.MinLabeled = 0.5 // half is enough: the stage ends with what it has
	a2 := *a
	v, err := activityEnv(&a2).ExecuteActivity(a2.CollectLabels, StageInput{Spec: spec, Deadline: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	var res StageResult
	if err := v.Get(&res); err != nil || res.Metrics["labeled"] != 1 {
		t.Errorf("result %+v %v", res, err)
	}
}
