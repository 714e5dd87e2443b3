package hf

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
)

func TestLayoutIsNewsOrder(t *testing.T) {
	for _, cfg := range []model.Config{
		tinyCfg,
		{Vocab: 10, Context: 4, Layers: 3, Heads: 1, Width: 4, ValueHead: true},
		{Vocab: 10, Context: 4, Layers: 2, Heads: 2, Width: 4, LoRARank: 2, ValueHead: true},
	} {
		m, err := model.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := cfg.Layout()
		if len(got) != len(m.Tensors) {
			t.Fatalf("%+v: Layout has %d tensors, New %d", cfg, len(got), len(m.Tensors))
		}
		for i, s := range got {
			mt := m.Tensors[i]
			if s.Name != mt.Name || s.Group != mt.Group || !slices.Equal(s.Shape, mt.Shape) {
				t.Fatalf("%+v: tensor %d: Layout %v, New %s %v %v", cfg, i, s, mt.Name, mt.Group, mt.Shape)
			}
		}
		var buf bytes.Buffer
		if err := m.WriteWeights(&buf); err != nil {
			t.Fatal(err)
		}
		if h := model.F32Header(got); !bytes.HasPrefix(buf.Bytes(), h) {
			t.Errorf("%+v: F32Header is not the start of WriteWeights' file", cfg)
		}
		if n := model.F32Size(got); n != int64(buf.Len()) {
			t.Errorf("%+v: F32Size %d, WriteWeights wrote %d", cfg, n, buf.Len())
		}
	}
}

// reimport opens dir and returns what WriteWeights writes for it.
func reimport(t *testing.T, dir string) (*Folder, []byte) {
	t.Helper()
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.WriteWeights(&buf); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != f.WeightsSize() {
		t.Errorf("WeightsSize %d, WriteWeights wrote %d", f.WeightsSize(), buf.Len())
	}
	return f, buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	rm := tinyCfg
	rm.ValueHead = true
	lora := tinyCfg
	lora.LoRARank, lora.LoRAAlpha = 2, 4
	for _, tc := range []struct {
		name string
		cfg  model.Config
		kind Kind
		arch string
	}{
		{"policy", tinyCfg, Policy, ArchLMHead},
		{"reward", rm, Reward, ArchScorer},
		{"lora policy", lora, Policy, ArchLMHead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := randomModel(t, tc.cfg, 7)
			if tc.kind == Reward && m.Tensor("v_head.summary.bias").Data[0] == 0 {
				t.Fatal("the test needs a nonzero value-head bias")
			}
			want := engineBytes(t, m.MergeLoRA())
			f, got := reimport(t, exportFolder(t, m, tc.kind))
			if !bytes.Equal(got, want) {
				t.Fatalf("re-imported weights (%d bytes) differ from the model's (%d bytes)", len(got), len(want))
			}
			wantCfg := tc.cfg
			wantCfg.LoRARank, wantCfg.LoRAAlpha = 0, 0
			if f.Architecture != tc.arch || f.Config != wantCfg || !slices.Equal(f.DTypes, []string{"F32"}) ||
				!slices.Equal(f.Files, []string{"model.safetensors"}) || f.Params != wantCfg.ParamCount() {
				t.Errorf("folder %s %+v %v %v %d", f.Architecture, f.Config, f.DTypes, f.Files, f.Params)
			}
			if f.Tokenizer == nil || f.Tokenizer.EOT() != 258 || len(f.TokenizerFiles) != 3 || f.TokenizerFiles["generation_config.json"] == nil {
				t.Errorf("tokenizer %v, files %d", f.Tokenizer != nil, len(f.TokenizerFiles))
			}
			// The engine loads what WriteWeights wrote.
			cj, err := model.MarshalConfig(f.Config)
			if err != nil {
				t.Fatal(err)
			}
			back, err := model.Load(cj, got)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back.Params, m.MergeLoRA().Params) {
				t.Error("model.Load of the written weights differs from the model")
			}
		})
	}
}

func TestPolicyExportDropsValueHead(t *testing.T) {
	cfg := tinyCfg
	cfg.ValueHead = true
	m := randomModel(t, cfg, 3)
	base, err := model.New(tinyCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bt := range base.Tensors {
		copy(bt.Data, m.Tensor(bt.Name).Data)
	}
	dir := exportFolder(t, m, Policy)
	f, got := reimport(t, dir)
	if f.Config.ValueHead || !bytes.Equal(got, engineBytes(t, base)) {
		t.Error("a policy export of a value-head model is not the base model")
	}
	for _, x := range readST(t, filepath.Join(dir, "model.safetensors")) {
		if !strings.HasPrefix(x.name, "transformer.") || x.dtype != "F32" {
			t.Errorf("exported tensor %s %s: want transformer.* F32 only", x.name, x.dtype)
		}
	}
}

func TestExportFiles(t *testing.T) {
	cfg := tinyCfg
	cfg.ValueHead = true
	m := randomModel(t, cfg, 5)
	dir := exportFolder(t, m, Reward)
	var c map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"model_type": "gpt2", "architectures": []any{"GPT2ForSequenceClassification"}, "n_embd": 8.0, "n_layer": 2.0,
		"n_head": 2.0, "n_positions": 16.0, "n_ctx": 16.0, "vocab_size": 259.0, "activation_function": "gelu_new",
		"layer_norm_epsilon": 1e-5, "tie_word_embeddings": true, "num_labels": 1.0, "id2label": map[string]any{"0": "LABEL_0"},
		"label2id": map[string]any{"LABEL_0": 0.0}, "pad_token_id": 258.0, "eos_token_id": 258.0, "bos_token_id": 258.0,
		"torch_dtype": "float32",
	} {
		if got, _ := json.Marshal(c[k]); string(got) != mustJSON(t, want) {
			t.Errorf("config.json %s = %s, want %s", k, got, mustJSON(t, want))
		}
	}
	if b, ok := c["instructflow_score_bias"].(float64); !ok || float32(b) != m.Tensor("v_head.summary.bias").Data[0] {
		t.Errorf("config.json instructflow_score_bias = %v, want %v", c["instructflow_score_bias"], m.Tensor("v_head.summary.bias").Data[0])
	}
	names := map[string][]int{}
	for _, x := range readST(t, filepath.Join(dir, "model.safetensors")) {
		names[x.name] = x.shape
	}
	if !slices.Equal(names["score.weight"], []int{1, 8}) || names["v_head.summary.weight"] != nil || names["lm_head.weight"] != nil {
		t.Errorf("reward tensors: score.weight %v, v_head %v, lm_head %v", names["score.weight"], names["v_head.summary.weight"], names["lm_head.weight"])
	}
	for name, want := range map[string]string{
		"generation_config.json": `"pad_token_id": 258`, "README.md": "# tiny", "merges.txt": "h e",
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %q (%v), want %q in it", name, b, err, want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteLeavesNothingOnFailure(t *testing.T) {
	m := randomModel(t, tinyCfg, 1)
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Write(ctx, dir, Export{Model: m, TokenizerFiles: tinyTokenizer(t), EOT: 258, Pad: 258}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with a canceled context: %v", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("a failed Write left %v", entries)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, e := range []Export{
		{Model: m, EOT: 258, Pad: 258},                             // dir not empty
		{Model: m, Kind: Reward, EOT: 258, Pad: 258},               // no value head
		{Model: m, EOT: 259, Pad: 0},                               // EOT outside the vocabulary
		{Model: m, TokenizerFiles: map[string][]byte{"../x": nil}}, // not a base name
	} {
		if err := Write(context.Background(), dir, e); !errors.Is(err, errkind.BadInput) {
			t.Errorf("Write(%+v): %v, want bad input", e.Kind, err)
		}
	}
}

// halfOf returns random F16 or BF16 bit patterns of finite values and their
// exact values, computed from the formats' definitions.
func halfOf(dtype string, n int, rng *model.RNG) ([]uint16, []float32) {
	ebits, mbits := 5, 10
	if dtype == "BF16" {
		ebits, mbits = 8, 7
	}
	bias := 1<<(ebits-1) - 1
	bits, vals := make([]uint16, n), make([]float32, n)
	for i := range n {
		e := rng.IntN(1<<ebits - 1) // never all ones: no infinities or NaNs
		mant := rng.IntN(1 << mbits)
		s := rng.IntN(2)
		if i%17 == 0 {
			e = 0 // subnormals and zeros
		}
		bits[i] = uint16(s<<15 | e<<mbits | mant)
		var v float64
		if e == 0 {
			v = math.Ldexp(float64(mant), 1-bias-mbits)
		} else {
			v = math.Ldexp(1+float64(mant)/float64(int(1)<<mbits), e-bias)
		}
		if s == 1 {
			v = -v
		}
		vals[i] = float32(v)
	}
	return bits, vals
}

func TestShardedHalfPrecision(t *testing.T) {
	for _, dtype := range []string{"F16", "BF16"} {
		t.Run(dtype, func(t *testing.T) {
			rng := model.NewRNG(11)
			want, err := model.New(tinyCfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			shards := [2][]stTensor{}
			weightMap := map[string]string{}
			for i, mt := range want.Tensors {
				bits, vals := halfOf(dtype, mt.Size(), rng)
				copy(mt.Data, vals)
				var data []byte
				for _, b := range bits {
					data = binary.LittleEndian.AppendUint16(data, b)
				}
				s := i * 2 / len(want.Tensors)
				shards[s] = append(shards[s], stTensor{mt.Name, dtype, mt.Shape, data})
				weightMap[mt.Name] = []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[s]
				if mt.Name == "transformer.wte.weight" {
					// tied LM head, stored as well; and an attention-mask buffer to ignore
					shards[1] = append(shards[1], stTensor{"lm_head.weight", dtype, mt.Shape, data},
						stTensor{"transformer.h.0.attn.bias", "BOOL", []int{1, 1, 16, 16}, make([]byte, 256)})
					weightMap["lm_head.weight"] = "model-00002-of-00002.safetensors"
					weightMap["transformer.h.0.attn.bias"] = "model-00002-of-00002.safetensors"
				}
			}
			writeST(t, filepath.Join(dir, "model-00001-of-00002.safetensors"), shards[0])
			writeST(t, filepath.Join(dir, "model-00002-of-00002.safetensors"), shards[1])
			idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": weightMap})
			writeFiles(t, dir, map[string][]byte{"model.safetensors.index.json": idx, "config.json": []byte(
				`{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 259, "n_positions": 16, "n_embd": 8, "n_layer": 2, "n_head": 2, "n_inner": null, "layer_norm_epsilon": 1e-05, "activation_function": "gelu_new", "torch_dtype": "float16"}`)})
			writeFiles(t, dir, tinyTokenizer(t))
			f, got := reimport(t, dir)
			if !bytes.Equal(got, engineBytes(t, want)) {
				t.Error("converted weights differ from the exact values")
			}
			if !slices.Equal(f.DTypes, []string{dtype}) || len(f.Files) != 2 {
				t.Errorf("dtypes %v, files %v", f.DTypes, f.Files)
			}
		})
	}
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGPT2ModelNames(t *testing.T) {
	m := randomModel(t, tinyCfg, 9)
	dir := exportFolder(t, m, Policy)
	editWeights(t, dir, func(ts []stTensor) []stTensor {
		for i := range ts {
			ts[i].name = strings.TrimPrefix(ts[i].name, "transformer.")
		}
		return ts
	})
	editConfig(t, dir, func(c map[string]any) { c["architectures"] = []string{"GPT2Model"} })
	f, got := reimport(t, dir)
	if f.Architecture != ArchBase || !bytes.Equal(got, engineBytes(t, m)) {
		t.Errorf("a GPT2Model folder (%s) does not give the model's weights", f.Architecture)
	}
}

func TestWriteWeightsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(ts []stTensor) []stTensor
		want []string
	}{
		{"nan", func(ts []stTensor) []stTensor {
			ts[3].data = slices.Clone(ts[3].data)
			binary.LittleEndian.PutUint32(ts[3].data[4*5:], math.Float32bits(float32(math.NaN())))
			return ts
		}, []string{"model.safetensors", "transformer.h.0.ln_1.bias", "index 5", "NaN"}},
		{"untied lm_head", func(ts []stTensor) []stTensor {
			lm := stTensor{"lm_head.weight", "F32", ts[0].shape, slices.Clone(ts[0].data)}
			lm.data[4*7] ^= 1
			return append(ts, lm)
		}, []string{"model.safetensors", "lm_head.weight", "index 7", "tie_word_embeddings"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := exportFolder(t, randomModel(t, tinyCfg, 2), Policy)
			editWeights(t, dir, tc.edit)
			f, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			err = f.WriteWeights(new(bytes.Buffer))
			if !errors.Is(err, errkind.BadInput) {
				t.Fatalf("WriteWeights: %v, want bad input", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
