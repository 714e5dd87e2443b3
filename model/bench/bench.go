// Package bench measures the engine's speed and memory on fixed model shapes:
// training tokens/s (forward, backward and AdamW), batched KV-cache sampling
// tokens/s, GFLOP/s against a measured single-GEMM rate, and peak memory.
// scripts/bench_engine.py runs the same shapes in PyTorch and prints the
// ratios.
package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/model/kernel"
)

// Preset is a benchmark shape.
type Preset struct {
	Config model.Config
	B, T   int // training batch
	// Prompts sequences of PromptLen tokens each generate SampleLen tokens.
	Prompts, PromptLen, SampleLen int
	MinSteps                      int // timed training steps, at least
}

// Presets are the shapes the engine is measured on.
var Presets = map[string]Preset{
	"tiny":  {Config: model.Config{Vocab: 96, Context: 64, Layers: 4, Heads: 4, Width: 128}, B: 32, T: 64, Prompts: 32, PromptLen: 8, SampleLen: 56, MinSteps: 3},
	"small": {Config: model.Config{Vocab: 2048, Context: 128, Layers: 6, Heads: 8, Width: 256}, B: 16, T: 128, Prompts: 16, PromptLen: 16, SampleLen: 112, MinSteps: 3},
	"gpt2":  {Config: model.Config{Vocab: 50257, Context: 1024, Layers: 12, Heads: 12, Width: 768}, B: 4, T: 64, Prompts: 4, PromptLen: 8, SampleLen: 56, MinSteps: 1},
}

// PresetNames returns the preset names, sorted.
func PresetNames() []string {
	var names []string
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Result is one measurement.
type Result struct {
	Preset  string `json:"preset"`
	Threads int    `json:"threads"`
	Kernel  string `json:"kernel"` // kernel.Name: openblas, or go (purego tag, no cgo, or not amd64)
	// KernelLevel is the vector unit the C kernels ran (kernel.Level:
	// avx512, avx2 or generic), BLASCore the kernels OpenBLAS ran (empty
	// without it), CPU the processor's model name.
	KernelLevel string `json:"kernel_level"`
	BLASCore    string `json:"blas_core"`
	CPU         string `json:"cpu"`
	Params      int    `json:"params"`

	TrainTokensPerS  float64 `json:"train_tokens_per_s"`
	TrainSteps       int     `json:"train_steps"`
	TrainGFLOPS      float64 `json:"train_gflops"` // model FLOPs (6N + 12LTC per token) per second
	SampleTokensPerS float64 `json:"sample_tokens_per_s"`
	SampleGFLOPS     float64 `json:"sample_gflops"` // 2N + 4LTC per generated token (T: mean position)

	// GemmGFLOPS is the kernel's rate on one large single-threaded SGEMM
	// times Threads: the achievable peak that PeakShare divides by.
	GemmGFLOPS float64 `json:"gemm_gflops"`
	PeakShare  float64 `json:"peak_share"` // TrainGFLOPS / GemmGFLOPS

	PeakRSSBytes int64 `json:"peak_rss_bytes"` // the process's peak resident memory so far
}

// Run measures preset on threads threads.
func Run(ctx context.Context, preset string, threads int) (Result, error) {
	p, ok := Presets[preset]
	if !ok {
		return Result{}, fmt.Errorf("bench: unknown preset %q (want one of %v)", preset, PresetNames())
	}
	if threads < 1 {
		return Result{}, fmt.Errorf("bench: threads is %d, must be at least 1", threads)
	}
	cfg := p.Config
	m, err := model.New(cfg, model.NewRNG(1))
	if err != nil {
		return Result{}, err
	}
	m.SetThreads(threads)
	total, _ := m.NumParams()
	res := Result{Preset: preset, Threads: threads, Kernel: kernel.Name, KernelLevel: kernel.Level(),
		BLASCore: kernel.BLASCore(), CPU: cpuModel(), Params: total}

	if err := train(ctx, m, p, &res); err != nil {
		return Result{}, err
	}
	if err := sample(ctx, m, p, &res); err != nil {
		return Result{}, err
	}
	res.GemmGFLOPS = gemmRate() * float64(threads)
	res.PeakShare = res.TrainGFLOPS / res.GemmGFLOPS
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		res.PeakRSSBytes = ru.Maxrss * 1024
	}
	return res, nil
}

// cpuModel returns the first model name in /proc/cpuinfo, or "unknown".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// flopsPerToken returns the model FLOPs of one token's forward pass at mean
// attention length t: 2 per weight of the matrix multiplies (the LM head
// included, position embeddings excluded) plus 4*L*t*C for attention.
func flopsPerToken(cfg model.Config, t float64) float64 {
	C, L := float64(cfg.Width), float64(cfg.Layers)
	matmul := L*12*C*C + float64(cfg.Vocab)*C
	return 2*matmul + 4*L*t*C
}

func train(ctx context.Context, m *model.Model, p Preset, res *Result) error {
	rng := model.NewRNG(2)
	N := p.B * p.T
	tokens, targets := make([]int32, N), make([]int32, N)
	for i := range tokens {
		tokens[i] = int32(rng.IntN(p.Config.Vocab))
		targets[i] = int32(rng.IntN(p.Config.Vocab))
	}
	mask := make([]float32, N)
	for i := range mask {
		mask[i] = 1
	}
	dlogp := make([]float32, N)
	opt := model.NewAdamW(m, model.DefaultAdamW)
	step := func() error {
		out, err := m.Forward(model.Batch{B: p.B, T: p.T, Tokens: tokens, Targets: targets})
		if err != nil {
			return err
		}
		model.CrossEntropy(dlogp, out.LogProbs, mask)
		m.ZeroGrad()
		m.Backward(model.Grad{LogProbs: dlogp})
		m.ClipGradNorm(1)
		opt.Update(1e-4)
		return ctx.Err()
	}
	if err := step(); err != nil { // warm-up: buffers, page faults
		return err
	}
	start := time.Now()
	steps := 0
	for steps < p.MinSteps || time.Since(start) < time.Second {
		if err := step(); err != nil {
			return err
		}
		steps++
	}
	sec := time.Since(start).Seconds()
	res.TrainSteps = steps
	res.TrainTokensPerS = float64(steps*N) / sec
	// forward + backward = 3x forward; attention over T/2 positions on average
	res.TrainGFLOPS = res.TrainTokensPerS * 3 * flopsPerToken(p.Config, float64(p.T)/2) / 1e9
	return nil
}

func sample(ctx context.Context, m *model.Model, p Preset, res *Result) error {
	rng := model.NewRNG(3)
	prompts := make([][]int32, p.Prompts)
	for i := range prompts {
		prompts[i] = make([]int32, p.PromptLen)
		for j := range prompts[i] {
			prompts[i][j] = int32(rng.IntN(p.Config.Vocab))
		}
	}
	sc := model.SampleConfig{MaxTokens: p.SampleLen, Temperature: 1, StopToken: -1}
	if _, err := m.Sample(prompts[:1], model.SampleConfig{MaxTokens: 2, Temperature: 1, StopToken: -1}, rng); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	seqs, err := m.Sample(prompts, sc, rng)
	if err != nil {
		return err
	}
	sec := time.Since(start).Seconds()
	n := 0
	for _, s := range seqs {
		n += len(s.Tokens)
	}
	res.SampleTokensPerS = float64(n) / sec
	res.SampleGFLOPS = res.SampleTokensPerS * flopsPerToken(p.Config, float64(p.PromptLen)+float64(p.SampleLen)/2) / 1e9
	return nil
}

// gemmRate returns the GFLOP/s of one thread on a 1024^3 SGEMM, best of
// three.
func gemmRate() float64 {
	const n = 1024
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)*0.1, float32(i%5)*0.1
	}
	best := math.Inf(1)
	for range 3 {
		start := time.Now()
		kernel.Gemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
		best = min(best, time.Since(start).Seconds())
	}
	return 2 * n * n * n / best / 1e9
}
