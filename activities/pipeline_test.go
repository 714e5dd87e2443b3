package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
)

// setup gives activities on a fresh database and the real object store, a
// run spec with its run recorded, and that run's labeling batch of two
// items.
func setup(t *testing.T, run string) (*Activities, *postgres.DB, runspec.Spec) {
	t.Helper()
	cfg := testenv.Config(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.FreshDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	store, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := runspec.Preset("micro")
	if err != nil {
		t.Fatal(err)
	}
	spec.ID = run + "-" + time.Now().Format("150405.000000000")[7:]
	if err := db.CreateRun(ctx, spec.ID, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateBatch(ctx, spec.ID+"-labels", spec.ID, time.Now().Add(time.Hour), []postgres.BatchItem{
		{Item: 0, Prompt: "upper a=", Responses: []string{"A", "a"}},
		{Item: 1, Prompt: "sort ba=", Responses: []string{"ab", "ba"}},
	}); err != nil {
		t.Fatal(err)
	}
	return &Activities{DB: db, Objects: store, LabelPoll: 50 * time.Millisecond}, db, spec
}

func activityEnv(a *Activities) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	return env
}

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

// TestMissingDataIsBadInput: a source without demonstrations fails SFT at
// once with the fix in the message.
func TestMissingDataIsBadInput(t *testing.T) {
	a, _, spec := setup(t, "nodata")
	spec.Data.Source = "nothing-here"
	_, err := activityEnv(a).ExecuteActivity(a.TrainSFT, StageInput{Spec: spec})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() || !strings.Contains(err.Error(), `source "nothing-here"`) {
		t.Errorf("got %v", err)
	}
}
