package checkpoint_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/checkpoint/blobtest"
	"github.com/instructflow/instructflow/errkind"
)

func TestParseKey(t *testing.T) {
	for key, want := range map[string]struct {
		prefix string
		step   int64
	}{
		"runs/r1/sft/40/": {"runs/r1/sft/", 40},
		"runs/r1/sft/40":  {"runs/r1/sft/", 40},
		"models/m/0/":     {"models/m/", 0},
	} {
		prefix, step, err := checkpoint.ParseKey(key)
		if err != nil || prefix != want.prefix || step != want.step {
			t.Errorf("%s: %q %d %v", key, prefix, step, err)
		}
	}
	for _, key := range []string{"", "40", "runs/r1/sft/", "runs/r1/sft/x/", "runs/r1/sft/-1/", "runs/r1/sft/040/", "/abs/1/", "runs/../x/1/"} {
		if _, _, err := checkpoint.ParseKey(key); !errors.Is(err, errkind.BadInput) {
			t.Errorf("%q: %v, want bad input", key, err)
		}
	}
}

// TestLocalFolderRoundTrip: a folder committed with ReadDir + Save reads
// back with Load + WriteDir to the same files; Committed names the same
// manifest without reading the files.
func TestLocalFolderRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	for name, data := range map[string]string{"config.json": "{}", "model.safetensors": "weights", "manifest.json": "ignored"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := checkpoint.ReadDir(src)
	if err != nil || len(files) != 2 {
		t.Fatalf("ReadDir: %d files, %v", len(files), err)
	}
	store := checkpoint.Store{Blobs: &blobtest.Memory{}, Prefix: "runs/r1/sft/"}
	id, err := store.Save(ctx, 7, files)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.Committed(ctx, 7); err != nil || got != id {
		t.Errorf("Committed: %s %v, want %s", got, err, id)
	}
	if _, err := store.Committed(ctx, 8); !errors.Is(err, errkind.NotFound) {
		t.Errorf("Committed of a step never saved: %v", err)
	}
	cp, err := store.Load(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := checkpoint.WriteDir(dst, cp); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "model.safetensors")); string(b) != "weights" {
		t.Errorf("model.safetensors read back as %q", b)
	}
	if err := checkpoint.WriteDir(dst, cp); !errors.Is(err, errkind.BadInput) {
		t.Errorf("WriteDir over the same files: %v", err)
	}
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.ReadDir(src); !errors.Is(err, errkind.BadInput) {
		t.Errorf("ReadDir of a folder with a subfolder: %v", err)
	}
	if _, err := checkpoint.ReadDir(t.TempDir()); !errors.Is(err, errkind.BadInput) {
		t.Errorf("ReadDir of an empty folder: %v", err)
	}
}
