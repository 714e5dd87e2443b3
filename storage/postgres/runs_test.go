package postgres

import (
	"context"
	"errors"
	"testing"
)

// TestResumeRunWritesOnlyAfterTheStart: a resume whose execution does not
// start leaves the run's record as it was; one that starts is recorded
// only after the start, and the execution's first activity (CreateRun with
// the new spec) waits for that record instead of refusing it.
func TestResumeRunWritesOnlyAfterTheStart(t *testing.T) {
	db := openFresh(t)
	ctx := context.Background()
	if err := db.CreateRun(ctx, "r3", []byte(`{"seed": 1}`)); err != nil {
		t.Fatal(err)
	}
	if err := db.SetRunStatus(ctx, "r3", "failed", nil, "rm: bad"); err != nil {
		t.Fatal(err)
	}
	unavailable := errors.New("temporal: unavailable")
	err := db.ResumeRun(ctx, "r3", []byte(`{"seed": 2}`), func(context.Context) error { return unavailable })
	if !errors.Is(err, unavailable) {
		t.Fatalf("ResumeRun with a failed start: %v, want the start's error", err)
	}
	r, _ := db.GetRun(ctx, "r3")
	if string(r.Spec) != `{"seed": 1}` || r.Status != "failed" || r.Error != "rm: bad" || count(t, db, "audit_log") != 0 {
		t.Fatalf("a resume that did not start changed the record: %+v", r)
	}

	activity := make(chan error, 1)
	err = db.ResumeRun(ctx, "r3", []byte(`{"seed": 2}`), func(context.Context) error {
		during, _ := db.GetRun(ctx, "r3")
		if string(during.Spec) != `{"seed": 1}` || during.Status != "failed" {
			t.Errorf("written before the start: %+v", during)
		}
		go func() { activity <- db.CreateRun(ctx, "r3", []byte(`{"seed": 2}`)) }() // the new execution's BeginRun
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-activity; err != nil {
		t.Errorf("the new execution's first activity: %v, want it to see the new spec", err)
	}
	r, _ = db.GetRun(ctx, "r3")
	if string(r.Spec) != `{"seed": 2}` || r.Status != "pending" || r.Error != "" || count(t, db, "audit_log") != 1 {
		t.Errorf("after the start: %+v, %d audit rows", r, count(t, db, "audit_log"))
	}
}
