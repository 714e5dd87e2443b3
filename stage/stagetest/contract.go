// Package stagetest is the contract test suite every stage.Sink backend
// passes (the local folder and the object store).
package stagetest

import (
	"bytes"
	"context"
	"testing"

	"github.com/instructflow/instructflow/stage"
)

// Sink runs the contract against fresh, empty sinks made by newSink.
// damage, when not nil, alters a committed file of the checkpoint at step so
// that it no longer matches its manifest.
func Sink(t *testing.T, newSink func(t *testing.T) stage.Sink, damage func(t *testing.T, s stage.Sink, step int64, file string)) {
	ctx := context.Background()
	files := func(step int64) []stage.File {
		return []stage.File{
			{Name: "model.safetensors", Data: bytes.Repeat([]byte{byte(step)}, 1000)},
			{Name: "state.json", Data: []byte(`{"step":` + string(rune('0'+step%10)) + `}`)},
		}
	}
	t.Run("empty", func(t *testing.T) {
		if _, ok, err := newSink(t).Latest(ctx); ok || err != nil {
			t.Fatalf("Latest on an empty sink: ok=%v err=%v", ok, err)
		}
	})
	t.Run("newest committed", func(t *testing.T) {
		s := newSink(t)
		var ids []string
		for _, step := range []int64{2, 10, 4} {
			id, err := s.Save(ctx, step, files(step))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		cp, ok, err := s.Latest(ctx)
		if err != nil || !ok || cp.Step != 10 || cp.ID != ids[1] {
			t.Fatalf("Latest = step %d id %s ok %v err %v; want step 10 (numeric order), id %s", cp.Step, cp.ID, ok, err, ids[1])
		}
		for _, f := range files(10) {
			if !bytes.Equal(cp.Files[f.Name], f.Data) {
				t.Errorf("file %s changed in the round trip", f.Name)
			}
		}
	})
	t.Run("repeated save", func(t *testing.T) {
		s := newSink(t)
		id1, err := s.Save(ctx, 3, files(3))
		if err != nil {
			t.Fatal(err)
		}
		id2, err := s.Save(ctx, 3, files(3))
		if err != nil || id2 != id1 {
			t.Fatalf("saving the same checkpoint again: %v (id %s vs %s)", err, id2, id1)
		}
		if _, err := s.Save(ctx, 3, files(4)); err == nil {
			t.Fatal("a committed checkpoint was replaced by other content")
		}
	})
	if damage != nil {
		t.Run("corrupt", func(t *testing.T) {
			s := newSink(t)
			if _, err := s.Save(ctx, 1, files(1)); err != nil {
				t.Fatal(err)
			}
			damage(t, s, 1, "model.safetensors")
			if cp, ok, err := s.Latest(ctx); err == nil || ok || cp.Files != nil {
				t.Fatalf("a damaged checkpoint was returned: ok=%v err=%v", ok, err)
			}
		})
	}
}
