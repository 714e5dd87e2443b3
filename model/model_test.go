package model

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

var smallConfig = Config{Vocab: 31, Context: 24, Layers: 2, Heads: 2, Width: 16, ValueHead: true}

func newModel(t *testing.T, cfg Config, seed uint64) *Model {
	t.Helper()
	m, err := New(cfg, NewRNG(seed))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" for none
	}{
		{"ok", func(*Config) {}, ""},
		{"heads do not divide width", func(c *Config) { c.Heads = 3 }, "n_embd 16 is not divisible by n_head 3"},
		{"zero vocab", func(c *Config) { c.Vocab = 0 }, "vocab_size is 0"},
		{"negative layers", func(c *Config) { c.Layers = -1 }, "n_layer is -1"},
		{"negative lora rank", func(c *Config) { c.LoRARank = -2 }, "lora_rank is -2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig
			tc.edit(&cfg)
			_, err := New(cfg, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigJSON(t *testing.T) {
	cfg := smallConfig
	cfg.LoRARank, cfg.LoRAAlpha = 4, 8
	b, err := MarshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"model_type": "gpt2"`, `"n_embd": 16`, `"activation_function": "gelu_new"`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("config.json lacks %s:\n%s", field, b)
		}
	}
	got, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != cfg {
		t.Fatalf("round trip %+v, want %+v", got, cfg)
	}
	for _, bad := range []string{`{"model_type":"llama","vocab_size":5}`, `{"vocab_size":5,"n_positions":8,"n_layer":1,"n_head":3,"n_embd":8}`, `{`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) accepted it", bad)
		}
	}
}

func TestForwardBadInput(t *testing.T) {
	m := newModel(t, smallConfig, 1)
	tests := []struct {
		name  string
		batch Batch
		want  string
	}{
		{"context exceeded", Batch{B: 1, T: 25, Tokens: make([]int32, 25)}, "exceeds context n_positions 24"},
		{"token count", Batch{B: 2, T: 3, Tokens: make([]int32, 5)}, "5 tokens for batch shape (2,3)"},
		{"token outside vocab", Batch{B: 1, T: 2, Tokens: []int32{3, 31}}, "token 31 at position 1"},
		{"negative token", Batch{B: 1, T: 2, Tokens: []int32{-1, 0}}, "token -1 at position 0"},
		{"target outside vocab", Batch{B: 1, T: 2, Tokens: []int32{3, 4}, Targets: []int32{0, 40}}, "target 40 at position 1"},
		{"target count", Batch{B: 1, T: 2, Tokens: []int32{3, 4}, Targets: []int32{0}}, "1 targets"},
		{"empty", Batch{}, "must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Forward(tc.batch)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestBackwardMisuse(t *testing.T) {
	m := newModel(t, smallConfig, 1)
	mustPanic := func(name string, f func()) {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.HasPrefix(r.(string), "model: ") {
					t.Fatalf("panic %v, want one from package model", r)
				}
			}()
			f()
		})
	}
	mustPanic("no forward", func() { m.Backward(Grad{}) })
	mustPanic("wrong seed length", func() {
		if _, err := m.Forward(Batch{B: 1, T: 3, Tokens: []int32{1, 2, 3}, Targets: []int32{2, 3, 4}}); err != nil {
			t.Fatal(err)
		}
		m.Backward(Grad{LogProbs: make([]float32, 2)})
	})
	mustPanic("logprob seed without targets", func() {
		if _, err := m.Forward(Batch{B: 1, T: 3, Tokens: []int32{1, 2, 3}}); err != nil {
			t.Fatal(err)
		}
		m.Backward(Grad{LogProbs: make([]float32, 3)})
	})
}

// TestValueHeadAtLastToken is the reward model's use: values without the LM
// head, a gradient only at each sequence's last real token, flowing into the
// trunk.
func TestValueHeadAtLastToken(t *testing.T) {
	m := newModel(t, smallConfig, 3)
	tokens := []int32{1, 2, 3, 0, 4, 5, 6, 7} // row 0 is padded after 3 tokens
	last := []int{2, 7}
	out, err := m.Forward(Batch{B: 2, T: 4, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	if out.LogProbs != nil || len(out.Values) != 8 {
		t.Fatalf("output %+v", out)
	}
	r0, r1 := out.Values[last[0]], out.Values[last[1]]
	dv := make([]float32, 8)
	dv[last[0]], dv[last[1]] = 1, -1 // a Bradley-Terry style pair
	m.ZeroGrad()
	m.Backward(Grad{Values: dv})
	if m.Tensor("transformer.h.0.attn.c_attn.weight").Grad[0] == 0 {
		t.Fatal("no gradient reached the trunk")
	}
	// the padded position after the last token must not matter
	tokens[3] = 9
	out, err = m.Forward(Batch{B: 2, T: 4, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	if out.Values[last[0]] != r0 || out.Values[last[1]] != r1 {
		t.Fatal("a later token changed an earlier value: attention is not causal")
	}
}

func TestWeightsRoundTrip(t *testing.T) {
	cfg := smallConfig
	cfg.LoRARank = 2
	m := newModel(t, cfg, 1)
	var a, b bytes.Buffer
	if err := m.WriteWeights(&a); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteWeights(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two writes of the same weights differ")
	}
	m2 := newModel(t, cfg, 2)
	if err := m2.LoadWeights(a.Bytes()); err != nil {
		t.Fatal(err)
	}
	if i := sameBits(m.Params, m2.Params); i >= 0 {
		t.Fatalf("parameter %d differs after a round trip", i)
	}
	// Groups: the base alone loads into a model with a fresh value head.
	var base bytes.Buffer
	if err := m.WriteWeights(&base, Base); err != nil {
		t.Fatal(err)
	}
	if err := m2.LoadWeights(base.Bytes()); err == nil || !strings.Contains(err.Error(), "lora_A.weight is missing") {
		t.Fatalf("loading a base-only file as a whole model: %v", err)
	}
	if err := m2.LoadWeights(base.Bytes(), Base); err != nil {
		t.Fatal(err)
	}
}

// ReadWeights, the streaming LoadWeights, reads the same weights (also a
// group of them from a file that holds more), and a cut stream is an error.
func TestReadWeightsStreams(t *testing.T) {
	m := newModel(t, smallConfig, 1)
	var w bytes.Buffer
	if err := m.WriteWeights(&w); err != nil {
		t.Fatal(err)
	}
	m2 := newModel(t, smallConfig, 2)
	if err := m2.ReadWeights(bytes.NewReader(w.Bytes())); err != nil {
		t.Fatal(err)
	}
	if i := sameBits(m.Params, m2.Params); i >= 0 {
		t.Fatalf("parameter %d differs after a streamed read", i)
	}
	m3 := newModel(t, smallConfig, 3)
	if err := m3.ReadWeights(bytes.NewReader(w.Bytes()), Head); err != nil {
		t.Fatal(err)
	}
	if got, want := m3.Tensor("v_head.summary.weight").Data, m.Tensor("v_head.summary.weight").Data; sameBits(got, want) >= 0 {
		t.Error("the head read alone differs")
	}
	for _, cut := range []int{4, 100, w.Len() - 3} {
		if err := m2.ReadWeights(bytes.NewReader(w.Bytes()[:cut])); err == nil || !strings.HasPrefix(err.Error(), "model: read weights: ") {
			t.Errorf("a stream cut at %d bytes: %v", cut, err)
		}
	}
}

func TestLoadWeightsBadInput(t *testing.T) {
	m := newModel(t, smallConfig, 1)
	tensors := func(edit func([]stTensor) []stTensor) []byte {
		var ts []stTensor
		for _, tn := range m.Tensors {
			ts = append(ts, stTensor{Name: tn.Name, DType: "F32", Shape: tn.Shape, Data: f32Bytes(tn.Data)})
		}
		var buf bytes.Buffer
		if err := writeSafetensors(&buf, edit(ts), nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	good := tensors(func(ts []stTensor) []stTensor { return ts })
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"missing tensor", tensors(func(ts []stTensor) []stTensor { return ts[1:] }), "tensor transformer.wte.weight is missing"},
		{"mis-shaped tensor", tensors(func(ts []stTensor) []stTensor {
			ts[0].Shape = []int{ts[0].Shape[1], ts[0].Shape[0]}
			return ts
		}), "tensor transformer.wte.weight has shape [16 31], want [31 16]"},
		{"wrong dtype", tensors(func(ts []stTensor) []stTensor {
			ts[2].DType = "I32"
			return ts
		}), "has dtype I32, want F32"},
		{"truncated", good[:len(good)-10], "is outside the"},
		{"header too long", append([]byte{0xff, 0xff, 0, 0, 0, 0, 0, 0}, good[8:]...), "header length"},
		{"empty", nil, "shorter than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]float32(nil), m.Params...)
			err := m.LoadWeights(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "model: load weights: ") {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if sameBits(before, m.Params) >= 0 {
				t.Fatal("a failed load changed the model")
			}
		})
	}
}

func FuzzParseSafetensors(f *testing.F) {
	m, err := New(Config{Vocab: 3, Context: 2, Layers: 1, Heads: 1, Width: 2}, NewRNG(1))
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.WriteWeights(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tensors, _, err := parseSafetensors(data)
		if err != nil {
			return
		}
		for _, st := range tensors {
			if len(st.Data) != dtypeSize[st.DType]*product(st.Shape) {
				t.Fatalf("tensor %s: %d bytes for %s%v", st.Name, len(st.Data), st.DType, st.Shape)
			}
		}
		_ = m.LoadWeights(data)
	})
}

func TestOptimizerStateBadInput(t *testing.T) {
	m := newModel(t, smallConfig, 1)
	opt := NewAdamW(m, DefaultAdamW)
	var full bytes.Buffer
	if err := opt.WriteState(&full); err != nil {
		t.Fatal(err)
	}
	m.SetTrainable(func(t *Tensor) bool { return t.Group == Head })
	heads := NewAdamW(m, DefaultAdamW)
	if total, trainable := m.NumParams(); trainable != 16+1 || total <= trainable {
		t.Fatalf("params %d, trainable %d", total, trainable)
	}
	if err := heads.LoadState(full.Bytes()); err == nil || !strings.Contains(err.Error(), "were other tensors trainable") {
		t.Fatalf("loading full state into a heads-only optimizer: %v", err)
	}
	if err := heads.LoadState([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
}

func TestMergeLoRA(t *testing.T) {
	cfg := smallConfig
	cfg.LoRARank, cfg.LoRAAlpha = 3, 6
	m := newModel(t, cfg, 1)
	rng := NewRNG(2)
	for _, tn := range m.Tensors {
		if tn.Group == LoRA { // B starts at zero; make the adapters matter
			for i := range tn.Data {
				tn.Data[i] = 0.1 * rng.Norm()
			}
		}
	}
	merged := m.MergeLoRA()
	if merged.Config.LoRARank != 0 || len(merged.Tensors) != len(m.Tensors)-4*2*cfg.Layers {
		t.Fatalf("merged model has rank %d and %d tensors", merged.Config.LoRARank, len(merged.Tensors))
	}
	batch := Batch{B: 1, T: 6, Tokens: []int32{1, 5, 9, 2, 30, 4}, Targets: []int32{5, 9, 2, 30, 4, 0}}
	want, err := m.Forward(batch)
	if err != nil {
		t.Fatal(err)
	}
	wantLP := append([]float32(nil), want.LogProbs...)
	got, err := merged.Forward(batch)
	if err != nil {
		t.Fatal(err)
	}
	assertClose(t, "merged logprobs", got.LogProbs, wantLP, 1e-5)
	base := newModel(t, smallConfig, 1) // without adapters: must differ
	plain, _ := base.Forward(batch)
	if sameBits(plain.LogProbs, wantLP) < 0 {
		t.Fatal("adapters had no effect; the test cannot tell")
	}
}

func TestSampleMatchesForward(t *testing.T) {
	m := newModel(t, smallConfig, 4)
	prompts := [][]int32{{1, 2, 3}, {7}, {4, 4, 4, 4, 4}}
	seqs, err := m.Sample(prompts, SampleConfig{MaxTokens: 8, Temperature: 1, StopToken: -1}, NewRNG(1))
	if err != nil {
		t.Fatal(err)
	}
	for b, s := range seqs {
		if len(s.Tokens) != 8 {
			t.Fatalf("prompt %d: %d tokens", b, len(s.Tokens))
		}
		full := append(append([]int32(nil), prompts[b]...), s.Tokens...)
		T := len(full) - 1
		targets := make([]int32, T)
		for i := range targets {
			targets[i] = -1
			if i >= len(prompts[b])-1 {
				targets[i] = full[i+1]
			}
		}
		out, err := m.Forward(Batch{B: 1, T: T, Tokens: full[:T], Targets: targets})
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, "sampled logprobs", s.LogProbs, out.LogProbs[len(prompts[b])-1:], 1e-5)
	}
}

func TestSampleOptions(t *testing.T) {
	m := newModel(t, smallConfig, 4)
	prompts := [][]int32{{1, 2, 3}, {7}}
	greedy, err := m.Sample(prompts, SampleConfig{MaxTokens: 6, StopToken: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("top-k 1 is greedy", func(t *testing.T) {
		got, err := m.Sample(prompts, SampleConfig{MaxTokens: 6, Temperature: 0.7, TopK: 1, StopToken: -1}, NewRNG(3))
		if err != nil {
			t.Fatal(err)
		}
		for b := range prompts {
			if !equalInts(got[b].Tokens, greedy[b].Tokens) {
				t.Fatalf("prompt %d: %v, greedy %v", b, got[b].Tokens, greedy[b].Tokens)
			}
		}
	})
	t.Run("tiny top-p is greedy", func(t *testing.T) {
		got, err := m.Sample(prompts, SampleConfig{MaxTokens: 6, Temperature: 1, TopP: 1e-6, StopToken: -1}, NewRNG(3))
		if err != nil {
			t.Fatal(err)
		}
		for b := range prompts {
			if !equalInts(got[b].Tokens, greedy[b].Tokens) {
				t.Fatalf("prompt %d: %v, greedy %v", b, got[b].Tokens, greedy[b].Tokens)
			}
		}
	})
	t.Run("stop token", func(t *testing.T) {
		stop := greedy[0].Tokens[2]
		got, err := m.Sample(prompts[:1], SampleConfig{MaxTokens: 6, StopToken: stop}, nil)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for greedy[0].Tokens[i] != stop {
			i++
		}
		if !equalInts(got[0].Tokens, greedy[0].Tokens[:i+1]) {
			t.Fatalf("tokens %v, want %v (ending with stop %d)", got[0].Tokens, greedy[0].Tokens[:i+1], stop)
		}
	})
	t.Run("temperature spreads", func(t *testing.T) {
		seen := map[int32]bool{}
		for seed := range uint64(20) {
			got, err := m.Sample([][]int32{{1}}, SampleConfig{MaxTokens: 1, Temperature: 5, StopToken: -1}, NewRNG(seed))
			if err != nil {
				t.Fatal(err)
			}
			seen[got[0].Tokens[0]] = true
		}
		if len(seen) < 5 {
			t.Fatalf("20 draws at temperature 5 gave only %d distinct tokens", len(seen))
		}
	})
	bad := []struct {
		name    string
		prompts [][]int32
		sc      SampleConfig
		want    string
	}{
		{"context exceeded", [][]int32{make([]int32, 20)}, SampleConfig{MaxTokens: 5}, "exceeds context n_positions 24"},
		{"empty prompt", [][]int32{{1}, {}}, SampleConfig{MaxTokens: 5}, "prompt 1 is empty"},
		{"token outside vocab", [][]int32{{1, 99}}, SampleConfig{MaxTokens: 5}, "token 99 at position 1"},
		{"no max tokens", [][]int32{{1}}, SampleConfig{}, "max tokens is 0"},
		{"bad top-p", [][]int32{{1}}, SampleConfig{MaxTokens: 1, TopP: 2}, "top-p 2"},
		{"bad stop", [][]int32{{1}}, SampleConfig{MaxTokens: 1, StopToken: 31}, "stop token 31"},
		{"no rng", [][]int32{{1}}, SampleConfig{MaxTokens: 1, Temperature: 1}, "needs an rng"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Sample(tc.prompts, tc.sc, NewRNG(1))
			if tc.name == "no rng" {
				_, err = m.Sample(tc.prompts, tc.sc, nil)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCosineLR(t *testing.T) {
	tests := []struct {
		step int
		want float32
	}{{0, 0.25}, {3, 1}, {4, 1}, {9, 0.55}, {14, 0.1}, {20, 0.1}}
	for _, tc := range tests {
		if got := CosineLR(tc.step, 4, 14, 1, 0.1); math.Abs(float64(got-tc.want)) > 1e-6 {
			t.Errorf("CosineLR(%d) = %v, want %v", tc.step, got, tc.want)
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	m := newModel(t, smallConfig, 1)
	m.SetTrainable(func(t *Tensor) bool { return t.Group == Head })
	vw, vb := m.Tensor("v_head.summary.weight"), m.Tensor("v_head.summary.bias")
	m.Tensor("transformer.wte.weight").Grad[0] = 100 // frozen: not counted
	vw.Grad[0], vb.Grad[0] = 3, 4
	if norm := m.ClipGradNorm(1); norm != 5 {
		t.Fatalf("norm %v, want 5", norm)
	}
	if vw.Grad[0] != 0.6 || vb.Grad[0] != 0.8 || m.Tensor("transformer.wte.weight").Grad[0] != 100 {
		t.Fatalf("clipped to %v, %v", vw.Grad[0], vb.Grad[0])
	}
	if norm := m.ClipGradNorm(10); math.Abs(float64(norm)-1) > 1e-6 || vw.Grad[0] != 0.6 {
		t.Fatalf("norm %v, grad %v: clipping below the bound must not scale", norm, vw.Grad[0])
	}
}

func TestCrossEntropy(t *testing.T) {
	logp := []float32{-1, -2, -3, -4}
	mask := []float32{0, 1, 1, 0}
	d := make([]float32, 4)
	if loss := CrossEntropy(d, logp, mask); loss != 2.5 {
		t.Fatalf("loss %v, want 2.5", loss)
	}
	if d[0] != 0 || d[1] != -0.5 || d[2] != -0.5 || d[3] != 0 {
		t.Fatalf("grad %v", d)
	}
	if loss := CrossEntropy(d, logp, make([]float32, 4)); loss != 0 || d[1] != 0 {
		t.Fatalf("empty mask: loss %v grad %v", loss, d)
	}
}

func TestRNGState(t *testing.T) {
	g := NewRNG(11)
	g.Float32()
	state, err := g.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{g.Float32(), g.Norm(), float32(g.IntN(1000))}
	h := NewRNG(0)
	if err := h.UnmarshalText(state); err != nil {
		t.Fatal(err)
	}
	got := []float32{h.Float32(), h.Norm(), float32(h.IntN(1000))}
	if sameBits(got, want) >= 0 {
		t.Fatalf("restored rng drew %v, want %v", got, want)
	}
	if err := h.UnmarshalText([]byte("!!")); err == nil {
		t.Fatal("bad state accepted")
	}
}

// TestTrainingLearns is the end-to-end guard: a small model learns a
// deterministic map, so the loss must fall far below chance.
func TestTrainingLearns(t *testing.T) {
	cfg := Config{Vocab: 16, Context: 8, Layers: 1, Heads: 2, Width: 32}
	m := newModel(t, cfg, 1)
	opt := NewAdamW(m, AdamWConfig{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8})
	rng := NewRNG(2)
	const B, T = 8, 8
	tokens, targets, mask, d := make([]int32, B*T), make([]int32, B*T), make([]float32, B*T), make([]float32, B*T)
	for i := range mask {
		mask[i] = 1
	}
	var first, loss float32
	for step := range 150 {
		for i := range tokens {
			tokens[i] = int32(rng.IntN(cfg.Vocab))
			targets[i] = (tokens[i]*5 + 3) % int32(cfg.Vocab)
		}
		out, err := m.Forward(Batch{B: B, T: T, Tokens: tokens, Targets: targets})
		if err != nil {
			t.Fatal(err)
		}
		loss = CrossEntropy(d, out.LogProbs, mask)
		if step == 0 {
			first = loss
		}
		m.ZeroGrad()
		m.Backward(Grad{LogProbs: d})
		opt.Update(1e-2)
	}
	if chance := float32(math.Log(16)); first < 0.8*chance || loss > 0.1*chance {
		t.Fatalf("loss %v at the start, %v after training (chance %v)", first, loss, chance)
	}
}
