package model

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures under testdata/torch_* are written by
// scripts/torch_reference.py (PyTorch, float64 from float32 weights).
// Float32 results must agree within torchTol.
const torchTol = 2e-4

type fixture struct {
	dir     string
	model   *Model
	ref     map[string]stTensor
	refMeta map[string]string
}

func loadFixture(t *testing.T, name string) fixture {
	t.Helper()
	dir := filepath.Join("testdata", "torch_"+name)
	cfgJSON, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(cfgJSON, weights)
	if err != nil {
		t.Fatal(err)
	}
	refData, err := os.ReadFile(filepath.Join(dir, "ref.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ref, meta, err := parseSafetensors(refData)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{dir: dir, model: m, ref: ref, refMeta: meta}
}

func (f fixture) f32(t *testing.T, name string) []float32 {
	t.Helper()
	st, ok := f.ref[name]
	if !ok {
		t.Fatalf("%s: no %s in ref.safetensors", f.dir, name)
	}
	out := make([]float32, len(st.Data)/4)
	readF32(out, st)
	return out
}

func (f fixture) i32(t *testing.T, name string) []int32 {
	t.Helper()
	st, ok := f.ref[name]
	if !ok || st.DType != "I32" {
		t.Fatalf("%s: no I32 %s in ref.safetensors", f.dir, name)
	}
	out := make([]int32, len(st.Data)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(st.Data[4*i:]))
	}
	return out
}

// assertClose fails when got and want differ by more than tol relative to
// the largest magnitude of want (at least 1).
func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale := 1.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol*scale || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %.7g, want %.7g (tolerance %.2g x %.3g)", what, i, got[i], want[i], tol, scale)
		}
	}
}

func TestAgainstPyTorch(t *testing.T) {
	for _, name := range []string{"base", "lora"} {
		t.Run(name, func(t *testing.T) {
			for _, threads := range []int{1, 2} {
				f := loadFixture(t, name)
				m := f.model
				m.SetThreads(threads)
				if name == "lora" {
					m.SetTrainable(func(t *Tensor) bool { return t.Group != Base })
				}
				tokens, targets := f.i32(t, "tokens"), f.i32(t, "targets")
				out, err := m.Forward(Batch{B: 2, T: len(tokens) / 2, Tokens: tokens, Targets: targets})
				if err != nil {
					t.Fatal(err)
				}
				assertClose(t, "logprobs", out.LogProbs, f.f32(t, "logprobs"), torchTol)
				assertClose(t, "entropy", out.Entropy, f.f32(t, "entropy"), torchTol)
				assertClose(t, "values", out.Values, f.f32(t, "values"), torchTol)

				m.ZeroGrad()
				m.Backward(Grad{LogProbs: f.f32(t, "seed_logprobs"), Entropy: f.f32(t, "seed_entropy"), Values: f.f32(t, "seed_values")})
				opt := NewAdamW(m, AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1})
				checked := 0
				for _, tn := range m.Tensors {
					_, want := f.ref["grad."+tn.Name]
					if want != tn.Trainable {
						t.Fatalf("%s: trainable %v, but the fixture has a gradient: %v", tn.Name, tn.Trainable, want)
					}
					if want {
						assertClose(t, "grad "+tn.Name, tn.Grad, f.f32(t, "grad."+tn.Name), torchTol)
						checked++
					}
				}
				// Two AdamW steps from PyTorch's own gradients, as the script
				// does (Adam would magnify float32 noise in gradients that are
				// zero in exact arithmetic, such as the key bias's).
				for _, tn := range opt.tensors {
					copy(tn.Grad, f.f32(t, "grad."+tn.Name))
				}
				opt.Update(1e-2)
				opt.Update(1e-2)
				for _, tn := range opt.tensors {
					assertClose(t, "adamw "+tn.Name, tn.Data, f.f32(t, "adamw."+tn.Name), 1e-5)
				}
				if checked == 0 || (name == "lora" && checked != 4*2*m.Config.Layers+2) {
					t.Fatalf("checked %d gradients", checked)
				}
			}
		})
	}
}

func TestGreedyMatchesPyTorch(t *testing.T) {
	for _, name := range []string{"base", "lora"} {
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, name)
			seqs, err := f.model.Sample([][]int32{f.i32(t, "greedy_prompt")}, SampleConfig{MaxTokens: 5, StopToken: -1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := f.i32(t, "greedy_tokens")
			if got := seqs[0].Tokens; !equalInts(got, want) {
				t.Fatalf("greedy tokens %v, want %v", got, want)
			}
			assertClose(t, "greedy logprobs", seqs[0].LogProbs, f.f32(t, "greedy_logprobs"), torchTol)
		})
	}
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLoadHuggingFaceNames(t *testing.T) {
	// The base fixture is a GPT2Model file: no "transformer." prefix, with
	// attention-mask buffers that the loader must skip.
	data, err := os.ReadFile(filepath.Join("testdata", "torch_base", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	file, _, err := parseSafetensors(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := file["h.0.attn.c_attn.weight"]; !ok {
		t.Fatal("fixture does not use GPT2Model names")
	}
	if _, ok := file["h.0.attn.bias"]; !ok {
		t.Fatal("fixture has no mask buffer")
	}
	for n := range file {
		if strings.HasPrefix(n, "transformer.") {
			t.Fatalf("fixture has prefixed name %s", n)
		}
	}
}
