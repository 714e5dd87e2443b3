package objectstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/instructflow/instructflow/internal/testenv"
	"github.com/instructflow/instructflow/stage"
	"github.com/instructflow/instructflow/stage/stagetest"
	"github.com/instructflow/instructflow/storage"
)

// openFresh opens a new bucket on the real object store for one test.
func openFresh(t *testing.T) *Store {
	t.Helper()
	cfg := testenv.Config(t)
	name := testenv.Name(t)
	if len(name) > 30 {
		name = name[:30]
	}
	cfg.S3.Bucket = strings.Trim(fmt.Sprintf("t-%s-%d", name, time.Now().UnixNano()), "-")
	s, err := Open(context.Background(), cfg.S3)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func files(step int) []File {
	return []File{
		{Name: "model.safetensors", Data: bytes.Repeat([]byte{byte(step)}, 4096)},
		{Name: "optimizer.safetensors", Data: bytes.Repeat([]byte{byte(step + 1)}, 8192)},
		{Name: "state.json", Data: []byte(fmt.Sprintf(`{"step":%d}`, step))},
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	s := openFresh(t)
	ctx := context.Background()
	if _, err := s.Latest(ctx, "run-a", "sft"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Latest before any save: %v, want ErrNotFound", err)
	}
	var sums []string
	for _, step := range []int64{5, 10, 100} {
		sum, err := s.SaveCheckpoint(ctx, Ref{Run: "run-a", Stage: "sft", Step: step}, files(int(step)))
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum)
	}
	// A save that crashed before its manifest: files without a manifest.
	crashed := Ref{Run: "run-a", Stage: "sft", Step: 200}
	if err := s.Put(ctx, crashed.Prefix()+"model.safetensors", []byte("half")); err != nil {
		t.Fatal(err)
	}
	latest, err := s.Latest(ctx, "run-a", "sft")
	if err != nil {
		t.Fatal(err)
	}
	if latest.Step != 100 {
		t.Fatalf("Latest = step %d, want 100 (numeric order, uncommitted 200 skipped)", latest.Step)
	}
	if _, err := s.LoadCheckpoint(ctx, crashed); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("load of an uncommitted checkpoint: %v, want ErrNotFound", err)
	}
	cp, err := s.LoadCheckpoint(ctx, latest)
	if err != nil {
		t.Fatal(err)
	}
	if cp.ManifestSHA256 != sums[2] {
		t.Errorf("manifest hash %s, saved as %s", cp.ManifestSHA256, sums[2])
	}
	for _, f := range files(100) {
		if !bytes.Equal(cp.Files[f.Name], f.Data) {
			t.Errorf("file %s differs after the round trip", f.Name)
		}
	}
	// A retried save with the same content is accepted; other content is not.
	if sum, err := s.SaveCheckpoint(ctx, latest, files(100)); err != nil || sum != sums[2] {
		t.Errorf("repeated save: %v %s", err, sum)
	}
	if _, err := s.SaveCheckpoint(ctx, latest, files(7)); err == nil {
		t.Error("a committed checkpoint was overwritten with other content")
	}
}

func TestCorruptCheckpointIsRefused(t *testing.T) {
	s := openFresh(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(ref Ref) error
	}{
		{"altered file", func(ref Ref) error {
			return s.Put(ctx, ref.Prefix()+"model.safetensors", bytes.Repeat([]byte{9}, 4096))
		}},
		{"truncated file", func(ref Ref) error {
			return s.Put(ctx, ref.Prefix()+"optimizer.safetensors", bytes.Repeat([]byte{2}, 100))
		}},
		{"missing file", func(ref Ref) error { return s.Delete(ctx, ref.Prefix()+"state.json") }},
		{"garbled manifest", func(ref Ref) error { return s.Put(ctx, ref.Prefix()+ManifestName, []byte("{not json")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := Ref{Run: "run-b", Stage: testenv.Name(t), Step: 1}
			if _, err := s.SaveCheckpoint(ctx, ref, files(1)); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(ref); err != nil {
				t.Fatal(err)
			}
			cp, err := s.LoadCheckpoint(ctx, ref)
			if !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("load: %v, want ErrCorrupt", err)
			}
			if cp.Files != nil {
				t.Fatal("bytes of a corrupt checkpoint were returned")
			}
		})
	}
	t.Run("missing manifest", func(t *testing.T) {
		ref := Ref{Run: "run-b", Stage: "no-manifest", Step: 1}
		if _, err := s.SaveCheckpoint(ctx, ref, files(1)); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, ref.Prefix()+ManifestName); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LoadCheckpoint(ctx, ref); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("load: %v, want ErrNotFound", err)
		}
		if _, err := s.Latest(ctx, "run-b", "no-manifest"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Latest: %v, want ErrNotFound", err)
		}
	})
}

func TestKeysOnlyFromValidIDs(t *testing.T) {
	s := openFresh(t)
	ctx := context.Background()
	for _, ref := range []Ref{
		{Run: "../other", Stage: "sft", Step: 1},
		{Run: "run", Stage: "sft/../../x", Step: 1},
		{Run: "Run", Stage: "sft", Step: 1},
		{Run: "run", Stage: "", Step: 1},
		{Run: "run", Stage: "sft", Step: -1},
	} {
		if _, err := s.SaveCheckpoint(ctx, ref, files(1)); err == nil {
			t.Errorf("SaveCheckpoint(%+v) accepted an invalid ref", ref)
		}
		if _, err := s.LoadCheckpoint(ctx, ref); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("LoadCheckpoint(%+v) = %v, want a validation error", ref, err)
		}
	}
	ok := Ref{Run: "run", Stage: "sft", Step: 1}
	for _, name := range []string{"../x", "a/b", ManifestName, ""} {
		if _, err := s.SaveCheckpoint(ctx, ok, []File{{Name: name, Data: []byte("x")}}); err == nil {
			t.Errorf("file name %q accepted", name)
		}
	}
}

func TestBadCredentials(t *testing.T) {
	cfg := testenv.Config(t)
	cfg.S3.SecretKey = "wrong-secret"
	_, err := Open(context.Background(), cfg.S3)
	if err == nil || !strings.Contains(err.Error(), "check s3.access_key and s3.secret_key") {
		t.Fatalf("Open with a wrong secret: %v, want a message naming the credentials", err)
	}
}

func TestStageSinkContract(t *testing.T) {
	s := openFresh(t)
	stagetest.Sink(t, func(t *testing.T) stage.Sink {
		return StageSink{Store: s, Run: "contract", Stage: testenv.Name(t)}
	}, func(t *testing.T, sink stage.Sink, step int64, file string) {
		ss := sink.(StageSink)
		if err := s.Put(context.Background(), Ref{Run: ss.Run, Stage: ss.Stage, Step: step}.Prefix()+file, []byte("altered")); err != nil {
			t.Fatal(err)
		}
	})
}
