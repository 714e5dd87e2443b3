package model

import (
	"fmt"
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

// BenchmarkTrainProducts is each matrix product of a training step of the
// bench package's small preset (2,048 tokens, width 256, vocabulary 2,048)
// as p.gemm runs it on one thread, on every kernel level: the forward's
// products (nn), the backward's products by the transposed weights (nt) and
// its weight gradients (tn).
func BenchmarkTrainProducts(b *testing.B) {
	const N, C, V = 2048, 256, 2048
	products := []struct {
		transA, transB bool
		m, n, k        int
	}{
		{false, false, N, 3 * C, C}, {false, false, N, C, C}, {false, false, N, 4 * C, C}, {false, false, N, C, 4 * C},
		{false, true, N, C, 3 * C}, {false, true, N, C, C}, {false, true, N, C, 4 * C}, {false, true, N, 4 * C, C},
		{true, false, C, 3 * C, N}, {true, false, C, C, N}, {true, false, C, 4 * C, N}, {true, false, 4 * C, C, N},
		{false, true, N, V, C}, {false, false, N, C, V}, {true, false, V, C, N},
	}
	start := kernel.Level()
	defer kernel.SetLevel(start)
	for _, level := range kernel.Levels() {
		if err := kernel.SetLevel(level); err != nil {
			b.Fatal(err)
		}
		for _, pr := range products {
			ac, bc := pr.k, pr.n
			if pr.transA {
				ac = pr.m
			}
			if pr.transB {
				bc = pr.k
			}
			rng := NewRNG(1)
			a, w, c := make([]float32, pr.m*pr.k), make([]float32, pr.k*pr.n), make([]float32, pr.m*pr.n)
			for _, s := range [][]float32{a, w} {
				for i := range s {
					s[i] = rng.Norm()
				}
			}
			name := map[[2]bool]string{{false, false}: "nn", {false, true}: "nt", {true, false}: "tn"}[[2]bool{pr.transA, pr.transB}]
			b.Run(fmt.Sprintf("%s/%s-%dx%dx%d", level, name, pr.m, pr.n, pr.k), func(b *testing.B) {
				p := pool{threads: 1}
				for b.Loop() {
					p.gemm(pr.transA, pr.transB, pr.m, pr.n, pr.k, 1, a, ac, w, bc, 1, c, pr.n)
				}
				b.ReportMetric(2*float64(pr.m*pr.n*pr.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
