// Package blobtest holds what tests of checkpoint.Blobs backends and their
// users share: Memory, an in-memory backend for fast unit tests, and the
// contract suites every backend passes (Blobs for moving bytes, Store for
// the checkpoint format on top of them).
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/instructflow/instructflow/checkpoint"
	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/stage"
)

// Memory is checkpoint.Blobs in memory. The zero value is ready to use.
type Memory struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

// Put implements checkpoint.Blobs.
func (m *Memory) Put(_ context.Context, key string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs = map[string][]byte{}
	}
	m.blobs[key] = bytes.Clone(data)
	return nil
}

// Open implements checkpoint.Blobs.
func (m *Memory) Open(_ context.Context, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[key]
	if !ok {
		return nil, fmt.Errorf("memory: open %s: %w", key, errkind.NotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// List implements checkpoint.Blobs.
func (m *Memory) List(_ context.Context, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.blobs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete implements checkpoint.Blobs.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.blobs, key)
	return nil
}

// Blobs runs the byte-moving contract against fresh, empty backends.
func Blobs(t *testing.T, newBlobs func(t *testing.T) checkpoint.Blobs) {
	ctx := context.Background()
	t.Run("round trip", func(t *testing.T) {
		b := newBlobs(t)
		for key, data := range map[string][]byte{"a/1/x": []byte("one"), "a/1/y": {}, "a/10/x": bytes.Repeat([]byte{7}, 1<<16), "b/x": []byte("b")} {
			if err := b.Put(ctx, key, data); err != nil {
				t.Fatal(err)
			}
			if got := read(t, b, key); !bytes.Equal(got, data) {
				t.Fatalf("%s: read %d bytes back, put %d", key, len(got), len(data))
			}
		}
		if err := b.Put(ctx, "a/1/x", []byte("replaced")); err != nil {
			t.Fatal(err)
		}
		if got := read(t, b, "a/1/x"); string(got) != "replaced" {
			t.Fatalf("after a second put: %q", got)
		}
		keys, err := b.List(ctx, "a/")
		slices.Sort(keys)
		if err != nil || !slices.Equal(keys, []string{"a/1/x", "a/1/y", "a/10/x"}) {
			t.Fatalf("List(a/) = %v, %v", keys, err)
		}
		if err := b.Delete(ctx, "a/1/y"); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, "a/1/y"); err != nil {
			t.Fatalf("deleting a missing key: %v", err)
		}
		if keys, _ := b.List(ctx, "a/1/"); !slices.Equal(keys, []string{"a/1/x"}) {
			t.Fatalf("List(a/1/) after delete = %v", keys)
		}
	})
	t.Run("missing", func(t *testing.T) {
		b := newBlobs(t)
		if r, err := b.Open(ctx, "nothing/here"); !errors.Is(err, errkind.NotFound) {
			if r != nil {
				r.Close()
			}
			t.Fatalf("Open of a missing key: %v, want errkind.NotFound", err)
		}
		if keys, err := b.List(ctx, "nothing/"); err != nil || len(keys) != 0 {
			t.Fatalf("List of an empty prefix = %v, %v", keys, err)
		}
	})
}

func read(t *testing.T, b checkpoint.Blobs, key string) []byte {
	t.Helper()
	r, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Store runs the checkpoint format's contract over fresh, empty backends:
// what every stage.Sink must do, and the damage it must detect and survive.
func Store(t *testing.T, newBlobs func(t *testing.T) checkpoint.Blobs) {
	ctx := context.Background()
	files := func(step int64) []stage.File {
		return []stage.File{
			{Name: "model.safetensors", Data: bytes.Repeat([]byte{byte(step)}, 1000)},
			{Name: "state.json", Data: fmt.Appendf(nil, `{"step":%d}`, step)},
		}
	}
	newStore := func(t *testing.T) (checkpoint.Store, checkpoint.Blobs) {
		b := newBlobs(t)
		return checkpoint.Store{Blobs: b, Prefix: "runs/r/sft/"}, b
	}
	save := func(t *testing.T, s checkpoint.Store, steps ...int64) []string {
		var ids []string
		for _, step := range steps {
			id, err := s.Save(ctx, step, files(step))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	t.Run("empty", func(t *testing.T) {
		s, _ := newStore(t)
		if _, ok, err := s.Latest(ctx); ok || err != nil {
			t.Fatalf("Latest on an empty store: ok=%v err=%v", ok, err)
		}
	})
	t.Run("newest committed", func(t *testing.T) {
		s, b := newStore(t)
		ids := save(t, s, 2, 10, 4)
		// A crashed save: files without a manifest.
		if err := b.Put(ctx, s.Key(11)+"model.safetensors", []byte("half")); err != nil {
			t.Fatal(err)
		}
		cp, ok, err := s.Latest(ctx)
		if err != nil || !ok || cp.Step != 10 || cp.ID != ids[1] {
			t.Fatalf("Latest = step %d id %s ok %v err %v; want step 10 (numeric order, uncommitted 11 skipped), id %s", cp.Step, cp.ID, ok, err, ids[1])
		}
		for _, f := range files(10) {
			if !bytes.Equal(cp.Files[f.Name], f.Data) {
				t.Errorf("file %s changed in the round trip", f.Name)
			}
		}
		if steps, err := s.Steps(ctx); err != nil || !slices.Equal(steps, []int64{2, 4, 10}) {
			t.Errorf("Steps = %v, %v; want [2 4 10]", steps, err)
		}
	})
	t.Run("repeated save", func(t *testing.T) {
		s, _ := newStore(t)
		id1 := save(t, s, 3)[0]
		if id2, err := s.Save(ctx, 3, files(3)); err != nil || id2 != id1 {
			t.Fatalf("saving the same checkpoint again: %v (id %s vs %s)", err, id2, id1)
		}
		if _, err := s.Save(ctx, 3, files(4)); !errors.Is(err, errkind.Conflict) {
			t.Fatalf("a committed checkpoint replaced by other content: %v, want errkind.Conflict", err)
		}
	})
	damages := map[string]func(b checkpoint.Blobs, dir string) error{
		"altered file": func(b checkpoint.Blobs, dir string) error {
			return b.Put(ctx, dir+"model.safetensors", []byte("altered"))
		},
		"missing file": func(b checkpoint.Blobs, dir string) error { return b.Delete(ctx, dir+"state.json") },
		"longer file": func(b checkpoint.Blobs, dir string) error {
			return b.Put(ctx, dir+"state.json", bytes.Repeat([]byte("x"), 5000))
		},
		"bad manifest": func(b checkpoint.Blobs, dir string) error {
			return b.Put(ctx, dir+checkpoint.ManifestName, []byte("{not json"))
		},
		"huge manifest": func(b checkpoint.Blobs, dir string) error {
			return b.Put(ctx, dir+checkpoint.ManifestName, make([]byte, checkpoint.MaxManifestBytes+1))
		},
		"moved manifest": func(b checkpoint.Blobs, dir string) error {
			return copyBlob(b, "runs/r/sft/1/manifest.json", dir+checkpoint.ManifestName)
		},
	}
	for name, damage := range damages {
		t.Run("corrupt newest: "+name, func(t *testing.T) {
			s, b := newStore(t)
			ids := save(t, s, 1, 2)
			var logged []string
			s.Log = func(msg string) { logged = append(logged, msg) }
			if err := damage(b, s.Key(2)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Load(ctx, 2); !errors.Is(err, errkind.Corrupt) {
				t.Fatalf("Load of the damaged checkpoint: %v, want errkind.Corrupt", err)
			}
			cp, ok, err := s.Latest(ctx)
			if err != nil || !ok || cp.Step != 1 || cp.ID != ids[0] {
				t.Fatalf("Latest = step %d ok %v err %v; want a fall back to step 1", cp.Step, ok, err)
			}
			if len(logged) != 1 || !strings.Contains(logged[0], s.Key(2)) {
				t.Errorf("logged %q; want one line naming %s", logged, s.Key(2))
			}
			// Training again from step 1 saves step 2 again: that repairs it.
			if id, err := s.Save(ctx, 2, files(2)); err != nil || id != ids[1] {
				t.Fatalf("saving over the damaged checkpoint: %v (id %s, want %s)", err, id, ids[1])
			}
			if cp, ok, err := s.Latest(ctx); err != nil || !ok || cp.Step != 2 {
				t.Fatalf("after the repair Latest = step %d ok %v err %v", cp.Step, ok, err)
			}
		})
	}
	t.Run("corrupt only", func(t *testing.T) {
		s, b := newStore(t)
		save(t, s, 1)
		if err := b.Put(ctx, s.Key(1)+"state.json", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if cp, ok, err := s.Latest(ctx); ok || err != nil || cp.Files != nil {
			t.Fatalf("a damaged checkpoint was returned: ok=%v err=%v", ok, err)
		}
	})
	t.Run("verify refuses", func(t *testing.T) {
		s, _ := newStore(t)
		ids := save(t, s, 1, 2)
		s.Verify = func(_ context.Context, step int64, sha string) error {
			if step == 2 {
				return fmt.Errorf("recorded %s, found %s: %w", "another", sha, errkind.Corrupt)
			}
			return nil
		}
		if cp, ok, err := s.Latest(ctx); err != nil || !ok || cp.ID != ids[0] {
			t.Fatalf("Latest = step %d ok %v err %v; want step 1, as Verify refused step 2", cp.Step, ok, err)
		}
		s.Verify = func(context.Context, int64, string) error { return errors.New("database down") }
		if _, _, err := s.Latest(ctx); err == nil {
			t.Fatal("an error from Verify other than Corrupt was swallowed")
		}
	})
	t.Run("verify refuses, save repairs", func(t *testing.T) {
		s, _ := newStore(t)
		ids := save(t, s, 1, 2)
		refused := ids[1]
		s.Verify = func(_ context.Context, _ int64, sha string) error {
			if sha == refused {
				return fmt.Errorf("not the recorded manifest: %w", errkind.Corrupt)
			}
			return nil
		}
		other := []stage.File{{Name: "state.json", Data: []byte(`{"step":2,"other":true}`)}}
		id, err := s.Save(ctx, 2, other)
		if err != nil || id == refused {
			t.Fatalf("saving over a checkpoint Verify refuses: id %s, %v", id, err)
		}
		if cp, ok, err := s.Latest(ctx); err != nil || !ok || cp.ID != id {
			t.Fatalf("after the repair Latest = %s ok %v err %v, want %s", cp.ID, ok, err, id)
		}
	})
	t.Run("no replacement on doubt", func(t *testing.T) {
		s, b := newStore(t)
		id := save(t, s, 5)[0]
		s.Blobs = flaky{b}
		if _, err := s.Save(ctx, 5, files(6)); err == nil || errors.Is(err, errkind.Conflict) {
			t.Fatalf("Save over a checkpoint it could not read: %v, want the read error", err)
		}
		s.Blobs = b
		if cp, err := s.Load(ctx, 5); err != nil || cp.ID != id {
			t.Fatalf("the committed checkpoint changed: %s, %v", cp.ID, err)
		}
	})
	t.Run("format 1", func(t *testing.T) {
		s, b := newStore(t)
		data := []byte("weights")
		legacy := fmt.Appendf(nil, `{"format":1,"ref":{"run":"r","stage":"sft","step":7},"files":[{"name":"model.safetensors","size":%d,"sha256":"%x"}]}`,
			len(data), sha256.Sum256(data))
		if err := b.Put(ctx, s.Key(7)+"model.safetensors", data); err != nil {
			t.Fatal(err)
		}
		if err := b.Put(ctx, s.Key(7)+checkpoint.ManifestName, legacy); err != nil {
			t.Fatal(err)
		}
		cp, ok, err := s.Latest(ctx)
		if err != nil || !ok || cp.Step != 7 || !bytes.Equal(cp.Files["model.safetensors"], data) {
			t.Fatalf("a format-1 checkpoint: step %d ok %v err %v", cp.Step, ok, err)
		}
	})
	t.Run("some files", func(t *testing.T) {
		s, _ := newStore(t)
		id := save(t, s, 3)[0]
		cp, err := s.LoadFiles(ctx, 3, func(n string) bool { return n == "state.json" })
		if err != nil || cp.ID != id || len(cp.Files) != 1 || !bytes.Equal(cp.Files["state.json"], files(3)[1].Data) {
			t.Fatalf("LoadFiles(state.json): %v, id %s (want %s), files %d", err, cp.ID, id, len(cp.Files))
		}
	})
	t.Run("streamed file", func(t *testing.T) {
		s, b := newStore(t)
		id := save(t, s, 3)[0]
		read := func(name, manifest string) ([]byte, error) {
			r, err := s.OpenFile(ctx, 3, name, manifest)
			if err != nil {
				return nil, err
			}
			defer r.Close()
			return io.ReadAll(r)
		}
		if got, err := read("model.safetensors", id); err != nil || !bytes.Equal(got, files(3)[0].Data) {
			t.Fatalf("OpenFile: %v (%d bytes)", err, len(got))
		}
		if _, err := read("model.safetensors", strings.Repeat("0", 64)); !errors.Is(err, errkind.Corrupt) {
			t.Errorf("another manifest than expected: %v, want Corrupt", err)
		}
		if _, err := read("optimizer.safetensors", id); !errors.Is(err, errkind.NotFound) {
			t.Errorf("a file the manifest does not list: %v, want NotFound", err)
		}
		for name, data := range map[string][]byte{
			"same size, other bytes": bytes.Repeat([]byte{9}, 1000),
			"shorter":                bytes.Repeat([]byte{3}, 999),
			"longer":                 bytes.Repeat([]byte{3}, 1001),
		} {
			if err := b.Put(ctx, s.Key(3)+"model.safetensors", data); err != nil {
				t.Fatal(err)
			}
			if _, err := read("model.safetensors", id); !errors.Is(err, errkind.Corrupt) {
				t.Errorf("%s: %v, want Corrupt at the end of the stream", name, err)
			}
		}
		if err := b.Delete(ctx, s.Key(3)+"model.safetensors"); err != nil {
			t.Fatal(err)
		}
		if _, err := read("model.safetensors", id); !errors.Is(err, errkind.Corrupt) {
			t.Errorf("a missing file: %v, want Corrupt", err)
		}
	})
	t.Run("invalid names", func(t *testing.T) {
		s, _ := newStore(t)
		for _, name := range []string{"", "manifest.json", "../x", "a/b", ".hidden", "x..y"} {
			if _, err := s.Save(ctx, 1, []stage.File{{Name: name, Data: []byte("x")}}); err == nil {
				t.Errorf("Save accepted file name %q", name)
			}
		}
		if _, err := s.Save(ctx, -1, files(1)); err == nil {
			t.Error("Save accepted step -1")
		}
	})
}

// flaky fails every read but the manifests', as a store that goes away
// in the middle of loading a checkpoint does.
type flaky struct{ checkpoint.Blobs }

func (f flaky) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if strings.HasSuffix(key, checkpoint.ManifestName) {
		return f.Blobs.Open(ctx, key)
	}
	return nil, errors.New("connection reset by peer")
}

func copyBlob(b checkpoint.Blobs, from, to string) error {
	r, err := b.Open(context.Background(), from)
	if err != nil {
		return err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return b.Put(context.Background(), to, data)
}
