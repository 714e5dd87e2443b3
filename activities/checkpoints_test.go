package activities

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/checkpoint/blobtest"
	"github.com/instructflow/instructflow/stage"
)

// records is the manifest hashes Postgres would hold, by step.
type records map[int64]string

func (r records) CheckpointHashes(_ context.Context, _, _ string, step int64) ([]string, error) {
	if sha, ok := r[step]; ok {
		return []string{sha}, nil
	}
	return nil, nil
}

// A stage resumes only from a checkpoint whose manifest matches the hash
// recorded when it was committed: one rewritten behind the pipeline's back
// (files and manifest consistent, but not what the stage wrote) is skipped
// for the one before it, and the step resumed from is what the result says.
func TestStageSinkChecksRecordedManifests(t *testing.T) {
	ctx := context.Background()
	blobs := &blobtest.Memory{}
	rec := records{}
	var logged []string
	sink, err := newStageSink(blobs, rec, "run-1", "sft", func(msg string) { logged = append(logged, msg) })
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []int64{10, 20} {
		id, err := sink.Save(ctx, step, []stage.File{{Name: "state.json", Data: fmt.Appendf(nil, `{"step":%d}`, step)}})
		if err != nil {
			t.Fatal(err)
		}
		rec[step] = id
	}
	// Someone commits other content at step 20 (a consistent manifest).
	if err := blobs.Delete(ctx, sink.Key(20)+"manifest.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Save(ctx, 20, []stage.File{{Name: "state.json", Data: []byte(`{"step":99}`)}}); err != nil {
		t.Fatal(err)
	}
	cp, ok, err := sink.Latest(ctx)
	if err != nil || !ok || cp.Step != 10 {
		t.Fatalf("Latest = step %d ok %v err %v; want step 10, since step 20's manifest is not the recorded one", cp.Step, ok, err)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "was recorded") {
		t.Errorf("logged %q; want the skipped checkpoint named with its recorded hash", logged)
	}
	if got := sink.resumedFrom(); got != 10 {
		t.Errorf("resumedFrom = %d, want 10", got)
	}
	// A committed checkpoint with no record (the worker died before
	// recording it) is trusted: its own manifest verified it.
	delete(rec, 20)
	other, _ := newStageSink(blobs, rec, "run-1", "sft", nil)
	if cp, ok, err := other.Latest(ctx); err != nil || !ok || cp.Step != 20 {
		t.Fatalf("unrecorded checkpoint: Latest = step %d ok %v err %v; want step 20", cp.Step, ok, err)
	}
}
