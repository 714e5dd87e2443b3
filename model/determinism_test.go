package model

import (
	"bytes"
	"math"
	"testing"

	"github.com/instructflow/instructflow/model/kernel"
)

// A config big enough that every layer splits into several chunks
// (N = 160 rows > rowChunk, 4C = 384 columns > colChunk).
var detConfig = Config{Vocab: 50, Context: 48, Layers: 2, Heads: 4, Width: 96, ValueHead: true}

// trainer runs the steps a real trainer would: a random batch drawn from rng,
// masked cross-entropy plus an entropy bonus plus a value loss, clipping,
// AdamW with warmup and cosine decay.
type trainer struct {
	m   *Model
	opt *AdamW
	rng *RNG
}

func (tr *trainer) steps(t *testing.T, n int) {
	t.Helper()
	const B, T = 4, 40
	tokens, targets := make([]int32, B*T), make([]int32, B*T)
	mask := make([]float32, B*T)
	dent, dval := make([]float32, B*T), make([]float32, B*T)
	dlogp := make([]float32, B*T)
	for range n {
		for i := range tokens {
			tokens[i] = int32(tr.rng.IntN(tr.m.Config.Vocab))
		}
		for i := range targets {
			targets[i] = int32((int(tokens[i]) * 7) % tr.m.Config.Vocab) // a learnable map
			mask[i] = float32(i % 2)
		}
		out, err := tr.m.Forward(Batch{B: B, T: T, Tokens: tokens, Targets: targets})
		if err != nil {
			t.Fatal(err)
		}
		CrossEntropy(dlogp, out.LogProbs, mask)
		for i := range dent {
			dent[i] = -0.01 / float32(B*T)
			dval[i] = 2 * (out.Values[i] - 0.5) / float32(B*T)
		}
		tr.m.ZeroGrad()
		tr.m.Backward(Grad{LogProbs: dlogp, Entropy: dent, Values: dval})
		tr.m.ClipGradNorm(1)
		tr.opt.Update(CosineLR(tr.opt.Step, 2, 8, 3e-3, 3e-4))
	}
}

func newTrainer(t *testing.T, cfg Config, threads int) *trainer {
	t.Helper()
	m, err := New(cfg, NewRNG(42))
	if err != nil {
		t.Fatal(err)
	}
	m.SetThreads(threads)
	return &trainer{m: m, opt: NewAdamW(m, DefaultAdamW), rng: NewRNG(43)}
}

func sameBits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// forEachLevel runs f once per kernel level this CPU has (see
// kernel.Levels): results must be bit-identical across thread counts and
// resumes on each level.
func forEachLevel(t *testing.T, f func(t *testing.T)) {
	start := kernel.Level()
	defer func() {
		if err := kernel.SetLevel(start); err != nil {
			t.Fatal(err)
		}
	}()
	for _, l := range kernel.Levels() {
		if err := kernel.SetLevel(l); err != nil {
			t.Fatal(err)
		}
		t.Run(l, f)
	}
}

func TestDeterminism(t *testing.T) { forEachLevel(t, testDeterminism) }

func testDeterminism(t *testing.T) {
	lora := detConfig
	lora.LoRARank, lora.LoRAAlpha = 4, 8
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"full", detConfig}, {"lora", lora}} {
		t.Run(tc.name, func(t *testing.T) {
			const steps, at = 6, 3
			straight := newTrainer(t, tc.cfg, 1)
			straight.steps(t, steps)
			if straight.opt.Step != steps {
				t.Fatalf("step %d", straight.opt.Step)
			}

			t.Run("two threads", func(t *testing.T) {
				two := newTrainer(t, tc.cfg, 2)
				two.steps(t, steps)
				if i := sameBits(straight.m.Params, two.m.Params); i >= 0 {
					t.Fatalf("parameter %d differs: %v on 1 thread, %v on 2", i, straight.m.Params[i], two.m.Params[i])
				}
			})

			t.Run("resume", func(t *testing.T) {
				first := newTrainer(t, tc.cfg, 2)
				first.steps(t, at)
				var weights, optState bytes.Buffer
				if err := first.m.WriteWeights(&weights); err != nil {
					t.Fatal(err)
				}
				if err := first.opt.WriteState(&optState); err != nil {
					t.Fatal(err)
				}
				rngState, err := first.rng.MarshalText()
				if err != nil {
					t.Fatal(err)
				}
				cfgJSON, err := MarshalConfig(first.m.Config)
				if err != nil {
					t.Fatal(err)
				}

				m, err := Load(cfgJSON, weights.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				m.SetThreads(1)
				opt := NewAdamW(m, DefaultAdamW)
				if err := opt.LoadState(optState.Bytes()); err != nil {
					t.Fatal(err)
				}
				rng := NewRNG(0)
				if err := rng.UnmarshalText(rngState); err != nil {
					t.Fatal(err)
				}
				resumed := &trainer{m: m, opt: opt, rng: rng}
				resumed.steps(t, steps-at)
				if resumed.opt.Step != steps {
					t.Fatalf("resumed at step %d", resumed.opt.Step)
				}
				if i := sameBits(straight.m.Params, resumed.m.Params); i >= 0 {
					t.Fatalf("parameter %d differs: %v straight, %v resumed", i, straight.m.Params[i], resumed.m.Params[i])
				}
			})

		})
	}
}

func TestSampleDeterminism(t *testing.T) { forEachLevel(t, testSampleDeterminism) }

func testSampleDeterminism(t *testing.T) {
	m, err := New(detConfig, NewRNG(5))
	if err != nil {
		t.Fatal(err)
	}
	prompts := [][]int32{{1, 2, 3}, {4}, {5, 6, 7, 8, 9, 10, 11}}
	sc := SampleConfig{MaxTokens: 20, Temperature: 1, TopK: 30, TopP: 0.95, StopToken: -1}
	var runs [2][]Sequence
	for i, threads := range []int{1, 2} {
		m.SetThreads(threads)
		runs[i], err = m.Sample(prompts, sc, NewRNG(9))
		if err != nil {
			t.Fatal(err)
		}
	}
	for b := range prompts {
		if !equalInts(runs[0][b].Tokens, runs[1][b].Tokens) || sameBits(runs[0][b].LogProbs, runs[1][b].LogProbs) >= 0 {
			t.Fatalf("prompt %d: 1 thread %v, 2 threads %v", b, runs[0][b], runs[1][b])
		}
	}
}
