package model

import (
	"os"
	"strconv"
	"testing"

	"github.com/instructflow/instructflow/model/kernel"
)

// BenchmarkTrainStep is one training step (forward, backward, AdamW) of the
// bench package's tiny preset shape; see package bench for the full
// benchmark.
func BenchmarkTrainStep(b *testing.B) {
	cfg := Config{Vocab: 96, Context: 64, Layers: 4, Heads: 4, Width: 128}
	m, err := New(cfg, NewRNG(1))
	if err != nil {
		b.Fatal(err)
	}
	m.SetThreads(1)
	const B, T = 32, 64
	rng := NewRNG(2)
	tokens, targets, dlogp, mask := make([]int32, B*T), make([]int32, B*T), make([]float32, B*T), make([]float32, B*T)
	for i := range tokens {
		tokens[i], targets[i], mask[i] = int32(rng.IntN(cfg.Vocab)), int32(rng.IntN(cfg.Vocab)), 1
	}
	opt := NewAdamW(m, DefaultAdamW)
	b.ReportAllocs()
	for b.Loop() {
		out, err := m.Forward(Batch{B: B, T: T, Tokens: tokens, Targets: targets})
		if err != nil {
			b.Fatal(err)
		}
		CrossEntropy(dlogp, out.LogProbs, mask)
		m.ZeroGrad()
		m.Backward(Grad{LogProbs: dlogp})
		opt.Update(1e-4)
	}
	b.ReportMetric(float64(b.N*B*T)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkSample is batched KV-cache sampling on the bench package's tiny
// and small preset shapes.
func BenchmarkSample(b *testing.B) {
	for _, tc := range []struct {
		name                    string
		cfg                     Config
		prompts, promptLen, gen int
	}{
		{"tiny", Config{Vocab: 96, Context: 64, Layers: 4, Heads: 4, Width: 128}, 32, 8, 56},
		{"small", Config{Vocab: 2048, Context: 128, Layers: 6, Heads: 8, Width: 256}, 16, 16, 112},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m, err := New(tc.cfg, NewRNG(1))
			if err != nil {
				b.Fatal(err)
			}
			m.SetThreads(benchThreads())
			rng := NewRNG(2)
			prompts := make([][]int32, tc.prompts)
			for i := range prompts {
				prompts[i] = make([]int32, tc.promptLen)
				for j := range prompts[i] {
					prompts[i][j] = int32(rng.IntN(tc.cfg.Vocab))
				}
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				seqs, err := m.Sample(prompts, SampleConfig{MaxTokens: tc.gen, Temperature: 1, StopToken: -1}, rng)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range seqs {
					n += len(s.Tokens)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// benchThreads is the thread count of the engine benchmarks: 1, or the
// value of BENCH_THREADS. BENCH_KERNEL_LEVEL (avx512, avx2, generic) forces
// the kernels' level for them.
func benchThreads() int {
	if err := kernel.SetLevel(os.Getenv("BENCH_KERNEL_LEVEL")); err != nil {
		panic(err)
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_THREADS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// BenchmarkThinGemm is the sampler's matrix multiplies: a few rows times a
// weight matrix, on one thread. "cold" cycles through enough weight copies
// to overflow the caches, as sampling does when a step streams every layer;
// "warm" reuses one copy that stays in cache (shapes small enough for it).
// It reports GFLOP/s and the weight bytes read per second.
func BenchmarkThinGemm(b *testing.B) {
	for _, tc := range []struct {
		name    string
		m, n, k int
	}{
		{"small-qkv-16rows", 16, 768, 256},
		{"small-fc-16rows", 16, 1024, 256},
		{"gpt2-qkv-4rows", 4, 2304, 768},
		{"gpt2-lmhead-4rows", 4, 50257, 768},
	} {
		for _, warm := range []bool{false, true} {
			size := 4 * tc.k * tc.n
			copies, name := max(2, 256<<20/size), tc.name+"/cold"
			if warm {
				if size > 4<<20 {
					continue
				}
				copies, name = 1, tc.name+"/warm"
			}
			b.Run(name, func(b *testing.B) {
				a, c := make([]float32, tc.m*tc.k), make([]float32, tc.m*tc.n)
				ws := make([][]float32, copies)
				for i := range ws {
					ws[i] = make([]float32, tc.k*tc.n)
					for j := range ws[i] {
						ws[i][j] = float32(j%7) * 0.01
					}
				}
				p := pool{threads: benchThreads()}
				i := 0
				for b.Loop() {
					p.gemm(false, false, tc.m, tc.n, tc.k, 1, a, tc.k, ws[i%len(ws)], tc.n, 0, c, tc.n)
					i++
				}
				sec := b.Elapsed().Seconds()
				b.ReportMetric(2*float64(tc.m*tc.n*tc.k)*float64(b.N)/sec/1e9, "GFLOP/s")
				b.ReportMetric(float64(size)*float64(b.N)/sec/1e9, "GB/s")
			})
		}
	}
}
