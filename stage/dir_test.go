package stage_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/stage/stagetest"
)

func TestDirContract(t *testing.T) {
	stagetest.Sink(t, func(t *testing.T) stage.Sink { return stage.Dir{Path: filepath.Join(t.TempDir(), "ckpt")} },
		func(t *testing.T, s stage.Sink, step int64, file string) {
			p := filepath.Join(s.(stage.Dir).Path, strconv.FormatInt(step, 10), file)
			if err := os.WriteFile(p, []byte("altered"), 0o644); err != nil {
				t.Fatal(err)
			}
		})
}

func TestDirSkipsUncommitted(t *testing.T) {
	dir := t.TempDir()
	s := stage.Dir{Path: dir}
	if _, err := s.Save(t.Context(), 5, []stage.File{{Name: "a", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	// A crashed save: a step folder without a manifest.
	os.MkdirAll(filepath.Join(dir, "9"), 0o755)
	os.WriteFile(filepath.Join(dir, "9", "a"), []byte("half"), 0o644)
	cp, ok, err := s.Latest(t.Context())
	if err != nil || !ok || cp.Step != 5 {
		t.Fatalf("Latest = %d %v %v, want step 5", cp.Step, ok, err)
	}
}
