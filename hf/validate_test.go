package hf

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructflow/instructflow/errkind"
)

// TestOpenProblems builds a bad folder per case from a good export and checks
// that Open names the file, what is wrong and what to do.
func TestOpenProblems(t *testing.T) {
	set := func(k string, v any) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { editConfig(t, dir, func(c map[string]any) { c[k] = v }) }
	}
	remove := func(names ...string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			for _, n := range names {
				if err := os.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	write := func(name string, b []byte) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { writeFiles(t, dir, map[string][]byte{name: b}) }
	}
	// header returns a safetensors file whose header is h and body n bytes.
	header := func(h string, n int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(b, h...), make([]byte, n)...)
	}
	tensors := func(edit func(ts []stTensor) []stTensor) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { editWeights(t, dir, edit) }
	}
	// shard splits model.safetensors into two shards and an index, and lets
	// edit change the index's weight map.
	shard := func(edit func(wm map[string]string)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			ts := readST(t, filepath.Join(dir, "model.safetensors"))
			wm := map[string]string{}
			for i, x := range ts {
				wm[x.name] = []string{"a.safetensors", "b.safetensors"}[i%2]
			}
			var a, b []stTensor
			for i, x := range ts {
				if i%2 == 0 {
					a = append(a, x)
				} else {
					b = append(b, x)
				}
			}
			writeST(t, filepath.Join(dir, "a.safetensors"), a)
			writeST(t, filepath.Join(dir, "b.safetensors"), b)
			edit(wm)
			idx, _ := json.Marshal(map[string]any{"weight_map": wm})
			writeFiles(t, dir, map[string][]byte{"model.safetensors.index.json": idx})
			remove("model.safetensors")(t, dir)
		}
	}
	for _, tc := range []struct {
		name   string
		reward bool
		break_ func(t *testing.T, dir string)
		want   []string
	}{
		{"no config", false, remove("config.json"), []string{"config.json: missing", "save_pretrained"}},
		{"bad json", false, write("config.json", []byte(`{"n_embd": 8,`)), []string{"config.json: not valid JSON", "fix it"}},
		{"llama", false, func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["model_type"], c["architectures"] = "llama", []string{"LlamaForCausalLM"} })
		}, []string{`config.json: model_type is "llama"`, "config.json: architecture LlamaForCausalLM is not supported",
			"supported: GPT2LMHeadModel, GPT2Model, GPT2ForSequenceClassification (model_type gpt2)"}},
		{"erf gelu", false, set("activation_function", "gelu"), []string{"config.json: activation_function is \"gelu\"", "exact (erf)", "differ", "supported: gelu_new, gelu_pytorch_tanh"}},
		{"relu", false, set("activation_function", "relu"), []string{`config.json: activation_function is "relu"`, "supported: gelu_new"}},
		{"epsilon", false, set("layer_norm_epsilon", 1e-6), []string{"config.json: layer_norm_epsilon is 1e-06", "1e-5 only"}},
		{"n_inner", false, set("n_inner", 16), []string{"config.json: n_inner is 16", "n_inner null or 32"}},
		{"inverse layer idx", false, set("scale_attn_by_inverse_layer_idx", true), []string{"config.json: scale_attn_by_inverse_layer_idx is true", "with it false"}},
		{"reorder", false, set("reorder_and_upcast_attn", true), []string{"config.json: reorder_and_upcast_attn is true", "with it false"}},
		{"untied", false, set("tie_word_embeddings", false), []string{"config.json: tie_word_embeddings is false", "tied embeddings"}},
		{"two labels", true, set("id2label", map[string]string{"0": "A", "1": "B"}), []string{"config.json: GPT2ForSequenceClassification has 2 labels", "num_labels 1"}},
		{"default labels", true, func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { delete(c, "id2label"); delete(c, "label2id"); delete(c, "num_labels") })
		}, []string{"config.json: GPT2ForSequenceClassification has 2 labels"}},
		{"heads", false, set("n_head", 3), []string{"config.json: n_embd 8 is not divisible by n_head 3", "shape the engine supports"}},
		{"too wide", false, set("n_embd", 1<<17), []string{"config.json: n_embd is 131072, more than this engine supports"}},
		{"pickle", false, func(t *testing.T, dir string) {
			remove("model.safetensors")(t, dir)
			write("pytorch_model.bin", []byte("PK"))(t, dir)
		}, []string{"pytorch_model.bin: a PyTorch pickle", "save_pretrained(dir, safe_serialization=True)", "save_file("}},
		{"no weights", false, remove("model.safetensors"), []string{"model.safetensors: missing, and there is no model.safetensors.index.json"}},
		{"missing shard", false, shard(func(wm map[string]string) { wm["transformer.wpe.weight"] = "c.safetensors" }),
			[]string{"c.safetensors: missing, named by model.safetensors.index.json", "download it"}},
		{"shard lacks tensor", false, shard(func(wm map[string]string) { wm["transformer.wpe.weight"] = "a.safetensors" }),
			[]string{"a.safetensors: does not hold transformer.wpe.weight", "download the shard again"}},
		{"shard path", false, shard(func(wm map[string]string) { wm["transformer.wpe.weight"] = "../b.safetensors" }),
			[]string{`model.safetensors.index.json: names shard "../b.safetensors"`}},
		{"bad index", false, shard(func(wm map[string]string) { clear(wm) }), []string{"model.safetensors.index.json: weight_map names no tensors"}},
		{"header beyond file", false, write("model.safetensors", append(binary.LittleEndian.AppendUint64(nil, 1000), "{}"...)),
			[]string{"model.safetensors: damaged safetensors header", "beyond the end", "download or save the weights again"}},
		{"header too long", false, write("model.safetensors", binary.LittleEndian.AppendUint64(nil, 200<<20)),
			[]string{"model.safetensors: damaged safetensors header", "more than 104857600"}},
		{"header json", false, write("model.safetensors", header(`{"a":`, 0)), []string{"model.safetensors: damaged safetensors header", "not JSON"}},
		{"overlap", false, write("model.safetensors", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12)),
			[]string{"model.safetensors: damaged safetensors header", "tensors a and b overlap"}},
		{"outside body", false, write("model.safetensors", header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4)),
			[]string{"model.safetensors: damaged safetensors header", "tensor a: byte range [0,8) is outside the 4-byte body"}},
		{"unknown dtype", false, write("model.safetensors", header(`{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, 8)),
			[]string{"model.safetensors: damaged safetensors header", `unknown dtype "Q4"`}},
		{"int dtype", false, tensors(func(ts []stTensor) []stTensor { ts[1].dtype = "I32"; return ts }),
			[]string{"model.safetensors: tensor transformer.wpe.weight has dtype I32; supported: F32, F16, BF16"}},
		{"missing tensors", false, tensors(func(ts []stTensor) []stTensor { return ts[:len(ts)-12] }),
			[]string{"model.safetensors: missing tensors transformer.h.1.attn.c_attn.weight, ", "and 2 more", "use the weights saved with this config.json"}},
		{"extra tensors", false, tensors(func(ts []stTensor) []stTensor {
			return append(ts, stTensor{"foo.weight", "F32", []int{1}, make([]byte, 4)}, stTensor{"transformer.h.0.attn.masked_bias", "F32", nil, make([]byte, 4)})
		}), []string{"model.safetensors: unknown tensors foo.weight, not part of a GPT2LMHeadModel; save the model without them"}},
		{"shape", false, tensors(func(ts []stTensor) []stTensor { ts[2].shape = []int{2, 4}; return ts }),
			[]string{"model.safetensors: tensor transformer.h.0.ln_1.weight has shape [2 4], want [8]", "config.json saved with these weights"}},
		{"wte rows", false, tensors(func(ts []stTensor) []stTensor {
			ts[0].shape, ts[0].data = []int{258, 8}, ts[0].data[:258*8*4]
			return ts
		}), []string{"model.safetensors: tensor transformer.wte.weight has 258 rows but config.json vocab_size is 259"}},
		{"lm_head shape", false, tensors(func(ts []stTensor) []stTensor {
			return append(ts, stTensor{"lm_head.weight", "F32", []int{8}, make([]byte, 32)})
		}), []string{"model.safetensors: tensor lm_head.weight has shape [8], want [259 8]"}},
		{"tokenizer size", false, func(t *testing.T, dir string) {
			vocab := map[string]int{}
			if err := json.Unmarshal(tinyTokenizer(t)["vocab.json"], &vocab); err != nil {
				t.Fatal(err)
			}
			vocab["extra"] = 259
			b, _ := json.Marshal(vocab)
			write("vocab.json", b)(t, dir)
		}, []string{"vocab.json+merges.txt: the tokenizer has 260 tokens but config.json vocab_size is 259", "the engine needs them equal", "len(tokenizer)"}},
		{"no tokenizer", false, remove("vocab.json", "merges.txt"), []string{"tokenizer: no tokenizer files", "from the model's Hugging Face folder"}},
		{"tokenizer files", false, write("vocab.json", []byte("{")), []string{"vocab.json"}},
		{"config and weights", false, func(t *testing.T, dir string) {
			set("activation_function", "gelu")(t, dir)
			tensors(func(ts []stTensor) []stTensor { return append(ts, stTensor{"foo", "F32", []int{1}, make([]byte, 4)}) })(t, dir)
		}, []string{"2 problem(s)", "\nconfig.json: activation_function", "\nmodel.safetensors: unknown tensors foo"}},
		{"several", false, func(t *testing.T, dir string) {
			remove("config.json", "model.safetensors")(t, dir)
			write("pytorch_model.bin", []byte("PK"))(t, dir)
		}, []string{"2 problem(s)", "\nconfig.json: missing", "\npytorch_model.bin: a PyTorch pickle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, kind := tinyCfg, Policy
			if tc.reward {
				cfg.ValueHead, kind = true, Reward
			}
			dir := exportFolder(t, randomModel(t, cfg, 1), kind)
			tc.break_(t, dir)
			_, err := Open(dir)
			if !errors.Is(err, errkind.BadInput) {
				t.Fatalf("Open: %v, want bad input", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestOpenNotAFolder(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, errkind.BadInput) || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("Open of a missing folder: %v", err)
	}
}

// TestArchitectureFromWeights: a config.json without architectures takes the
// model's kind from the tensors.
func TestArchitectureFromWeights(t *testing.T) {
	cfg := tinyCfg
	cfg.ValueHead = true
	dir := exportFolder(t, randomModel(t, cfg, 4), Reward)
	editConfig(t, dir, func(c map[string]any) { delete(c, "architectures") })
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture != ArchScorer || !f.Config.ValueHead {
		t.Errorf("architecture %s, value head %v", f.Architecture, f.Config.ValueHead)
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add(binary.LittleEndian.AppendUint64(nil, 2), []byte("{}"))
	f.Add(binary.LittleEndian.AppendUint64(nil, 56), []byte(`{"a":{"dtype":"F16","shape":[2,1],"data_offsets":[0,4]}}    `))
	f.Add(binary.LittleEndian.AppendUint64(nil, 1<<40), []byte(`{}`))
	f.Fuzz(func(t *testing.T, n []byte, rest []byte) {
		data := append(n, rest...)
		ts, err := readHeader(bytesReaderAt(data), int64(len(data)), "f")
		if err != nil {
			return
		}
		hl := int64(binary.LittleEndian.Uint64(data))
		for name, x := range ts {
			if x.Offset < 8+hl || x.Offset+x.Size > int64(len(data)) || x.Size%int64(dtypeSize[x.DType]) != 0 {
				t.Fatalf("tensor %s %+v lies outside the %d-byte file's body", name, x, len(data))
			}
		}
	})
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(b)) {
		return 0, errors.New("out of range")
	}
	return copy(p, b[off:]), nil
}
