package hf

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/instructflow/instructflow/model"
)

// TestTinyF16 opens the fixture folder that scripts/hf_gpt2.py wrote with
// PyTorch (testdata/README.md) and checks the engine's log-probabilities of
// its reference sequences against PyTorch's logits.
func TestTinyF16(t *testing.T) {
	const dir = "testdata/tiny-f16"
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := model.Config{Vocab: 400, Context: 64, Layers: 2, Heads: 4, Width: 32}
	if f.Architecture != ArchLMHead || f.Config != want || !slices.Equal(f.DTypes, []string{"F16"}) || len(f.Files) != 2 || f.Tokenizer.EOT() != 399 {
		t.Fatalf("folder: %s %+v %v %v eot %d", f.Architecture, f.Config, f.DTypes, f.Files, f.Tokenizer.EOT())
	}
	var w bytes.Buffer
	if err := f.WriteWeights(&w); err != nil {
		t.Fatal(err)
	}
	cj, err := model.MarshalConfig(f.Config)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(cj, w.Bytes())
	if err != nil {
		t.Fatal(err)
	}

	// Exported and opened again, the converted model gives the same bytes,
	// and the tokenizer's files travel with it.
	out := filepath.Join(t.TempDir(), "export")
	if err := Write(context.Background(), out, Export{Model: m, TokenizerFiles: f.TokenizerFiles, EOT: 399, Pad: 399}); err != nil {
		t.Fatal(err)
	}
	g, again := reimport(t, out)
	if !bytes.Equal(again, w.Bytes()) || g.Tokenizer.Info().Source != f.Tokenizer.Info().Source || len(g.TokenizerFiles) != len(f.TokenizerFiles) {
		t.Errorf("the re-exported fixture differs: %d bytes vs %d, tokenizer %s vs %s", len(again), w.Len(), g.Tokenizer.Info().Source, f.Tokenizer.Info().Source)
	}

	b, err := os.ReadFile(filepath.Join(dir, "ref/ids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ids [][]int32
	if err := json.Unmarshal(b, &ids); err != nil {
		t.Fatal(err)
	}
	var logits []float32
	for _, x := range readST(t, filepath.Join(dir, "ref/logits.safetensors")) {
		if x.name == "logits" {
			for i := 0; i < len(x.data); i += 4 {
				logits = append(logits, math.Float32frombits(binary.LittleEndian.Uint32(x.data[i:])))
			}
		}
	}
	B, T, V := len(ids), len(ids[0]), want.Vocab
	if len(logits) != B*T*V {
		t.Fatalf("reference logits: %d values, want %d", len(logits), B*T*V)
	}
	batch := model.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i, seq := range ids {
		copy(batch.Tokens[i*T:], seq)
		for j := range T {
			batch.Targets[i*T+j] = seq[(j+1)%T] // every position has a target
		}
	}
	res, err := m.Forward(batch)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for n := range B * T {
		row := logits[n*V : (n+1)*V]
		mx := float64(slices.Max(row))
		sum := 0.0
		for _, v := range row {
			sum += math.Exp(float64(v) - mx)
		}
		ref := float64(row[batch.Targets[n]]) - mx - math.Log(sum)
		worst = max(worst, math.Abs(float64(res.LogProbs[n])-ref))
	}
	t.Logf("largest log-probability difference from PyTorch: %.2g", worst)
	if worst > 1e-5 {
		t.Errorf("log-probabilities differ from PyTorch's by up to %g", worst)
	}
}
