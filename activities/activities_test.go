package activities

import (
	"context"
	"errors"
	"testing"
	"time"

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
	if _, err := db.CreateBatch(ctx, spec.ID+"-labels", spec.ID, time.Now().Add(time.Hour), postgres.Labeling{}, []postgres.BatchItem{
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

// At most len(Slots) stages compute at once: the next waits for a slot (and
// gives up when its context ends); no slots means no limit.
func TestComputeSlots(t *testing.T) {
	a := &Activities{Slots: NewSlots(2)}
	ctx := context.Background()
	for range 2 {
		if err := a.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := a.acquire(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third stage got a slot of two: %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- a.acquire(ctx) }()
	a.release()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a released slot was not handed to the waiting stage")
	}
	unlimited := &Activities{}
	for range 100 {
		if err := unlimited.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
