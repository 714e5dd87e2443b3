package workflows

import (
	"context"
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/instructflow/instructflow/activities"
	"github.com/instructflow/instructflow/devstack"
	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/storage/objectstore"
	"github.com/instructflow/instructflow/storage/postgres"
)

var update = flag.Bool("update", false, "record testdata/preflight_history.json from a run on the real dev server")

const historyFile = "testdata/preflight_history.json"

func TestPreflightRetriesThenFails(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *activities.Activities
	calls := 0
	env.OnActivity(a.Preflight, mock.Anything, activities.PreflightInput{ProbeKey: "preflight/default-test-workflow-id"}).
		Return(func(context.Context, activities.PreflightInput) (activities.PreflightResult, error) {
			calls++
			return activities.PreflightResult{}, errors.New("postgres down")
		})
	env.ExecuteWorkflow(Preflight, PreflightInput{})
	if err := env.GetWorkflowError(); err == nil {
		t.Fatal("preflight succeeded although every attempt failed")
	}
	if calls != 3 {
		t.Errorf("activity ran %d times, want 3 attempts", calls)
	}
}

func TestPreflightPassesResultThrough(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *activities.Activities
	want := activities.PreflightResult{Worker: "w", TaskQueue: "q", SchemaVersion: 1, ObjectBytes: 1024}
	env.OnActivity(a.Preflight, mock.Anything, activities.PreflightInput{ProbeKey: "preflight/default-test-workflow-id"}).Return(want, nil)
	env.ExecuteWorkflow(Preflight, PreflightInput{})
	var got PreflightResult
	if err := env.GetWorkflowResult(&got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("result %+v, want %+v", got, want)
	}
}

// TestReplay replays histories recorded on the real dev server: a change
// to a workflow that would break runs in flight fails here. The pipeline's
// histories come from cmd/instructflow's TestPipelineSurvivesFaults and
// TestRecordHistories (record them again with -update-history there).
func TestReplay(t *testing.T) {
	for file, wf := range map[string]any{
		historyFile:                             Preflight,
		"testdata/pipeline_history.json":        Pipeline, // the reference run: every stage
		"testdata/pipeline_gate_history.json":   Pipeline, // pause, unpause, wait at the gate, approve
		"testdata/pipeline_cancel_history.json": Pipeline, // cancelled in SFT
	} {
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflow(wf)
		if err := r.ReplayWorkflowHistoryFromJSONFile(devstack.QuietTemporalLogger(), file); err != nil {
			t.Errorf("replay %s: %v", file, err)
		}
	}
}

// TestPreflightOnDevServer round-trips the workflow through the real
// Temporal dev server, with a worker whose activities reach the real
// Postgres and object store.
func TestPreflightOnDevServer(t *testing.T) {
	cfg := testenv.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, cfg.Postgres.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := objectstore.Open(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.Address, Namespace: cfg.Temporal.Namespace, Logger: devstack.QuietTemporalLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	queue := "preflight-test-" + uuid.NewString()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflow(Preflight)
	w.RegisterActivity(&activities.Activities{DB: db, Objects: store})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "preflight-" + uuid.NewString(), TaskQueue: queue}, Preflight, PreflightInput{})
	if err != nil {
		t.Fatal(err)
	}
	var res PreflightResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.SchemaVersion < 1 || res.ObjectBytes != 1024 || res.TaskQueue != queue {
		t.Errorf("preflight result %+v", res)
	}
	if *update {
		testenv.RecordHistory(t, c, run.GetID(), run.GetRunID(), historyFile)
	}
}
