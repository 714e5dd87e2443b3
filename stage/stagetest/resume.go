package stagetest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

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
	a := stage.Dir{Path: filepath.Join(t.TempDir(), "straight")}
	if err := train(a, nil); err != nil {
		t.Fatal(err)
	}
	b := stage.Dir{Path: filepath.Join(t.TempDir(), "resumed")}
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
	step := strconv.FormatInt(total, 10)
	entries, err := os.ReadDir(filepath.Join(a.Path, step))
	if err != nil || len(entries) < 4 {
		t.Fatalf("final checkpoint of the straight run: %d files, %v", len(entries), err)
	}
	for _, e := range entries {
		x, _ := os.ReadFile(filepath.Join(a.Path, step, e.Name()))
		y, err := os.ReadFile(filepath.Join(b.Path, step, e.Name()))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between the straight and the resumed run", e.Name())
		}
	}
}
