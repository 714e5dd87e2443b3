package stagetest

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/stage"
)

var errStop = errors.New("stagetest: stop")

// ResumeIsBitIdentical runs a trainer to step total in one go, and again
// stopped right after its report for step stopAt (which must save a
// checkpoint) and restarted with nothing kept in memory, and checks that both
// final checkpoints have the same files, byte for byte. train runs the
// trainer on the given sink with the given progress callback.
func ResumeIsBitIdentical(t *testing.T, total, stopAt int64, train func(sink stage.Sink, progress stage.Progress) error) {
	t.Helper()
	a := checkpoint.Dir(filepath.Join(t.TempDir(), "straight"))
	if err := train(a, nil); err != nil {
		t.Fatal(err)
	}
	b := checkpoint.Dir(filepath.Join(t.TempDir(), "resumed"))
	err := train(b, func(r stage.Report) error {
		if r.Step == stopAt {
			if r.Checkpoint == "" {
				t.Fatalf("step %d saved no checkpoint; stop at a checkpoint step", stopAt)
			}
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("first part: %v", err)
	}
	if err := train(b, nil); err != nil {
		t.Fatalf("resumed part: %v", err)
	}
	x, err := a.Load(context.Background(), total)
	if err != nil || len(x.Files) < 3 {
		t.Fatalf("final checkpoint of the straight run: %d files, %v", len(x.Files), err)
	}
	y, err := b.Load(context.Background(), total)
	if err != nil {
		t.Fatalf("final checkpoint of the resumed run: %v", err)
	}
	if x.ID != y.ID {
		t.Errorf("final manifests differ between the straight and the resumed run: %s vs %s", x.ID, y.ID)
	}
	for name, data := range x.Files {
		if !bytes.Equal(data, y.Files[name]) {
			t.Errorf("%s differs between the straight and the resumed run", name)
		}
	}
}
